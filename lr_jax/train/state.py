"""The traced state and its types: the data, a variant's state, the history, the budget."""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


# A variant's numbers as one namespaced tree: {namespace: {name: [H]}} (scalars for one
# variant), every namespace of `spec.NAMESPACES` present (`spec.hparams_tree`, `hparams.nest`): `hp["optim"]`
# is the optimizer's, `hp["model"]` what the model is given, `hp["data"]` the augmentations'.
Hparams = Mapping[str, Mapping[str, jax.Array]]



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

  @classmethod
  def of(cls, dataset, splits, folds: slice = slice(None)) -> "DataArrays":
    """A `lr_jax.data.Dataset`'s rows and `Splits`' folds (all, or a slice of them)."""
    return cls(x=dataset.x, y=dataset.y, train_idx=splits.train_idx[folds],
               train_mask=splits.train_mask[folds], val_idx=splits.val_idx[folds],
               val_mask=splits.val_mask[folds], mean=splits.mean[folds], std=splits.std[folds])


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
  # Reduce-on-plateau's state (`Plateau`) with the `plateau` schedule; None (no leaves) else.
  plateau: object = None
  # Each validation row's outcome of the task's built-in score -- correct (bool, classification)
  # or squared error / the loss (float32, regression) -- at `best_epoch` and at the last epoch
  # that counted: [v_max] each, padding rows included (the fold's `val_mask` says which are
  # real). The statistics read them to count the finite validation set as a source of
  # variation and to pair two points row by row (`lr_jax.stats`).
  best_outcomes: object = None
  last_outcomes: object = None
  # Cross-fitting: the validation rows in two halves (even and odd positions); each half keeps
  # its own best monitored value (`crossfit_best`, [2]) and so its own best epoch, and each
  # row's outcome is kept at the *other* half's best epoch (`crossfit_outcomes`, [v_max]): a
  # score of an early-stopped run on rows that did not choose its epoch (`score="crossfit"`).
  crossfit_best: object = None
  crossfit_outcomes: object = None
  # User metrics cross-fitted: name -> [2], the metric on half A at half B's best epoch and on
  # half B at half A's; their mean is the run's score (`score="crossfit"`).
  crossfit_metrics: object = None
  # L2-SP's anchor (`l2sp` swept): the variant's parameters at its start (the pretrained ones,
  # its seed's head), in `params`' layout; None (no leaves) otherwise.
  anchor: object = None


class Plateau(NamedTuple):
  """Reduce-on-plateau's state of one variant (Keras' `ReduceLROnPlateau`)."""

  learning_rate: jax.Array  # [] the peak learning rate now: the grid's, reduced on plateaus
  best: jax.Array           # [] the best monitored score, lower is better
  wait: jax.Array           # [] int32 epochs without improvement (outside cooldown)
  cooldown: jax.Array       # [] int32 epochs of cooldown left


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


class Budget(NamedTuple):
  """How long a run may train and what stops it, as traced scalars: groups that differ only in
  their budget (another `--epochs`, `--patience`, `--min_delta` or `--divergence_factor`, the
  small-data study's budgets of a line at one size) run one compiled program. The trainer reads
  these, not the experiment's `TrainConfig` fields; a schedule with `Schedule.horizon` also
  takes its length from the experiment's epochs, which the budget's must then equal (the engine
  builds both from one experiment). The rule: a number of the whole group is a budget field;
  a number that varies per variant is a hyperparameter (`lr_jax.hparams`)."""

  epochs: jax.Array     # [] int32 epochs in all
  patience: jax.Array   # [] int32 early stopping after this many epochs without improvement; 0: never
  max_steps: jax.Array  # [] int32 no update after this many; 0: no cap
  min_delta: jax.Array  # [] float32 an improvement of the monitored value must beat this
  divergence_factor: jax.Array  # [] float32 a minibatch loss above this x the initial diverges

  @classmethod
  def of(cls, train) -> "Budget":
    """The budget of a `TrainConfig`."""
    return cls(*(np.asarray(x, np.int32) for x in (train.epochs, train.patience, train.max_steps)),
               np.asarray(train.min_delta, np.float32),
               np.asarray(train.divergence_factor, np.float32))


def _tree_where(cond: jax.Array, new, old):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), new, old)


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
