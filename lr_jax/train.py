"""The pure core: a whole population of training runs as one traced function.

`make_trainer(...)` closes over everything static (model, optimizer family, schedule shape,
batch size, what early stopping monitors) and returns two pure functions:

    params_S = stack of initial_params(model, seed) over the streams' seeds
    state = trainer.init(params_S, hparams_H, folds_S, data)
    state, history_ExSxH = trainer.run(state, hparams_H, seeds_S, folds_S, data, budget,
                                       num_epochs)

The run's length (`Budget`: epochs, patience, a cap on steps) is traced, not closed over: runs
that differ only in their budget are one compiled program (for the same call length
`num_epochs`, static, and unless the schedule's shape depends on the run's length, `Schedule.horizon`:
then `make_trainer` closes over the experiment's epochs too).

A *stream* is a (seed, fold): it fixes the init and the minibatch order. A *point* is one set
of dynamic hyperparameters (learning rate, weight decay, ...). Every variant is a (stream,
point) pair; the state's leaves have leading axes `[S, H]`. Points of one stream share their
minibatches, so a stream's first-layer matmuls over all its points are one wide matmul.

Epochs are a `lax.scan` whose body is skipped with a real `lax.cond` once every variant has
stopped; minibatches are a `lax.scan` inside it. Early stopping, reduce-on-plateau, best-params
tracking and divergence are per-variant masks (`jnp.where`), never Python control flow. No host
I/O here.

The step of one variant (`train_step`) and its end of an epoch (`end_epoch`) are module-level
pure functions of a static `Rules`; `make_trainer` composes them, and the LR finder calls the
same `train_step`. A point's numbers are `{name: value}`; which names are present decides what
is traced: `dropout_rate` (the model's slice, `Model.apply`'s fifth argument), `label_smoothing`,
`input_noise`, `shift`, `label_noise`, and the `plateau_*` numbers. An absent one has no code in
the program, so a sweep without them compiles the program it always did.
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
from lr_jax.models import Flat, Model, apply_model, unflattened
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
  """How long a run may train, as traced int32 scalars: groups that differ only in their
  budget (another `--epochs` or `--patience`, the small-data study's three budgets of a cell)
  run one compiled program. The trainer reads these, not the experiment's `TrainConfig`
  fields; a schedule with `Schedule.horizon` also takes its length from the experiment's
  epochs, which the budget's must then equal (the engine builds both from one experiment)."""

  epochs: jax.Array     # [] epochs in all
  patience: jax.Array   # [] early stopping after this many epochs without improvement; 0: never
  max_steps: jax.Array  # [] no update after this many; 0: no cap

  @classmethod
  def of(cls, train) -> "Budget":
    """The budget of a `TrainConfig`."""
    return cls(*(np.asarray(x, np.int32) for x in (train.epochs, train.patience, train.max_steps)))


class Trainer(NamedTuple):
  """The two pure functions of one compile group, and its static facts."""

  init: object   # (params_S, hparams_H, folds_S, data) -> SweepState
  run: object    # (state, hparams_H, seeds_S, folds_S, data, budget, num_epochs) -> (state, History)
  steps_per_epoch: int
  history_fields: tuple[str, ...] = History._fields  # the fields of `run`'s history
  rules: object = None  # the `Rules` its steps run under


def _tree_where(cond: jax.Array, new, old):
  return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), new, old)


def stream_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Independent init, data-order and minibatch keys of a stream; they depend only on the seed.

  The contract tests and users rely on: the init key of seed s is `fold_in(PRNGKey(s), 0)`.
  The minibatch key (dropout, augmentation) of step t is `fold_in` of the third key and t;
  `fold_in(PRNGKey(s), 3)` is the label noise's (`label_flips`).
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
                   loss: Loss | None = None, with_outputs: bool = False,
                   hparams: Mapping[str, jax.Array] | None = None):
  """Per-example loss and correctness `([B], [B])`, and with `with_outputs` the outputs.

  Args:
    model: pure `init`/`apply` functions.
    classification: correctness is argmax == label; NaN for regression.
    params, x_BxD, y_B, key, train: the model's inputs.
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]`; None is the built-in one
      (`builtin_loss`).
    with_outputs: also return the outputs `[B, K]` (for metrics on them).
    hparams: the model namespace's numbers of this variant (`Model.apply`'s fifth argument);
      None or {} calls the model without it.
  """
  out = apply_model(model, params, x_BxD, key, train, hparams)
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


