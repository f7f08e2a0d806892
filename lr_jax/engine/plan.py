"""Planning (`plan_sweep`): every input checked, one `Group` per experiment, before compiling."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from lr_jax import data as data_lib
from lr_jax import hparams as hparams_lib
from lr_jax.config import MONITORS, Experiment, Interval, check_type
from lr_jax.engine.grid import Grid, _point_columns, _product
from lr_jax.engine.limits import _check_memory, _check_steps
from lr_jax.errors import ConfigError
from lr_jax.models import Model, build_model, check_widths, layer_names
from lr_jax.models.layers import no_layers
from lr_jax.spec import GROUP_HPARAMS
from lr_jax.train import Loss, Metric, Metrics
from lr_jax.trained import num_outputs


@dataclasses.dataclass(frozen=True)
class Group:
  """One compile group, planned and checked: a static configuration and its variants."""

  experiment: Experiment
  dataset: data_lib.Dataset
  splits: data_lib.Splits
  model: Model | None            # a user model; None builds the experiment's ModelConfig
  points: dict[str, np.ndarray]  # name -> [H] float64; learning_rate first
  seeds: np.ndarray              # [S] int32, streams are seeds x folds (seed-major)
  folds: np.ndarray              # [S] int32
  loss: Loss | None = None       # a user per-example loss; None is the task's built-in one
  metrics: Metrics = ()          # user validation metrics, ((name, Metric), ...)


def _check_arguments(experiments, grid, model) -> list[Experiment]:
  """The distinct experiments to plan, once the arguments' types are checked."""
  experiments = check_type(experiments, Experiment | tuple[Experiment, ...], "experiments")
  if isinstance(experiments, Experiment):
    experiments = (experiments,)
  if not experiments:
    raise ConfigError("no experiments to run; give at least one configuration")
  check_type(grid, Grid, "grid")
  if model is not None and not isinstance(model, Model):
    raise ConfigError(
        "model must be a Model (lr_jax.from_linen(module, input_shape) or "
        f"lr_jax.from_nnx(factory)) or None, got {type(model).__name__}")
  return list(dict.fromkeys(experiments))


def check_loss_metrics(loss, metrics) -> tuple[Loss | None, Metrics]:
  """Checks a user loss and metrics (`run_sweep`'s `loss=`, `metrics=`), before any compiling.

  Returns:
    The loss, and the metrics as `((name, Metric), ...)` in the order given.
  """
  if loss is not None and not callable(loss):
    raise ConfigError(f"loss must be a function (outputs_BxK, y_B) -> [B] or None, got "
                      f"{type(loss).__name__}")
  if metrics is None:
    metrics = {}
  if not isinstance(metrics, Mapping):
    raise ConfigError(f"metrics must be a dict {{name: lr_jax.Metric(fn, higher_is_better)}}, "
                      f"got {type(metrics).__name__}")
  for name, metric in metrics.items():
    if not isinstance(name, str) or not name.isidentifier() or name in ("loss", "accuracy"):
      raise ConfigError(f"metric name {name!r} must be an identifier other than 'loss' and "
                        "'accuracy' (the built-in val_loss, val_accuracy)")
    if not isinstance(metric, Metric):
      raise ConfigError(f"metric {name!r} must be lr_jax.Metric(fn, higher_is_better=...), got "
                        f"{type(metric).__name__}; its direction decides early stopping and "
                        "the selection")
  for what, f in [("loss", loss)] + [(f"metric {n!r}", m.fn) for n, m in metrics.items()]:
    try:  # It keys the compile cache, by identity.
      hash(f)
    except TypeError:
      raise ConfigError(f"{what} must be hashable (a function, not {type(f).__name__})") from None
  return loss, tuple(metrics.items())


def metric_names(task: str, metrics: Metrics) -> dict[str, bool]:
  """The validation metrics a sweep of `task` tracks: `val_<name>` -> higher is better."""
  names = {"val_loss": False}
  if task == "classification":
    names["val_accuracy"] = True
  names.update({f"val_{n}": m.higher_is_better for n, m in metrics})
  return names


