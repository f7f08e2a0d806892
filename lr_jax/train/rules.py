"""The static `Rules` a step runs under."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import optax

from lr_jax.config import MONITORS, Experiment
from lr_jax.errors import ConfigError
from lr_jax.models import Model, depth_of_leaves, layer_depths, leaf_depths
from lr_jax.optim import OPTIMIZERS, make_optimizer
from lr_jax.train.objective import Loss, Metric, Metrics
from lr_jax.train.state import Hparams, history_type
from lr_jax.train.streams import batching


class Rules(NamedTuple):
  """Everything static a step needs: the compiled program is a function of these.

  Attributes:
    batch: the minibatch size B.
    steps_per_epoch: minibatches per epoch M.
    monitor: the monitored metric's name (`TrainConfig.monitor`).
    monitored: the user `Metric` monitored, or None for val_loss / val_accuracy.
    classification: softmax cross-entropy and accuracy, or squared error.
    feature_shape: one example's shape (random shifts need an image, rank >= 2), or None.
    model: the model; each variant's parameters are its pytree.
    make_tx: `hp -> optax transformation` (`optim.make_optimizer`) of a variant's tree.
    family: the optimizer family (`optim.OPTIMIZERS` entry).
    loss: the user's per-example loss, or None for the built-in one.
    metrics: `((name, Metric), ...)` computed on the validation set.
    plateau: reduce the learning rate on a plateau of the monitored score.
    history: the history's type (`history_type`).
    depths: each parameter leaf's layer depth below the head (`models.layer_depths`: 0 for the
      head, k for the k-th backbone layer below it), a pytree of ints like the model's params;
      None for a model whose params are not a mapping of layers.
    max_depth: the deepest layer's depth (0: the head is every layer).
    frozen: the backbone is frozen in every variant (`backbone_lr_scale` 0 throughout): its
      parameters enter the loss as constants (no backward pass through them) and the
      optimizer keeps state for the head alone (`optax.masked`).
  """

  batch: int
  steps_per_epoch: int
  monitor: str
  monitored: Metric | None
  classification: bool
  feature_shape: tuple[int, ...] | None
  model: Model
  make_tx: Callable[[Hparams], optax.GradientTransformation]
  family: object
  loss: Loss | None
  metrics: Metrics
  plateau: bool
  history: type
  depths: object = None
  max_depth: int = 0
  frozen: bool = False


def make_rules(experiment: Experiment, model: Model, *, task: str, n_max: int,
               loss: Loss | None = None, metrics: Metrics = (),
               feature_shape: tuple[int, ...] | None = None, make_tx=None,
               frozen_backbone: bool = False) -> Rules:
  """The static `Rules` of a configuration (see `make_trainer` for the arguments).

  `make_tx` replaces the experiment's optimizer (`optim.make_optimizer`), e.g. by the finder's.
  """
  tcfg = experiment.train
  batch, steps_per_epoch = batching(tcfg.batch_size, n_max)
  if make_tx is None:
    make_tx = make_optimizer(experiment.optim, steps_per_epoch * tcfg.epochs)
  # A family that validates other parameters than it trains (`eval_params`, e.g. schedule-free)
  # reads its whole state: its frozen backbone is the scaled update's zero, not a mask.
  frozen_backbone &= OPTIMIZERS[experiment.optim.name].eval_params is None
  depths, max_depth = _depths(model)
  frozen = frozen_backbone and max_depth > 0
  if frozen:
    head_mask = jax.tree_util.tree_map(lambda depth: depth == 0, depths)
    make_tx = _masked(make_tx, head_mask)
  metrics = tuple(metrics)
  names = tuple(name for name, _ in metrics)
  monitored = dict(metrics).get(tcfg.monitor[len("val_"):]) if tcfg.monitor.startswith("val_") else None
  if tcfg.monitor not in MONITORS and monitored is None:
    valid = ", ".join([*MONITORS, *(f"val_{n}" for n in names)])
    raise ConfigError(f"monitor {tcfg.monitor!r} is not a metric of this sweep; valid choices: {valid}")
  return Rules(
      batch=batch, steps_per_epoch=steps_per_epoch, monitor=tcfg.monitor, monitored=monitored,
      classification=task == "classification",
      feature_shape=None if feature_shape is None else tuple(feature_shape),
      model=model, make_tx=make_tx,
      family=OPTIMIZERS[experiment.optim.name], loss=loss, metrics=metrics,
      plateau=experiment.optim.schedule == "plateau", history=history_type(names),
      depths=depths, max_depth=max_depth, frozen=frozen)


def _masked(make_tx, head_mask):
  """`make_tx` whose transformation updates, and keeps state for, the head's leaves only."""
  return lambda hp: optax.masked(make_tx(hp), head_mask)


def _depths(model: Model) -> tuple[object, int]:
  """Each parameter leaf's layer depth (a pytree like the params), and the deepest."""
  depths = layer_depths(model)
  if not depths:
    return None, 0
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  return depth_of_leaves(leaf_depths(model), shapes), max(depths.values())
