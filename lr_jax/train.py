"""The pure core: a whole population of training runs as one traced function.

`make_trainer(...)` closes over everything static (model, optimizer family, schedule shape,
batch size, early-stopping rules) and returns two pure functions:

    params_S = stack of initial_params(model, seed) over the streams' seeds
    state = trainer.init(params_S, hparams_H, folds_S, data)
    state, history_ExSxH = trainer.run(state, hparams_H, seeds_S, folds_S, data, num_epochs)

A *stream* is a (seed, fold): it fixes the init and the minibatch order. A *point* is one set
of dynamic hyperparameters (learning rate, weight decay, ...). Every variant is a (stream,
point) pair; the state's leaves have leading axes `[S, H]`. Points of one stream share their
minibatches, so a stream's first-layer matmuls over all its points are one wide matmul.

Epochs are a `lax.scan` whose body is skipped with a real `lax.cond` once every variant has
stopped; minibatches are a `lax.scan` inside it. Early stopping, best-params tracking and
divergence are per-variant masks (`jnp.where`), never Python control flow. No host I/O here.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_jax.config import Experiment
from lr_jax.errors import ConfigError
from lr_jax.models import Flat, Model, unflattened
from lr_jax.optim import ELEMENTWISE, OPTIMIZERS, current_learning_rate, family_state, make_optimizer

Hparams = Mapping[str, jax.Array]  # name -> [H] (or scalar for one variant).

# A per-example loss: `(outputs_BxK, y_B) -> loss_B`, replacing softmax cross-entropy / MSE.
Loss = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Metric:
  """A validation metric of one's own, computed on a fold's WHOLE validation set every epoch.

  Attributes:
    fn: `(outputs_VxK, y_V, w_V) -> []`: the model's outputs on every validation row, their
      labels or targets, and their weights (1 for a real row, 0 for padding, which `fn` must
      ignore). Traced and jitted: jnp only, no Python control flow on values.
    higher_is_better: its direction, for early stopping (`TrainConfig.monitor`) and the
      selection (`run_sweep(select_by=...)`).

  Hashed and compared by `fn`'s identity, like a user model: another function compiles
  another program.
  """

  fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
  higher_is_better: bool = True

  def __post_init__(self):
    if not callable(self.fn):
      raise ConfigError(f"Metric.fn must be a function (outputs_VxK, y_V, w_V) -> scalar, got "
                        f"{type(self.fn).__name__}")
    if not isinstance(self.higher_is_better, (bool, np.bool_)):
      raise ConfigError(f"Metric.higher_is_better must be True or False, got "
                        f"{self.higher_is_better!r}")


# Metrics of a trainer: ((name, Metric), ...) -- a tuple, so it can key a compile cache.
Metrics = tuple[tuple[str, Metric], ...]


class DataArrays(NamedTuple):
  """The data set and its splits on the device (see `lr_jax.data`)."""

  x: jax.Array           # [N, D] float32
  y: jax.Array           # [N] int32 labels or float32 targets
  train_idx: jax.Array   # [F, n_max] int32
  train_mask: jax.Array  # [F, n_max] bool
  val_idx: jax.Array     # [F, v_max] int32
  val_mask: jax.Array    # [F, v_max] bool
  mean: jax.Array        # [F, D] float32
  std: jax.Array         # [F, D] float32


class VariantState(NamedTuple):
  """One variant's training state; in a sweep every leaf has leading axes [S, H]."""

  params: object
  opt_state: object
  best_params: object
  init_loss: jax.Array      # [] training loss at init; the divergence reference
  best_score: jax.Array     # [] best monitored value so far, lower is better (-acc for accuracy)
  best_epoch: jax.Array     # [] int32, 1-based epoch of best_score; 0 = none yet
  best_val_loss: jax.Array  # [] val loss at best_epoch
  best_val_accuracy: jax.Array  # [] val accuracy at best_epoch
  wait: jax.Array           # [] int32 epochs since the last improvement
  stopped: jax.Array        # [] bool, stopped early
  diverged: jax.Array       # [] bool, frozen after a non-finite or exploding loss
  epochs_run: jax.Array     # [] int32 epochs trained
  steps_run: jax.Array      # [] int32 optimizer updates applied
  # The parameters validated at the last epoch, for an optimizer family with an `eval_params`
  # hook (schedule-free); None (no leaves, no cost) for every other.
  eval_params: object = None
  # User metrics at best_epoch: name -> []; empty (no leaves) without user metrics.
  best_metrics: object = None