def check_select_by(select_by: str | None, groups: Sequence[Group]) -> str | None:
  """Checks `run_sweep(select_by=...)`: None (the task's default) or a metric of every group."""
  select_by = check_type(select_by, str | None, "select_by")
  for g in groups:
    valid = metric_names(g.dataset.task, g.metrics)
    if select_by is not None and select_by not in valid:
      raise ConfigError(f"select_by {select_by!r} is not a metric of {g.dataset.name!r} "
                        f"({g.dataset.task}); valid choices: {', '.join(valid)}")
  return select_by


# What a target is compared with, per task, and the values that metric can take.
_TARGET_METRICS = {"classification": ("validation accuracy", Interval(0.0, 1.0, "[]")),
                   "regression": ("validation loss", Interval(0.0, math.inf, "[)"))}


def check_target(target: float | None, groups: Sequence[Group] = ()) -> float | None:
  """Checks a target metric: None, or a finite number that every group's metric can reach.

  Args:
    target: validation accuracy (classification) or loss (regression) to reach, or None.
    groups: planned groups, whose tasks give the metric; none checks only the type.

  Returns:
    The target as a Python float (numpy numbers accepted), or None.
  """
  target = check_type(target, float | None, "target")
  if target is None:
    return None
  if not math.isfinite(target):
    raise ConfigError(f"target must be finite, got {target!r}")
  for g in groups:
    metric, valid = _TARGET_METRICS[g.dataset.task]
    if target not in valid:
      raise ConfigError(f"target {target!r} can never be reached: the {metric} of "
                        f"{g.dataset.name!r} ({g.dataset.task}) lies in {valid}")
  return target


def _load(data_cfg) -> data_lib.Dataset:
  """The data set of `data_cfg`, loaded once per process while its files stay as they are.

  A file rewritten under its name (a notebook's next cell) is a new key: its size, mtime or
  inode changes, so a sweep never trains on the arrays of the file's old content.
  """
  state = []
  for field in ("dataset", "val_dataset", "test_dataset"):
    path = getattr(data_cfg, field, None)
    if isinstance(path, str) and os.path.isfile(path):
      st = os.stat(path)
      state.append((field, os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino))
  return _load_cached(data_cfg, tuple(state))


@functools.lru_cache(maxsize=8)
def _load_cached(data_cfg, file_state) -> data_lib.Dataset:
  del file_state  # Part of the cache key only.
  return data_lib.load_dataset(data_cfg)