# ----- the static rules and the pure step functions -------------------------------------------

# The namespace of the numbers the trainer itself reads, where `make_trainer` is given none.
_NAMESPACES = {"dropout_rate": "model", "label_smoothing": "loss", "input_noise": "data",
               "shift": "data", "label_noise": "data"}
# Salts of the augmentation keys: `fold_in` of the minibatch key, far from the small counts a
# model folds into the same key (`from_nnx` folds in 0, 1, 2, ... per rng stream).
_NOISE_SALT, _SHIFT_SALT = 0x6E6F6973, 0x73686966


class Rules(NamedTuple):
  """Everything static a step needs: the compiled program is a function of these.

  Attributes:
    batch: the minibatch size B.
    steps_per_epoch: minibatches per epoch M.
    min_delta: early stopping's smallest improvement.
    monitor: the monitored metric's name (`TrainConfig.monitor`).
    monitored: the user `Metric` monitored, or None for val_loss / val_accuracy.
    divergence_factor: a minibatch loss above this multiple of the initial loss diverges.
    classification: softmax cross-entropy and accuracy, or squared error.
    feature_shape: one example's shape (random shifts need an image, rank >= 2), or None.
    namespaces: ((name, namespace), ...) of the numbers swept; the model gets its slice.
    flat: the model (`models.Flat`).
    make_tx: `hparams -> optax transformation` (`optim.make_optimizer`).
    family: the optimizer family (`optim.OPTIMIZERS` entry).
    loss: the user's per-example loss, or None for the built-in one.
    metrics: `((name, Metric), ...)` computed on the validation set.
    plateau: reduce the learning rate on a plateau of the monitored score.
    history: the history's type (`history_type`).
  """

  batch: int
  steps_per_epoch: int
  min_delta: float
  monitor: str
  monitored: Metric | None
  divergence_factor: float
  classification: bool
  feature_shape: tuple[int, ...] | None
  namespaces: tuple[tuple[str, str], ...]
  flat: Flat
  make_tx: Callable[[Hparams], optax.GradientTransformation]
  family: object
  loss: Loss | None
  metrics: Metrics
  plateau: bool
  history: type


class Extras(NamedTuple):
  """A minibatch's inputs that only data axes read; each None where its axis is not swept.

  Attributes:
    background_D: the standardized value of a raw 0 (blank) pixel, `-mean / std` of the fold:
      what a random shift moves into the image.
    flip_u_B: [B] uniform in [0, 1), fixed per (seed, row): a row's label is replaced where
      `flip_u_B < label_noise`.
    flip_r_B: [B] uniform in [0, 1), fixed per (seed, row): which other class replaces it.
  """

  background_D: jax.Array | None = None
  flip_u_B: jax.Array | None = None
  flip_r_B: jax.Array | None = None


def model_hparams(rules: Rules, hp: Hparams) -> dict[str, jax.Array]:
  """The model namespace's slice of a variant's numbers ({} when none is swept)."""
  namespaces = dict(rules.namespaces)
  return {k: v for k, v in hp.items() if namespaces.get(k, _NAMESPACES.get(k)) == "model"}