class SweepState(NamedTuple):
  """The carry of the epoch loop."""

  epoch: jax.Array          # [] int32 epochs completed by the loop
  variants: VariantState    # leaves [S, H, ...]


class History(NamedTuple):
  """Per-epoch metrics; from `run` each leaf is [E, S, H], NaN where a variant was not training."""

  train_loss: jax.Array
  train_accuracy: jax.Array
  val_loss: jax.Array
  val_accuracy: jax.Array
  learning_rate: jax.Array


@functools.lru_cache(maxsize=None)
def history_type(metric_names: tuple[str, ...]) -> type:
  """`History`, plus a `val_<name>` field per user metric (`History` itself for none)."""
  if not metric_names:
    return History
  return collections.namedtuple(
      "History", History._fields + tuple(f"val_{n}" for n in metric_names))


class Trainer(NamedTuple):
  """The two pure functions of one compile group, and its static facts."""

  init: object   # (params_S, hparams_H, folds_S, data) -> SweepState
  run: object    # (state, hparams_H, seeds_S, folds_S, data, num_epochs) -> (state, History)
  steps_per_epoch: int
  num_epochs: int
  history_fields: tuple[str, ...] = History._fields  # the fields of `run`'s history


def _tree_where(cond: jax.Array, new, old):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), new, old)


