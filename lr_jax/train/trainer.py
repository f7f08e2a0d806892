"""`make_trainer`: the step and the epoch's end composed into one compile group's `Trainer`."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lr_jax.config import Experiment
from lr_jax.models import Model
from lr_jax.train.epoch import end_epoch
from lr_jax.train.objective import Loss, Metrics, example_losses
from lr_jax.train.perturb import batch_extras, label_flips
from lr_jax.train.rules import make_rules
from lr_jax.train.state import Budget, DataArrays, History, SweepState, VariantState
from lr_jax.train.step import init_variant, train_step
from lr_jax.train.streams import epoch_order, fetch, in_order, stream_keys


class Trainer(NamedTuple):
  """The two pure functions of one compile group, and its static facts."""

  init: object   # (params_S, hparams_H, folds_S, data) -> SweepState
  run: object    # (state, hparams_SxH, seeds_S, folds_S, data, budget, num_epochs) -> (state, History)
  steps_per_epoch: int
  history_fields: tuple[str, ...] = History._fields  # the fields of `run`'s history
  rules: object = None  # the `Rules` its steps run under


def make_trainer(experiment: Experiment, model: Model, *, task: str, n_max: int,
                 loss: Loss | None = None, metrics: Metrics = (),
                 feature_shape: tuple[int, ...] | None = None,
                 frozen_backbone: bool = False) -> Trainer:
  """Builds the pure trainer of one static configuration.

  The step and the end of an epoch are the module's `train_step` and `end_epoch` over the
  static `Rules`; this composes them: vmapped over a stream's points (which share their
  minibatches), scanned over minibatches, vmapped over streams, scanned over epochs.

  Args:
    experiment: the static configuration (optimizer family, schedule, batch size, what early
      stopping monitors). Its epochs, patience and step cap are not read (`run` takes them as
      a `Budget`), except the epochs under a `Schedule.horizon` schedule.
    model: the model as pure `init`/`apply` functions; the state holds each variant's
      parameters as its pytree (`params`, `best_params`).
    task: "classification" (softmax cross-entropy, labels int32) or "regression" (MSE).
    n_max: the padded number of training examples per fold (`Splits.train_idx.shape[1]`).
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]` replacing the task's built-in one in
      training, validation (`val_loss`) and the divergence check; None keeps the built-in.
    metrics: `((name, Metric), ...)`, each computed on the whole validation set every epoch:
      the history gets `val_<name>`, the state `best_metrics[name]` at the best epoch, and
      `TrainConfig.monitor` may name `val_<name>`.
    feature_shape: one example's shape (`Dataset.feature_shape`), for random shifts.
    frozen_backbone: every variant's `backbone_lr_scale` is 0: the backbone is a constant of
      the loss and the optimizer holds state for the head alone (`Rules.frozen`).

  Returns:
    A `Trainer`; its functions are pure and may be jitted, sharded and checkpointed freely.
    `hparams_H` is the points' namespaced tree (`train.Hparams`, built by `hparams.nest`):
    every number in it is traced per variant, and one absent from it (dropout, noise, ...) is
    not in the program at all. The model is given `hparams_H["model"]`. `init` starts every
    stream at the same points, leaves [H]; `run` continues any population, each stream with
    its own points: leaves [S, H] (a survivor population regrouped between calls keeps each
    stream's points together, whichever they are).
  """
  rules = make_rules(experiment, model, task=task, n_max=n_max, loss=loss, metrics=metrics,
                     feature_shape=feature_shape, frozen_backbone=frozen_backbone)
  batch, steps_per_epoch = rules.batch, rules.steps_per_epoch
  over_points = functools.partial(jax.vmap, in_axes=(0, 0) + (None,) * 5)

  # ----- one stream: all points of a (seed, fold), sharing minibatches ----------------------

  def init_stream(params, hparams_H, fold, data: DataArrays):
    # One minibatch at a time, as training reads them: no more memory than a step needs (a
    # CNN's activations over every training image at once are tens of times the images).
    idx_MxB, w_MxB = in_order(data.train_idx[fold], data.train_mask[fold], batch,
                              steps_per_epoch)

    def initial_loss(hp):
      def piece(inputs):
        idx_B, w_B = inputs
        x_BxD, y_B = fetch(data, fold, idx_B)
        loss_B, _ = example_losses(model, rules.classification, params, x_BxD, y_B, None, False,
                                   loss=loss, hparams=hp["model"])
        return jnp.sum(loss_B * w_B)

      return jnp.sum(jax.lax.map(piece, (idx_MxB, w_MxB))) / jnp.maximum(jnp.sum(w_MxB), 1.0)

    if hparams_H["model"]:  # The model's numbers may change its outputs.
      train_loss, in_axes = jax.vmap(initial_loss)(hparams_H), (0, None, 0)
    else:  # One loss for all the stream's points.
      train_loss, in_axes = initial_loss({"model": {}}), (0, None, None)
    num_val = data.val_idx.shape[1]
    return jax.vmap(functools.partial(init_variant, rules, num_val=num_val), in_axes=in_axes)(
        hparams_H, params, train_loss)

  def epoch_stream(v_H: VariantState, hparams_H, seed, fold, epoch, data: DataArrays,
                   budget: Budget):
    _, order_key, dropout_key = stream_keys(seed)
    idx_MxB, w_MxB = epoch_order(order_key, epoch, data.train_idx[fold], data.train_mask[fold],
                                 batch, steps_per_epoch)
    was_training = ~v_H.stopped & ~v_H.diverged
    flips = label_flips(seed, data.x.shape[0]) if "label_noise" in hparams_H["data"] else None

    def minibatch(carry, inputs):
      v, sums = carry
      idx_B, w_B, step = inputs
      x_BxD, y_B = fetch(data, fold, idx_B)
      extras = batch_extras(hparams_H, data, fold, idx_B, flips)
      key = jax.random.fold_in(dropout_key, epoch * steps_per_epoch + step)
      v, delta = over_points(functools.partial(train_step, rules, max_steps=budget.max_steps,
                                        divergence_factor=budget.divergence_factor))(
          v, hparams_H, x_BxD, y_B, w_B, key, extras)
      sums = jax.tree_util.tree_map(jnp.add, sums, delta)
      return (v, sums), None

    zeros = jnp.zeros(was_training.shape, jnp.float32)
    (v_H, sums), _ = jax.lax.scan(
        minibatch, (v_H, (zeros, zeros, zeros)),
        (idx_MxB, w_MxB, jnp.arange(steps_per_epoch, dtype=jnp.int32)))
    x_val, y_val = fetch(data, fold, data.val_idx[fold])
    w_val = data.val_mask[fold].astype(jnp.float32)
    return jax.vmap(functools.partial(end_epoch, rules, patience=budget.patience,
                                      min_delta=budget.min_delta),
                    in_axes=(0, 0, 0, None, 0, None, None, None))(
        v_H, hparams_H, was_training, epoch + 1, sums, x_val, y_val, w_val)

  # ----- the population ----------------------------------------------------------------------

  def init(params_S, hparams_H, folds_S, data: DataArrays) -> SweepState:
    variants = jax.vmap(init_stream, in_axes=(0, None, 0, None))(params_S, hparams_H, folds_S, data)
    return SweepState(epoch=jnp.zeros((), jnp.int32), variants=variants)

  def run(state: SweepState, hparams_SxH, seeds_S, folds_S, data: DataArrays, budget: Budget,
          num_epochs: int):
    """Runs `num_epochs` more epochs (fewer if the budget's total is reached first)."""

    def train_epoch(state: SweepState):
      variants, history = jax.vmap(epoch_stream, in_axes=(0, 0, 0, 0, None, None, None))(
          state.variants, hparams_SxH, seeds_S, folds_S, state.epoch, data, budget)
      return SweepState(state.epoch + 1, variants), history

    def skip_epoch(state: SweepState):
      shape = state.variants.stopped.shape
      nan = jnp.full(shape, jnp.nan, jnp.float32)
      return state, rules.history(*[nan] * len(rules.history._fields))

    def body(state: SweepState, _):
      v = state.variants
      busy = jnp.any(~v.stopped & ~v.diverged) & (state.epoch < budget.epochs)
      return jax.lax.cond(busy, train_epoch, skip_epoch, state)

    return jax.lax.scan(body, state, None, length=num_epochs)

  return Trainer(init=init, run=run, steps_per_epoch=steps_per_epoch,
                 history_fields=rules.history._fields, rules=rules)
