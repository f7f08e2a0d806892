"""The range test's pure program (`make_finder`), and it compiled once per static signature."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lr_jax import engine
from lr_jax.config import Experiment
from lr_jax.models import Model, build_model
from lr_jax import optim as optim_lib
from lr_jax.optim import make_optimizer
from lr_jax import train as train_lib
from lr_jax.train import DataArrays
from lr_jax.finder.ramp import finder_optim


class FinderTrace(NamedTuple):
  """One seed's range test; from the vmapped program each leaf is [S, K].

  Attributes:
    loss: [K] minibatch loss at step k, before step k's update (which uses learning rate k);
      NaN after the step that stopped the run.
    smoothed: [K] bias-corrected moving average of `loss`; NaN from the stopping step on.
  """

  loss: jax.Array
  smoothed: jax.Array


def make_finder(experiment: Experiment, model: Model, *, task: str, n_max: int, num_steps: int,
                beta: float = 0.98, stop_factor: float = 4.0,
                feature_shape: tuple[int, ...] | None = None
                ) -> Callable[[train_lib.Hparams, jax.Array, jax.Array, DataArrays], FinderTrace]:
  """Builds the pure range test of one static configuration.

  Each step is the trainer's `train.train_step` (the same loss, regularisation, augmentation
  and health check: a non-finite loss or gradient stops a seed), under the trainer's rules with
  the finder's optimizer; the range test's own rule (the smoothed loss above `stop_factor`
  times its minimum) stops a seed too.

  Args:
    experiment: the static configuration; its optimizer family, clipping and batch size are
      used (see `finder_optim`), epochs and early stopping are not.
    model: the model as pure `init`/`apply` functions.
    task: "classification" (softmax cross-entropy) or "regression" (squared error), as the
      trainer.
    n_max: the padded number of training examples (`Splits.train_idx.shape[1]`).
    num_steps: K, the number of steps (and learning rates).
    beta: the moving average's decay.
    stop_factor: a seed stops once its smoothed loss exceeds this multiple of its minimum.
    feature_shape: one example's shape, for random shifts (as `make_trainer`'s).

  Returns:
    `find(hparams, ramp, seed, data) -> FinderTrace`: `hparams` is the variant's namespaced
    tree of scalars (`train.Hparams`: momentum, weight decay, dropout rate, ...; no learning
    rate and no schedule's numbers: the ramp sets those); `ramp` is `[2]` float32, the first
    and the last step's learning rates; `seed` is an int32 scalar; `data` the data set and its
    splits, of which fold 0's training rows are used. Vmap it over seeds.
  """
  rules = train_lib.make_rules(
      experiment, model, task=task, n_max=n_max, feature_shape=feature_shape,
      make_tx=make_optimizer(finder_optim(experiment.optim), num_steps))
  # The ramp replaces the schedule (no plateau) and runs its K steps (no step cap).
  rules = rules._replace(plateau=False)

  def find(hparams: train_lib.Hparams, ramp: jax.Array, seed: jax.Array,
           data: DataArrays) -> FinderTrace:
    init_key, order_key, dropout_key = train_lib.stream_keys(seed)
    opt_hparams = _ramp_hparams(hparams, ramp, num_steps)
    # No divergence reference (an infinite initial loss): the range test's own stop rule
    # below decides when a rising loss ends a seed; the step still stops it at a non-finite one.
    v = train_lib.init_variant(rules, opt_hparams, model.init(init_key),
                               jnp.float32(jnp.inf))
    flips = (train_lib.label_flips(seed, data.x.shape[0]) if "label_noise" in hparams["data"]
             else None)

    idx_KxB, w_KxB = _step_batches(rules, order_key, data, num_steps)

    def step(carry, inputs):
      v, avg, best = carry
      idx_B, w_B, k = inputs
      x_BxD, y_B = train_lib.fetch(data, 0, idx_B)
      extras = train_lib.batch_extras(opt_hparams, data, 0, idx_B, flips)
      alive = ~v.stopped & ~v.diverged
      v, (loss_sum, _, weight) = train_lib.train_step(
          rules, v, opt_hparams, x_BxD, y_B, w_B, jax.random.fold_in(dropout_key, k), extras,
          max_steps=0, divergence_factor=experiment.train.divergence_factor)
      nan = jnp.float32(jnp.nan)
      # The step's loss, before its update; NaN where the step stopped the seed (non-finite).
      loss = jnp.where(weight > 0, loss_sum / jnp.maximum(weight, 1.0), nan)
      avg, smoothed, best = _smoothed(avg, best, loss, k, beta)
      keep = alive & ~v.diverged & jnp.isfinite(smoothed) & (smoothed <= stop_factor * best)
      # A stopped seed is frozen (`train_step` skips it): its later steps are masked out.
      v = v._replace(stopped=v.stopped | ~keep)
      out = FinderTrace(loss=jnp.where(alive, loss, nan), smoothed=jnp.where(keep, smoothed, nan))
      return (v, avg, best), out

    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    carry = (v, f32(0.0), f32(jnp.inf))
    _, trace = jax.lax.scan(step, carry, (idx_KxB, w_KxB, jnp.arange(num_steps, dtype=jnp.int32)))
    return trace

  return find


def _ramp_hparams(hparams: train_lib.Hparams, ramp: jax.Array, num_steps: int
                  ) -> dict[str, dict[str, jax.Array]]:
  """The variant's numbers with the ramp from `ramp[0]` to `ramp[1]` in K steps: the learning
  rate its first, the schedule (`finder_optim`'s exponential) its growth."""
  lr_min, lr_max = ramp[0], ramp[1]
  # The exponential schedule is lr * decay_rate ** step: a rate > 1 makes it the ramp.
  return {**hparams, "optim": {**hparams["optim"], "learning_rate": lr_min},
          "schedule": {"decay_rate": jnp.exp(jnp.log(lr_max / lr_min) / (num_steps - 1))}}


def _step_batches(rules: train_lib.Rules, order_key: jax.Array, data: DataArrays,
                  num_steps: int) -> tuple[jax.Array, jax.Array]:
  """[K, B] row indices and weights of the K steps: the trainer's first epochs' minibatches of
  fold 0, in the trainer's order."""
  batch, steps_per_epoch = rules.batch, rules.steps_per_epoch
  num_epochs = math.ceil(num_steps / steps_per_epoch)

  def epoch_batches(order_key, epoch, idx_N, mask_N):
    return train_lib.epoch_order(order_key, epoch, idx_N, mask_N, batch, steps_per_epoch)

  idx_N, mask_N = data.train_idx[0], data.train_mask[0]
  idx_ExMxB, w_ExMxB = jax.vmap(epoch_batches, in_axes=(None, 0, None, None))(
      order_key, jnp.arange(num_epochs), idx_N, mask_N)
  idx_KxB = idx_ExMxB.reshape(num_epochs * steps_per_epoch, batch)[:num_steps]
  w_KxB = w_ExMxB.reshape(num_epochs * steps_per_epoch, batch)[:num_steps]
  return idx_KxB, w_KxB


def _smoothed(avg: jax.Array, best: jax.Array, loss: jax.Array, k: jax.Array,
              beta: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Step k's moving average, its bias-corrected value (the smoothed loss) and the minimum of
  the smoothed loss so far."""
  avg = beta * avg + (1.0 - beta) * loss
  smoothed = avg / (1.0 - jnp.power(beta, (k + 1).astype(jnp.float32)))
  best = jnp.minimum(best, smoothed)  # fastai updates the minimum before the check.
  return avg, smoothed, best


@functools.lru_cache(maxsize=16)
def _compiled(key: tuple, model: Model | None):
  """The jitted, seed-vmapped finder of a static signature, built once per process: the
  engine's `ProgramKey` (with the finder's optimizer), the steps, beta and the names of the
  numbers traced (one jitted program per structure of the tree)."""
  program, num_steps, beta, _ = key
  if model is None:
    model = build_model(program.model, program.num_outputs, program.feature_shape)
  find = make_finder(program.experiment(), model, task=program.task, n_max=program.n_max,
                     num_steps=num_steps, beta=beta, feature_shape=program.feature_shape)
  return jax.jit(jax.vmap(find, in_axes=(None, None, 0, None)),
                 compiler_options=engine.compiler_options())


optim_lib.on_reregister(_compiled.cache_clear)