def plan_sweep(experiments: Experiment | Sequence[Experiment], grid: Grid,
               model: Model | None = None, *, loss: Loss | None = None,
               metrics: Mapping[str, Metric] | None = None) -> list[Group]:
  """Checks every input and plans one compile group per distinct experiment.

  Args:
    experiments: one static configuration or several (duplicates are merged).
    grid: the dynamic axes.
    model: a user model (`lr_jax.models.from_linen` / `from_nnx`) used instead of the
      experiments' built-in `ModelConfig`.
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]` replacing the task's built-in one.
    metrics: `{name: lr_jax.Metric(fn, higher_is_better)}`, validation metrics of one's own.

  Returns:
    The groups, in the order given.

  Raises:
    ConfigError: on any bad input, before anything is compiled; a wrong type, an unknown or
      out-of-range hyperparameter before any data is loaded. Also a group that cannot fit
      (`_check_memory`: one variant past the device's memory, the grid's variants past the
      host's, from shapes alone, before the grid's points are built) and one whose optimizer
      steps, epochs x steps per epoch, do not fit int32 (`_check_steps`).
  """
  experiments = _check_arguments(experiments, grid, model)
  loss, metrics = check_loss_metrics(loss, metrics)
  for exp in experiments:  # Unknown or out-of-range hyperparameters: before loading any data.
    hparams_lib.check_experiment(exp)
    _point_columns(exp, grid, model=model)
    user = {f"val_{n}" for n, _ in metrics}
    if exp.train.monitor not in MONITORS and exp.train.monitor not in user:
      raise ConfigError(f"monitor {exp.train.monitor!r} is not a metric of this sweep; valid "
                        f"choices: {', '.join(['val_loss', 'val_accuracy', *sorted(user)])}")
    if model is not None:
      _check_unused_model_fields(exp, model)
  groups = []
  for exp in experiments:
    dataset = _load(dataclasses.replace(exp.data, train_size=None, folds=None))
    splits = data_lib.make_splits(dataset, exp.data)
    smallest = int(splits.train_sizes.min())
    if exp.train.batch_size > smallest:
      raise ConfigError(
          f"batch_size {exp.train.batch_size} is larger than the training set ({smallest} "
          f"examples); valid choices: 1..{smallest}, or 0 for full batch")
    if dataset.task == "regression" and exp.train.monitor == "val_accuracy":
      raise ConfigError(
          f"monitor 'val_accuracy' needs a classification data set, {dataset.name!r} is "
          "regression; valid choice: val_loss")
    if model is None:  # Build once here so a bad model/data pairing is refused before compiling.
      built = build_model(exp.model, _num_outputs(dataset), dataset.feature_shape)
    else:
      _check_user_model(model, dataset)
    columns = _point_columns(exp, grid, task=dataset.task, feature_shape=dataset.feature_shape,
                             model=model)
    _check_steps(exp, splits)
    _check_layers(model if model is not None else built, columns)
    # Before the points and streams are built: a grid too large for memory is refused, not run.
    _check_memory(exp, model if model is not None else built, dataset, splits, columns,
                  num_seeds=len(grid.seeds), user_model=model is not None,
                  num_metrics=len(metrics))
    folds = range(splits.num_folds)  # Nested CV's outer folds are more folds: more streams.
    streams = [(s, f) for s in grid.seeds for f in folds]
    groups.append(Group(
        experiment=exp, dataset=dataset, splits=splits, model=model,
        points=_product(columns),
        seeds=np.array([s for s, _ in streams], np.int32),
        folds=np.array([f for _, f in streams], np.int32), loss=loss, metrics=metrics))
  return groups


def _check_layers(model: Model, columns: dict[str, tuple]) -> None:
  """Refuses fine-tuning's numbers for a model without layers to scale (params that are not a
  mapping of layers), before anything is traced."""
  swept = [name for name in GROUP_HPARAMS if name in columns]
  if swept and not layer_names(model):
    raise no_layers(swept, model.name)


def _num_outputs(dataset: data_lib.Dataset) -> int:
  return num_outputs(dataset.task, dataset.num_classes)  # The one rule, with the saved model's.


def _check_user_model(model: Model, dataset: data_lib.Dataset) -> None:
  """Refuses a user model whose input or output shape does not fit the data (no compiling)."""
  needs = (f"{dataset.num_classes} classes" if dataset.task == "classification"
           else "regression, 1 output")
  check_widths(model, dataset.x.shape[1], _num_outputs(dataset), f"{dataset.name!r} ({needs})",
               dataset.feature_shape)


# ModelConfig's fields, by the flag that sets them (`lr_jax.cli`).
_MODEL_FLAGS = {"name": "--model", "hidden": "--hidden", "activation": "--activation",
                "dropout": "--dropout"}


def _check_unused_model_fields(exp: Experiment, model: Model) -> None:
  """Refuses a built-in model's setting given with a user model, which would ignore it."""
  default = type(exp.model)()
  for field in dataclasses.fields(exp.model):
    value = getattr(exp.model, field.name)
    if value != getattr(default, field.name):
      flag = _MODEL_FLAGS.get(field.name)
      raise ConfigError(
          f"ModelConfig.{field.name}={value!r}{f' ({flag})' if flag else ''} does not apply "
          f"to the user model {model.name!r}, which builds its own layers; leave "
          f"{field.name} at its default {getattr(default, field.name)!r}")