def stream_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Independent init, data-order and dropout keys of a stream; they depend only on the seed.

  The contract tests and users rely on: the init key of seed s is `fold_in(PRNGKey(s), 0)`.
  """
  key = jax.random.PRNGKey(seed)
  return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)


def initial_params(model: Model, seed: jax.Array):
  """A stream's initial parameters: the model's init with the seed's init key.

  Apart from `Trainer.init` because it depends only on the model: the engine compiles it once
  per model and calls it per seed, rather than compiling a vmapped copy of the initializers
  (threefry hashes, seconds of XLA compilation on a CPU) into every group's program.
  """
  init_key, _, _ = stream_keys(seed)
  return model.init(init_key)


def batching(batch_size: int, n_max: int) -> tuple[int, int]:
  """(batch, steps per epoch) for a configured batch size (0 = full batch) and n_max rows."""
  batch = n_max if batch_size == 0 else min(batch_size, n_max)
  return batch, math.ceil(n_max / batch)


def builtin_loss(classification: bool) -> Loss:
  """The built-in per-example loss: softmax cross-entropy (integer labels) or squared error."""
  if classification:
    return optax.softmax_cross_entropy_with_integer_labels
  return lambda out_BxK, y_B: jnp.square(out_BxK[:, 0] - y_B)


def example_losses(model: Model, classification: bool, params, x_BxD, y_B, key, train: bool,
                   loss: Loss | None = None, with_outputs: bool = False):
  """Per-example loss and correctness `([B], [B])`, and with `with_outputs` the outputs.

  Args:
    model: pure `init`/`apply` functions.
    classification: correctness is argmax == label; NaN for regression.
    params, x_BxD, y_B, key, train: the model's inputs.
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]`; None is the built-in one
      (`builtin_loss`).
    with_outputs: also return the outputs `[B, K]` (for metrics on them).
  """
  out = model.apply(params, x_BxD, key, train)
  loss_B = (builtin_loss(classification) if loss is None else loss)(out, y_B)
  if jnp.shape(loss_B) != jnp.shape(y_B):  # A [B, 1] or scalar loss would broadcast silently.
    raise ConfigError(f"the loss must return one value per example, shape {jnp.shape(y_B)}, "
                      f"got shape {jnp.shape(loss_B)}")
  if classification:
    correct_B = (jnp.argmax(out, axis=-1) == y_B).astype(jnp.float32)
  else:
    correct_B = jnp.full_like(loss_B, jnp.nan)
  return (loss_B, correct_B, out) if with_outputs else (loss_B, correct_B)


def weighted_mean(v_B: jax.Array, w_B: jax.Array) -> jax.Array:
  """Mean of `v_B` over the rows with weight 1 (padding has weight 0); 0 for no rows."""
  return jnp.sum(v_B * w_B) / jnp.maximum(jnp.sum(w_B), 1.0)


def epoch_order(order_key: jax.Array, epoch: jax.Array, idx_N: jax.Array, mask_N: jax.Array,
                batch: int, steps_per_epoch: int) -> tuple[jax.Array, jax.Array]:
  """One epoch's minibatches of a fold: row indices `[M, B]` and weights `[M, B]`.

  Real rows are shuffled by `fold_in(order_key, epoch)`; padding sorts to the end, so it only
  fills the last batch (weight 0).
  """
  u_N = jax.random.uniform(jax.random.fold_in(order_key, epoch), idx_N.shape)
  order = jnp.argsort(jnp.where(mask_N, u_N, 2.0))
  pad = steps_per_epoch * batch - idx_N.shape[0]
  idx_MxB = jnp.pad(idx_N[order], (0, pad)).reshape(steps_per_epoch, batch)
  w_MxB = jnp.pad(mask_N[order], (0, pad)).reshape(steps_per_epoch, batch).astype(jnp.float32)
  return idx_MxB, w_MxB


def make_trainer(experiment: Experiment, model: Model | Flat, *, task: str, n_max: int,
                 loss: Loss | None = None, metrics: Metrics = ()) -> Trainer:
  """Builds the pure trainer of one static configuration.

  Args:
    experiment: the static configuration (optimizer family, schedule, batch size, epochs,
      early stopping).
    model: the model as pure `init`/`apply` functions, or a `models.flattened` one: the state
      then holds each variant's parameters as one vector (`params`, `best_params`); the
      gradient, the optimizer's state and its update are on the model's pytree, so per-layer
      optimizers see the layers -- except for the `optim.ELEMENTWISE` families, whose update
      on the vector is the same numbers, and faster.
    task: "classification" (softmax cross-entropy, labels int32) or "regression" (MSE).
    n_max: the padded number of training examples per fold (`Splits.train_idx.shape[1]`).
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]` replacing the task's built-in one in
      training, validation (`val_loss`) and the divergence check; None keeps the built-in.
    metrics: `((name, Metric), ...)`, each computed on the whole validation set every epoch:
      the history gets `val_<name>`, the state `best_metrics[name]` at the best epoch, and
      `TrainConfig.monitor` may name `val_<name>`.

  Returns:
    A `Trainer`; its functions are pure and may be jitted, sharded and checkpointed freely.
  """
  tcfg = experiment.train
  batch, steps_per_epoch = batching(tcfg.batch_size, n_max)
  make_tx = make_optimizer(experiment.optim, steps_per_epoch * tcfg.epochs)
  family = OPTIMIZERS[experiment.optim.name]
  if not isinstance(model, Flat):
    flat = unflattened(model)
  elif experiment.optim.name in ELEMENTWISE:
    flat = unflattened(model.model)  # the vector is the optimizer's "pytree": one leaf
  else:
    flat = model
  # On the pytree: the step differentiates with respect to the layers, not the vector (no
  # gradient scattered into [P] only to be sliced again for the optimizer).
  losses = functools.partial(example_losses, flat.tree, task == "classification", loss=loss)
  metrics = tuple(metrics)
  names = tuple(name for name, _ in metrics)
  monitored = dict(metrics).get(tcfg.monitor[len("val_"):]) if tcfg.monitor.startswith("val_") else None
  if tcfg.monitor not in ("val_loss", "val_accuracy") and monitored is None:
    valid = ", ".join(["val_loss", "val_accuracy", *(f"val_{n}" for n in names)])
    raise ConfigError(f"monitor {tcfg.monitor!r} is not a metric of this sweep; valid choices: {valid}")
  Hist = history_type(names)

  def batch_loss(params, x_BxD, y_B, w_B, key):
    loss_B, correct_B = losses(params, x_BxD, y_B, key, True)
    return weighted_mean(loss_B, w_B), weighted_mean(correct_B, w_B)

  def fetch(data: DataArrays, fold, idx_B):
    """Standardized features and labels of rows `idx_B` of fold `fold`'s view of the data."""
    x_BxD = (data.x[idx_B] - data.mean[fold][None, :]) / data.std[fold][None, :]
    return x_BxD, data.y[idx_B]

  # ----- one variant -----------------------------------------------------------------------

  def eval_params(params, opt_state):
    """The parameters to validate, in the state's layout: the trained ones unless a hook says."""
    if family.eval_params is None:
      return params
    return flat.to_flat(family.eval_params(family_state(opt_state), flat.to_tree(params)))

  def init_variant(hp, params, train_loss):
    opt_state = make_tx(hp).init(flat.to_tree(params))
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    return VariantState(
        params=params, opt_state=opt_state, best_params=params, init_loss=train_loss,
        best_score=f32(jnp.inf), best_epoch=i32(0), best_val_loss=f32(jnp.nan),
        best_val_accuracy=f32(jnp.nan), wait=i32(0), stopped=jnp.asarray(False),
        diverged=jnp.asarray(False), epochs_run=i32(0), steps_run=i32(0),
        eval_params=None if family.eval_params is None else eval_params(params, opt_state),
        best_metrics={n: f32(jnp.nan) for n in names})

  def step_variant(v: VariantState, hp, x_BxD, y_B, w_B, key):
    """One minibatch update; a no-op for a stopped or diverged variant or an empty batch."""
    tx = make_tx(hp)
    tree = flat.to_tree(v.params)
    (loss, acc), grads = jax.value_and_grad(batch_loss, has_aux=True)(tree, x_BxD, y_B, w_B, key)
    extra = {} if family.extra_args is None else family.extra_args(loss)
    updates, opt_state = tx.update(grads, v.opt_state, tree, **extra)
    params = optax.apply_updates(v.params, flat.to_flat(updates))
    healthy = (jnp.isfinite(loss) & (loss <= tcfg.divergence_factor * v.init_loss)
               & jnp.isfinite(optax.tree.norm(grads)))
    training = ~v.stopped & ~v.diverged & (jnp.sum(w_B) > 0)
    if tcfg.max_steps:
      training &= v.steps_run < tcfg.max_steps
    apply = training & healthy
    v = v._replace(
        params=_tree_where(apply, params, v.params),
        opt_state=_tree_where(apply, opt_state, v.opt_state),
        diverged=v.diverged | (training & ~healthy),
        steps_run=v.steps_run + apply.astype(jnp.int32))
    weight = jnp.where(apply, jnp.sum(w_B), 0.0)
    # where, not a product: a diverged step's NaN loss times a zero weight is still NaN.
    return v, (jnp.where(apply, loss * weight, 0.0), jnp.where(apply, acc * weight, 0.0), weight)

  def end_epoch_variant(v: VariantState, was_training, epoch, sums, x_val, y_val, w_val):
    """Validation, early stopping and best-params tracking at the end of an epoch."""
    loss_sum, acc_sum, weight = sums
    current = eval_params(v.params, v.opt_state)
    val_loss_B, val_correct_B, out_VxK = losses(flat.to_tree(current), x_val, y_val, None, False,
                                                with_outputs=True)
    val_loss = weighted_mean(val_loss_B, w_val)
    val_acc = weighted_mean(val_correct_B, w_val)
    values = {n: jnp.asarray(m.fn(out_VxK, y_val, w_val), jnp.float32) for n, m in metrics}
    for n, value in values.items():
      if value.shape != ():
        raise ConfigError(f"metric {n!r} must return a scalar, got shape {value.shape}")
    # The score is lower-is-better: a higher-is-better metric is negated.
    if tcfg.monitor == "val_loss":
      score = val_loss
    elif tcfg.monitor == "val_accuracy":
      score = -val_acc
    else:
      value = values[tcfg.monitor[len("val_"):]]
      score = -value if monitored.higher_is_better else value
    counts = was_training & ~v.diverged
    improved = counts & (score < v.best_score - tcfg.min_delta)
    wait = jnp.where(improved, 0, v.wait + counts.astype(jnp.int32))
    stop = counts & (tcfg.patience > 0) & (wait >= tcfg.patience)
    v = v._replace(
        best_params=_tree_where(improved, current, v.best_params),
        best_score=jnp.where(improved, score, v.best_score),
        best_epoch=jnp.where(improved, epoch, v.best_epoch),
        best_val_loss=jnp.where(improved, val_loss, v.best_val_loss),
        best_val_accuracy=jnp.where(improved, val_acc, v.best_val_accuracy),
        wait=wait,
        stopped=v.stopped | stop,
        epochs_run=v.epochs_run + was_training.astype(jnp.int32),
        eval_params=None if family.eval_params is None else current,
        best_metrics={n: jnp.where(improved, values[n], v.best_metrics[n]) for n in names})
    nan = jnp.float32(jnp.nan)
    seen = was_training & (weight > 0)
    history = Hist(
        train_loss=jnp.where(seen, loss_sum / jnp.maximum(weight, 1.0), nan),
        train_accuracy=jnp.where(seen, acc_sum / jnp.maximum(weight, 1.0), nan),
        # The epoch a variant diverges in does not count, in the history as in best_*: a
        # diverged variant must not "reach a target" its best metrics never show.
        val_loss=jnp.where(counts, val_loss, nan),
        val_accuracy=jnp.where(counts, val_acc, nan),
        learning_rate=jnp.where(was_training, current_learning_rate(v.opt_state), nan),
        **{f"val_{n}": jnp.where(counts, values[n], nan) for n in names})
    return v, history

  # ----- one stream: all points of a (seed, fold), sharing minibatches ----------------------

  over_points = functools.partial(jax.vmap, in_axes=(0, 0) + (None,) * 4)

  def init_stream(params, hparams_H, fold, data: DataArrays):
    x_train, y_train = fetch(data, fold, data.train_idx[fold])
    loss_B, _ = losses(flat.to_tree(params), x_train, y_train, None, False)
    train_loss = weighted_mean(loss_B, data.train_mask[fold].astype(jnp.float32))
    return jax.vmap(init_variant, in_axes=(0, None, None))(hparams_H, params, train_loss)

  def epoch_stream(v_H: VariantState, hparams_H, seed, fold, epoch, data: DataArrays):
    _, order_key, dropout_key = stream_keys(seed)
    idx_MxB, w_MxB = epoch_order(order_key, epoch, data.train_idx[fold], data.train_mask[fold],
                                 batch, steps_per_epoch)
    was_training = ~v_H.stopped & ~v_H.diverged

    def minibatch(carry, inputs):
      v, sums = carry
      idx_B, w_B, step = inputs
      x_BxD, y_B = fetch(data, fold, idx_B)
      key = jax.random.fold_in(dropout_key, epoch * steps_per_epoch + step)
      v, delta = over_points(step_variant)(v, hparams_H, x_BxD, y_B, w_B, key)
      sums = jax.tree_util.tree_map(jnp.add, sums, delta)
      return (v, sums), None

    zeros = jnp.zeros(was_training.shape, jnp.float32)
    (v_H, sums), _ = jax.lax.scan(
        minibatch, (v_H, (zeros, zeros, zeros)),
        (idx_MxB, w_MxB, jnp.arange(steps_per_epoch, dtype=jnp.int32)))
    x_val, y_val = fetch(data, fold, data.val_idx[fold])
    w_val = data.val_mask[fold].astype(jnp.float32)
    return jax.vmap(end_epoch_variant, in_axes=(0, 0, None, 0, None, None, None))(
        v_H, was_training, epoch + 1, sums, x_val, y_val, w_val)

  # ----- the population ----------------------------------------------------------------------

  def init(params_S, hparams_H, folds_S, data: DataArrays) -> SweepState:
    variants = jax.vmap(init_stream, in_axes=(0, None, 0, None))(params_S, hparams_H, folds_S, data)
    return SweepState(epoch=jnp.zeros((), jnp.int32), variants=variants)

  def run(state: SweepState, hparams_H, seeds_S, folds_S, data: DataArrays, num_epochs: int):
    """Runs `num_epochs` more epochs (fewer if the configured total is reached first)."""

    def train_epoch(state: SweepState):
      variants, history = jax.vmap(epoch_stream, in_axes=(0, None, 0, 0, None, None))(
          state.variants, hparams_H, seeds_S, folds_S, state.epoch, data)
      return SweepState(state.epoch + 1, variants), history

    def skip_epoch(state: SweepState):
      shape = state.variants.stopped.shape
      nan = jnp.full(shape, jnp.nan, jnp.float32)
      return state, Hist(*[nan] * len(Hist._fields))

    def body(state: SweepState, _):
      v = state.variants
      busy = jnp.any(~v.stopped & ~v.diverged) & (state.epoch < tcfg.epochs)
      return jax.lax.cond(busy, train_epoch, skip_epoch, state)

    return jax.lax.scan(body, state, None, length=num_epochs)

  return Trainer(init=init, run=run, steps_per_epoch=steps_per_epoch, num_epochs=tcfg.epochs,
                 history_fields=Hist._fields)


def final_params(v: VariantState, restore_best: bool):
  """The parameters a variant ends with: its best epoch's if `restore_best` and it has one.

  Those of the last epoch are the validated ones (`eval_params`, for a family with that hook).
  Host-side numpy (the engine calls it on fetched state): no extra XLA program to compile.
  """
  current = v.params if v.eval_params is None else v.eval_params
  if not restore_best:
    return current
  has_best = np.asarray(v.best_epoch) > 0
  return jax.tree_util.tree_map(
      lambda best, cur: np.where(
          has_best.reshape(has_best.shape + (1,) * (cur.ndim - has_best.ndim)), best, cur),
      v.best_params, current)