def label_flips(seed: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """`([N], [N])` uniforms of a stream's label noise, one pair per data row, fixed per seed.

  Drawn once per seed, not per epoch: a row flipped at rate r is flipped every epoch, and is
  flipped at every rate above r (the flipped sets are nested).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 3)
  return (jax.random.uniform(jax.random.fold_in(key, 0), (n,)),
          jax.random.uniform(jax.random.fold_in(key, 1), (n,)))


def noisy_labels(y_B: jax.Array, u_B: jax.Array, r_B: jax.Array, rate: jax.Array,
                 num_classes: int) -> jax.Array:
  """The labels with those of rows `u_B < rate` replaced by a uniformly random other class.

  Args:
    y_B: [B] int labels.
    u_B, r_B: [B] the rows' `label_flips` (uniform in [0, 1)).
    rate: [] the fraction of labels to replace.
    num_classes: K.
  """
  # Another class than the row's own: the label moved by 1..K-1, mod K.
  other_B = (y_B + 1 + jnp.minimum(jnp.floor(r_B * (num_classes - 1)).astype(y_B.dtype),
                                   num_classes - 2)) % num_classes
  return jnp.where(u_B < rate, other_B, y_B)


def shift_images(raw_BxD: jax.Array, feature_shape: tuple[int, ...], shift: jax.Array,
                 key: jax.Array, fill_D: jax.Array | None = None) -> jax.Array:
  """Moves each image by (dy, dx), each uniform in {-shift..shift}, filling with zeros.

  Args:
    raw_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    shift: [] the largest move k in pixels (an integer value; traced).
    key: the minibatch's shift key: the same moves for every variant of a stream.
    fill_D: what fills the pixels moved in from outside, per pixel; None is 0.

  Returns:
    [B, D]: pixel (i, j) of an example is the pixel (i - dy, j - dx), 0 (`fill_D`) where
    that is outside the image.
  """
  b = raw_BxD.shape[0]
  height, width = feature_shape[0], feature_shape[1]
  img = raw_BxD.reshape((b, height, width, -1))
  u_Bx2 = jax.random.uniform(key, (b, 2))
  k = jnp.round(shift).astype(jnp.int32)
  d_Bx2 = jnp.minimum(jnp.floor(u_Bx2 * (2 * k + 1)).astype(jnp.int32), 2 * k) - k
  src_BxH = jnp.arange(height)[None, :] - d_Bx2[:, :1]
  src_BxW = jnp.arange(width)[None, :] - d_Bx2[:, 1:]
  img = jnp.take_along_axis(img, jnp.clip(src_BxH, 0, height - 1)[:, :, None, None], axis=1)
  img = jnp.take_along_axis(img, jnp.clip(src_BxW, 0, width - 1)[:, None, :, None], axis=2)
  inside = (((src_BxH >= 0) & (src_BxH < height))[:, :, None, None]
            & ((src_BxW >= 0) & (src_BxW < width))[:, None, :, None])
  fill = 0.0 if fill_D is None else fill_D.reshape((1, height, width, -1))
  return jnp.where(inside, img, fill).reshape(raw_BxD.shape)


def augment(rules: Rules, hp: Hparams, x_BxD: jax.Array, key: jax.Array,
            extras: Extras | None) -> jax.Array:
  """The training features of one variant: shifted images, then Gaussian noise.

  A shift moves the image as its raw pixels would move, blank (raw 0) pixels coming in: each
  pixel keeps the standardization of the column it comes from, so a rarely inked border
  column (tiny std) is not blown up by the ink moved into it, as standardizing moved raw
  pixels would. Both are drawn from the minibatch key alone, so a seed gets the same
  perturbations whatever else the sweep holds; without `shift` / `input_noise` in `hp` this is
  `x_BxD` itself.
  """
  if "shift" in hp:
    if rules.feature_shape is None or len(rules.feature_shape) < 2:
      raise ConfigError(f"shift needs image-shaped data (feature_shape of rank >= 2), the data "
                        f"has feature_shape {rules.feature_shape}; valid choices: shift=0")
    x_BxD = shift_images(x_BxD, rules.feature_shape, hp["shift"],
                         jax.random.fold_in(key, _SHIFT_SALT), extras.background_D)
  if "input_noise" in hp:
    noise_BxD = jax.random.normal(jax.random.fold_in(key, _NOISE_SALT), x_BxD.shape)
    x_BxD = x_BxD + hp["input_noise"] * noise_BxD
  return x_BxD


def _num_outputs(rules: Rules, params, x_BxD: jax.Array, hp: Hparams) -> int:
  """K, the model's outputs, from shapes alone (traced nothing, compiled nothing)."""
  out = jax.eval_shape(
      lambda p, x, h: apply_model(rules.flat.tree, p, x, None, False, h), params, x_BxD,
      model_hparams(rules, hp))
  return out.shape[-1]


def training_losses(rules: Rules, params, hp: Hparams, x_BxD, y_B, key, extras: Extras | None):
  """Per-example training loss and correctness `([B], [B])` of one variant on a minibatch.

  The data axes (label noise, shifts, input noise) and label smoothing act here, in training
  only; without them this is `example_losses` on the minibatch as it is.
  """
  x_BxD = augment(rules, hp, x_BxD, key, extras)
  loss = rules.loss
  if "label_noise" in hp or "label_smoothing" in hp:
    if not rules.classification or rules.loss is not None:
      raise ConfigError("label_noise and label_smoothing need classification with the built-in "
                        "cross-entropy; valid choices: leave them at 0")
    num_classes = _num_outputs(rules, params, x_BxD, hp)
  if "label_noise" in hp:
    y_B = noisy_labels(y_B, extras.flip_u_B, extras.flip_r_B, hp["label_noise"], num_classes)
  if "label_smoothing" in hp:
    alpha = hp["label_smoothing"]
    loss = lambda out_BxK, y_B: optax.softmax_cross_entropy(
        out_BxK, optax.smooth_labels(jax.nn.one_hot(y_B, num_classes), alpha))
  return example_losses(rules.flat.tree, rules.classification, params, x_BxD, y_B, key, True,
                        loss=loss, hparams=model_hparams(rules, hp))


def tx_hparams(rules: Rules, v: VariantState, hp: Hparams) -> Hparams:
  """The optimizer's numbers: with reduce-on-plateau, the peak is the plateau's current rate."""
  if not rules.plateau:
    return hp
  return {**hp, "learning_rate": v.plateau.learning_rate}


def eval_params(rules: Rules, params, opt_state):
  """The parameters to validate, in the state's layout: the trained ones unless a hook says."""
  if rules.family.eval_params is None:
    return params
  return rules.flat.to_flat(rules.family.eval_params(family_state(opt_state),
                                                     rules.flat.to_tree(params)))


def init_variant(rules: Rules, hp: Hparams, params, train_loss) -> VariantState:
  """A variant's state before its first step; `train_loss` is the divergence reference."""
  f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
  i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
  plateau = None
  if rules.plateau:
    plateau = Plateau(learning_rate=f32(hp["learning_rate"]), best=f32(jnp.inf), wait=i32(0),
                      cooldown=i32(0))
  v = VariantState(
      params=params, opt_state=None, best_params=params, init_loss=train_loss,
      best_score=f32(jnp.inf), best_epoch=i32(0), best_val_loss=f32(jnp.nan),
      best_val_accuracy=f32(jnp.nan), wait=i32(0), stopped=jnp.asarray(False),
      diverged=jnp.asarray(False), epochs_run=i32(0), steps_run=i32(0),
      best_metrics={n: f32(jnp.nan) for n, _ in rules.metrics}, plateau=plateau)
  opt_state = rules.make_tx(tx_hparams(rules, v, hp)).init(rules.flat.to_tree(params))
  return v._replace(
      opt_state=opt_state,
      eval_params=None if rules.family.eval_params is None else eval_params(rules, params,
                                                                            opt_state))


def train_step(rules: Rules, v: VariantState, hp: Hparams, x_BxD, y_B, w_B, key,
               extras: Extras | None = None, *, max_steps: jax.Array | int):
  """One minibatch update of one variant; a no-op for a stopped or diverged one or no rows.

  Args:
    rules: the static rules.
    v: the variant's state.
    hp: its numbers, name -> [] (the keys present decide what is traced: dropout, noise, ...).
    x_BxD, y_B, w_B: standardized features, labels and weights (0 for padding) of the batch.
    key: the minibatch's key; the model's dropout and the augmentation draw from it.
    extras: what the data axes need beyond the batch (`Extras`); None without them.
    max_steps: no update once the variant has applied this many (`Budget.max_steps`); 0: no cap.

  Returns:
    `(v, (loss x weight, accuracy x weight, weight))`, all zero unless the update applied.
  """
  tx = rules.make_tx(tx_hparams(rules, v, hp))
  tree = rules.flat.to_tree(v.params)

  def batch_loss(params):
    loss_B, correct_B = training_losses(rules, params, hp, x_BxD, y_B, key, extras)
    return weighted_mean(loss_B, w_B), weighted_mean(correct_B, w_B)

  (loss, acc), grads = jax.value_and_grad(batch_loss, has_aux=True)(tree)
  extra = {} if rules.family.extra_args is None else rules.family.extra_args(loss)
  updates, opt_state = tx.update(grads, v.opt_state, tree, **extra)
  params = optax.apply_updates(v.params, rules.flat.to_flat(updates))
  # The squared norm is finite exactly when the norm is. The barrier keeps XLA from sharing
  # this g**2 with the optimizer's, which would make it a buffer of its own written each step.
  healthy = (jnp.isfinite(loss) & (loss <= rules.divergence_factor * v.init_loss)
             & jnp.isfinite(optax.tree.norm(jax.lax.optimization_barrier(grads), squared=True)))
  training = ~v.stopped & ~v.diverged & (jnp.sum(w_B) > 0)
  training &= (max_steps <= 0) | (v.steps_run < max_steps)
  apply = training & healthy
  v = v._replace(
      params=_tree_where(apply, params, v.params),
      opt_state=_tree_where(apply, opt_state, v.opt_state),
      diverged=v.diverged | (training & ~healthy),
      steps_run=v.steps_run + apply.astype(jnp.int32))
  weight = jnp.where(apply, jnp.sum(w_B), 0.0)
  # where, not a product: a diverged step's NaN loss times a zero weight is still NaN.
  return v, (jnp.where(apply, loss * weight, 0.0), jnp.where(apply, acc * weight, 0.0), weight)


def no_improvement(score, best, wait, min_delta, counts, hold=False):
  """Keras' "no improvement for k epochs" count, shared by early stopping and the plateau.

  Args:
    score: [] this epoch's monitored score, lower is better.
    best: [] the best score so far.
    wait: [] epochs since the last improvement.
    min_delta: an improvement must beat `best - min_delta`.
    counts: [] bool, this epoch counts (the variant trained and did not diverge).
    hold: [] bool, count no epoch (a plateau's cooldown): the wait stays.

  Returns:
    `(improved, best, wait)`: the wait is 0 after an improvement, one more otherwise.
  """
  improved = counts & (score < best - min_delta)
  best = jnp.where(improved, score, best)
  wait = jnp.where(improved, 0, wait + (counts & ~hold).astype(jnp.int32))
  return improved, best, wait


def _plateau_number(hp: Hparams, name: str, default: float) -> jax.Array:
  return jnp.asarray(hp.get(name, default), jnp.float32)


def plateau_update(p: Plateau, score, counts, hp: Hparams) -> Plateau:
  """Keras' `ReduceLROnPlateau.on_epoch_end` on one variant's monitored score, traced.

  In cooldown the wait is reset and the counter decremented; an improvement (beating the best
  by `plateau_min_delta`) resets the wait; otherwise, out of cooldown, the wait grows, and at
  `plateau_patience` a rate above `plateau_min_lr` is multiplied by `plateau_factor` (not below
  `plateau_min_lr`), starting `plateau_cooldown` epochs of cooldown.

  Args:
    p: the plateau's state.
    score: [] the monitored score, lower is better (accuracy negated).
    counts: [] bool, the epoch counts (a stopped or diverged variant's state is left as is).
    hp: the variant's numbers; a `plateau_*` one absent takes Keras' default.

  Returns:
    The new state; `learning_rate` is the peak rate of the next epoch.
  """
  factor = _plateau_number(hp, "plateau_factor", 0.1)
  patience = _plateau_number(hp, "plateau_patience", 10)
  cooldown = _plateau_number(hp, "plateau_cooldown", 0).astype(jnp.int32)
  min_lr = _plateau_number(hp, "plateau_min_lr", 0.0)
  min_delta = _plateau_number(hp, "plateau_min_delta", 1e-4)
  was_cooling = counts & (p.cooldown > 0)
  counter = jnp.where(was_cooling, p.cooldown - 1, p.cooldown)
  wait = jnp.where(was_cooling, 0, p.wait)
  improved, best, wait = no_improvement(score, p.best, wait, min_delta, counts, hold=counter > 0)
  reduce = (counts & ~improved & (counter <= 0) & (wait.astype(jnp.float32) >= patience)
            & (p.learning_rate > min_lr))
  return Plateau(
      learning_rate=jnp.where(reduce, jnp.maximum(p.learning_rate * factor, min_lr),
                              p.learning_rate),
      best=best, wait=jnp.where(reduce, 0, wait), cooldown=jnp.where(reduce, cooldown, counter))


def end_epoch(rules: Rules, v: VariantState, hp: Hparams, was_training, epoch, sums, x_val, y_val,
              w_val, *, patience: jax.Array | int):
  """Validation, early stopping, the plateau and best-params tracking at an epoch's end.

  Args:
    rules: the static rules.
    v: the variant's state after the epoch's steps.
    hp: its numbers (the plateau's are read here).
    was_training: [] bool, the variant trained this epoch.
    epoch: [] int32, the 1-based epoch that ends.
    sums: `train_step`'s outputs summed over the epoch.
    x_val, y_val, w_val: the fold's standardized validation set and its weights.
    patience: early stopping after this many epochs without improvement (`Budget.patience`);
      0: never.

  Returns:
    `(v, history)`: the history's entries of this epoch, NaN where the variant did not train.
  """
  loss_sum, acc_sum, weight = sums
  current = eval_params(rules, v.params, v.opt_state)
  val_loss_B, val_correct_B, out_VxK = example_losses(
      rules.flat.tree, rules.classification, rules.flat.to_tree(current), x_val, y_val, None,
      False, loss=rules.loss, with_outputs=True, hparams=model_hparams(rules, hp))
  val_loss = weighted_mean(val_loss_B, w_val)
  val_acc = weighted_mean(val_correct_B, w_val)
  values = {n: jnp.asarray(m.fn(out_VxK, y_val, w_val), jnp.float32) for n, m in rules.metrics}
  for n, value in values.items():
    if value.shape != ():
      raise ConfigError(f"metric {n!r} must return a scalar, got shape {value.shape}")
  # The score is lower-is-better: a higher-is-better metric is negated.
  if rules.monitor == "val_loss":
    score = val_loss
  elif rules.monitor == "val_accuracy":
    score = -val_acc
  else:
    value = values[rules.monitor[len("val_"):]]
    score = -value if rules.monitored.higher_is_better else value
  counts = was_training & ~v.diverged
  improved, best_score, wait = no_improvement(score, v.best_score, v.wait, rules.min_delta, counts)
  stop = counts & (patience > 0) & (wait >= patience)
  names = tuple(n for n, _ in rules.metrics)
  # The rate this epoch's updates used, before the plateau changes the next epoch's.
  learning_rate = current_learning_rate(v.opt_state)
  v = v._replace(
      best_params=_tree_where(improved, current, v.best_params),
      best_score=best_score,
      best_epoch=jnp.where(improved, epoch, v.best_epoch),
      best_val_loss=jnp.where(improved, val_loss, v.best_val_loss),
      best_val_accuracy=jnp.where(improved, val_acc, v.best_val_accuracy),
      wait=wait,
      stopped=v.stopped | stop,
      epochs_run=v.epochs_run + was_training.astype(jnp.int32),
      eval_params=None if rules.family.eval_params is None else current,
      best_metrics={n: jnp.where(improved, values[n], v.best_metrics[n]) for n in names},
      plateau=None if not rules.plateau else plateau_update(v.plateau, score, counts, hp))
  nan = jnp.float32(jnp.nan)
  seen = was_training & (weight > 0)
  history = rules.history(
      train_loss=jnp.where(seen, loss_sum / jnp.maximum(weight, 1.0), nan),
      train_accuracy=jnp.where(seen, acc_sum / jnp.maximum(weight, 1.0), nan),
      # The epoch a variant diverges in does not count, in the history as in best_*: a
      # diverged variant must not "reach a target" its best metrics never show.
      val_loss=jnp.where(counts, val_loss, nan),
      val_accuracy=jnp.where(counts, val_acc, nan),
      learning_rate=jnp.where(was_training, learning_rate, nan),
      **{f"val_{n}": jnp.where(counts, values[n], nan) for n in names})
  return v, history


def make_rules(experiment: Experiment, model: Model | Flat, *, task: str, n_max: int,
               loss: Loss | None = None, metrics: Metrics = (),
               feature_shape: tuple[int, ...] | None = None,
               namespaces: Mapping[str, str] | None = None, make_tx=None) -> Rules:
  """The static `Rules` of a configuration (see `make_trainer` for the arguments).

  `make_tx` replaces the experiment's optimizer (`optim.make_optimizer`), e.g. by the finder's.
  """
  tcfg = experiment.train
  batch, steps_per_epoch = batching(tcfg.batch_size, n_max)
  if make_tx is None:
    make_tx = make_optimizer(experiment.optim, steps_per_epoch * tcfg.epochs)
  if not isinstance(model, Flat):
    flat = unflattened(model)
  elif experiment.optim.name in ELEMENTWISE:
    flat = unflattened(model.model)  # the vector is the optimizer's "pytree": one leaf
  else:
    flat = model
  # The step differentiates with respect to the layers (`flat.tree`), not the vector (no
  # gradient scattered into [P] only to be sliced again for the optimizer).
  metrics = tuple(metrics)
  names = tuple(name for name, _ in metrics)
  monitored = dict(metrics).get(tcfg.monitor[len("val_"):]) if tcfg.monitor.startswith("val_") else None
  if tcfg.monitor not in ("val_loss", "val_accuracy") and monitored is None:
    valid = ", ".join(["val_loss", "val_accuracy", *(f"val_{n}" for n in names)])
    raise ConfigError(f"monitor {tcfg.monitor!r} is not a metric of this sweep; valid choices: {valid}")
  return Rules(
      batch=batch, steps_per_epoch=steps_per_epoch, min_delta=tcfg.min_delta, monitor=tcfg.monitor, monitored=monitored,
      divergence_factor=tcfg.divergence_factor,
      classification=task == "classification",
      feature_shape=None if feature_shape is None else tuple(feature_shape),
      namespaces=tuple(sorted((namespaces or {}).items())), flat=flat, make_tx=make_tx,
      family=OPTIMIZERS[experiment.optim.name], loss=loss, metrics=metrics,
      plateau=experiment.optim.schedule == "plateau", history=history_type(names))


def fetch(data: DataArrays, fold, idx_B):
  """Standardized features and labels of rows `idx_B` of fold `fold`'s view of the data."""
  x_BxD = (data.x[idx_B] - data.mean[fold][None, :]) / data.std[fold][None, :]
  return x_BxD, data.y[idx_B]


def batch_extras(hparams: Hparams, data: DataArrays, fold, idx_B,
                 flips: tuple[jax.Array, jax.Array] | None) -> Extras | None:
  """What the data axes in `hparams` need of rows `idx_B` (`Extras`); None for none of them.

  Args:
    hparams: the points (only their keys are read).
    data, fold, idx_B: the data, the fold and the minibatch's rows.
    flips: the stream's `label_flips`, or None without label noise.
  """
  if "shift" not in hparams and flips is None:
    return None
  background = {}
  if "shift" in hparams:
    background = {"background_D": -data.mean[fold] / data.std[fold]}
  flip = {} if flips is None else {"flip_u_B": flips[0][idx_B], "flip_r_B": flips[1][idx_B]}
  return Extras(**background, **flip)


def make_trainer(experiment: Experiment, model: Model | Flat, *, task: str, n_max: int,
                 loss: Loss | None = None, metrics: Metrics = (),
                 feature_shape: tuple[int, ...] | None = None,
                 namespaces: Mapping[str, str] | None = None) -> Trainer:
  """Builds the pure trainer of one static configuration.

  The step and the end of an epoch are the module's `train_step` and `end_epoch` over the
  static `Rules`; this composes them: vmapped over a stream's points (which share their
  minibatches), scanned over minibatches, vmapped over streams, scanned over epochs.

  Args:
    experiment: the static configuration (optimizer family, schedule, batch size, what early
      stopping monitors). Its epochs, patience and step cap are not read (`run` takes them as
      a `Budget`), except the epochs under a `Schedule.horizon` schedule.
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
    feature_shape: one example's shape (`Dataset.feature_shape`), for random shifts.
    namespaces: `{name: namespace}` of the swept numbers (`hparams.axes`); the model gets the
      "model" ones. None: the built-in names' namespaces.

  Returns:
    A `Trainer`; its functions are pure and may be jitted, sharded and checkpointed freely.
    Every key of the `hparams_H` they are given is traced per variant; an axis absent from it
    (dropout, noise, ...) is not in the program at all.
  """
  rules = make_rules(experiment, model, task=task, n_max=n_max, loss=loss, metrics=metrics,
                     feature_shape=feature_shape, namespaces=namespaces)
  flat, batch, steps_per_epoch = rules.flat, rules.batch, rules.steps_per_epoch
  over_points = functools.partial(jax.vmap, in_axes=(0, 0) + (None,) * 5)

  # ----- one stream: all points of a (seed, fold), sharing minibatches ----------------------

  def init_stream(params, hparams_H, fold, data: DataArrays):
    x_train, y_train = fetch(data, fold, data.train_idx[fold])
    w_train = data.train_mask[fold].astype(jnp.float32)

    def initial_loss(hp):
      loss_B, _ = example_losses(flat.tree, rules.classification, flat.to_tree(params), x_train,
                                 y_train, None, False, loss=loss, hparams=model_hparams(rules, hp))
      return weighted_mean(loss_B, w_train)

    if model_hparams(rules, hparams_H):  # The model's numbers may change its outputs.
      train_loss, in_axes = jax.vmap(initial_loss)(hparams_H), (0, None, 0)
    else:  # One loss for all the stream's points.
      train_loss, in_axes = initial_loss({}), (0, None, None)
    return jax.vmap(functools.partial(init_variant, rules), in_axes=in_axes)(
        hparams_H, params, train_loss)

  def epoch_stream(v_H: VariantState, hparams_H, seed, fold, epoch, data: DataArrays,
                   budget: Budget):
    _, order_key, dropout_key = stream_keys(seed)
    idx_MxB, w_MxB = epoch_order(order_key, epoch, data.train_idx[fold], data.train_mask[fold],
                                 batch, steps_per_epoch)
    was_training = ~v_H.stopped & ~v_H.diverged
    flips = label_flips(seed, data.x.shape[0]) if "label_noise" in hparams_H else None

    def minibatch(carry, inputs):
      v, sums = carry
      idx_B, w_B, step = inputs
      x_BxD, y_B = fetch(data, fold, idx_B)
      extras = batch_extras(hparams_H, data, fold, idx_B, flips)
      key = jax.random.fold_in(dropout_key, epoch * steps_per_epoch + step)
      v, delta = over_points(functools.partial(train_step, rules, max_steps=budget.max_steps))(
          v, hparams_H, x_BxD, y_B, w_B, key, extras)
      sums = jax.tree_util.tree_map(jnp.add, sums, delta)
      return (v, sums), None

    zeros = jnp.zeros(was_training.shape, jnp.float32)
    (v_H, sums), _ = jax.lax.scan(
        minibatch, (v_H, (zeros, zeros, zeros)),
        (idx_MxB, w_MxB, jnp.arange(steps_per_epoch, dtype=jnp.int32)))
    x_val, y_val = fetch(data, fold, data.val_idx[fold])
    w_val = data.val_mask[fold].astype(jnp.float32)
    return jax.vmap(functools.partial(end_epoch, rules, patience=budget.patience),
                    in_axes=(0, 0, 0, None, 0, None, None, None))(
        v_H, hparams_H, was_training, epoch + 1, sums, x_val, y_val, w_val)

  # ----- the population ----------------------------------------------------------------------

  def init(params_S, hparams_H, folds_S, data: DataArrays) -> SweepState:
    variants = jax.vmap(init_stream, in_axes=(0, None, 0, None))(params_S, hparams_H, folds_S, data)
    return SweepState(epoch=jnp.zeros((), jnp.int32), variants=variants)

  def run(state: SweepState, hparams_H, seeds_S, folds_S, data: DataArrays, budget: Budget,
          num_epochs: int):
    """Runs `num_epochs` more epochs (fewer if the budget's total is reached first)."""

    def train_epoch(state: SweepState):
      variants, history = jax.vmap(epoch_stream, in_axes=(0, None, 0, 0, None, None, None))(
          state.variants, hparams_H, seeds_S, folds_S, state.epoch, data, budget)
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
