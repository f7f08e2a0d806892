"""The host shell: plans compile groups, places variants on devices, runs epochs in chunks.

    result = run_sweep(Experiment(...), Grid(learning_rates=(1e-4, 1e-3), seeds=(0, 1, 2)))

Everything traced lives in `lr_jax.train`; this module only decides shapes, moves arrays and
logs progress. All input checks run in `plan_sweep`, before anything is compiled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import sys
import threading
import time
import types
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lr_jax import checkpoint
from lr_jax import data as data_lib
from lr_jax import hparams as hparams_lib
from lr_jax import optim as optim_lib
from lr_jax import outputs
from lr_jax import stats
from lr_jax.config import (INT32_MAX, DataConfig, Experiment, Interval, TrainConfig,
                           check_distinct, check_fields, check_learning_rates, check_positive,
                           check_type)
from lr_jax.errors import ConfigError
from lr_jax.models import Flat, Model, build_model, check_widths, flattened
from lr_jax.optim import OPTIMIZERS, SCHEDULES, make_optimizer
from lr_jax.results import SweepResult
from lr_jax.train import (Budget, DataArrays, History, Loss, Metric, Metrics, SweepState,
                          batching, final_params, initial_params, make_trainer)


@dataclasses.dataclass(frozen=True)
class Grid:
  """The dynamic axes of a sweep; their product is the variant axis of every compile group.

  Attributes:
    learning_rates: peak learning rates, distinct.
    seeds: training seeds, distinct (init and minibatch order; the data split has its own
      `data_seed`).
    hparams: other per-variant numbers, e.g. `{"model.dropout_rate": (0, .2), "weight_decay":
      (0, 1e-4)}` or its `(name, values)` pairs: any of `lr_jax.hparams.catalog()`, named
      short or qualified by its namespace (stored short), or "model.<name>" of a user
      model's declared number; values distinct. A name the experiment does not have, or a
      value outside its range, is refused when planned: before data is loaded, or before
      compiling where it depends on the data (shift's image size, classification-only
      numbers). One it has but not listed takes the experiment's default.

  Numbers may be numpy or JAX numbers and sequences 1-D arrays; they are stored as Python
  tuples of Python numbers.
  """

  learning_rates: tuple[float, ...] = (1e-3,)
  seeds: tuple[int, ...] = (0,)
  hparams: tuple[tuple[str, tuple[float, ...]], ...] = ()

  def __post_init__(self):
    if isinstance(self.hparams, Mapping):
      object.__setattr__(self, "hparams", tuple(self.hparams.items()))
    # Before any per-value check: those walk every value, and a grid of 1e9 variants would hang
    # there (or in planning) rather than be refused.
    check_variant_count(_grid_counts(self))
    check_fields(self)
    object.__setattr__(self, "learning_rates", check_learning_rates(self.learning_rates))
    # A repeated point would narrow the interval: n counts runs, not distinct points.
    twice = " (a repeated one would be trained twice and counted as more runs)"
    check_distinct("learning rates", self.learning_rates, twice)
    if not self.seeds:
      raise ConfigError("the seed list is empty; give at least one seed")
    for s in self.seeds:
      check_positive("seed", s, integer=True, allow_zero=True)
    check_distinct("seeds", self.seeds, twice)
    object.__setattr__(self, "hparams", tuple(
        (_grid_name(name), values) for name, values in self.hparams))
    check_distinct("hyperparameter names", [name for name, _ in self.hparams])
    for name, values in self.hparams:
      if not values:
        raise ConfigError(f"hyperparameter {name!r} has an empty list of values")
      for x in values:  # The experiment's range is checked when planned (`_points`).
        if not math.isfinite(x):
          raise ConfigError(f"hyperparameter {name!r} must be finite, got {x!r}")
      check_distinct(f"{name} values", values, twice)


# A variant's result row: some 20 columns of 8 bytes (`SweepResult.rows`). The least host memory
# any variant takes, whatever its model; planning counts the rest (`_check_memory`).
_ROW_BYTES = 160


def _grid_counts(grid) -> list[tuple[str, int]]:
  """The grid's axes as `(description, length)`, from `len()` alone (nothing iterated); an
  axis whose length cannot be read is left out (`check_fields` then names its type)."""
  axes = [("learning rate", grid.learning_rates), ("seed", grid.seeds)]
  hparams = grid.hparams if isinstance(grid.hparams, (tuple, list)) else ()
  for pair in hparams:
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str):
      axes.append((f"{pair[0]} value", pair[1]))
  counts = []
  for what, values in axes:
    if isinstance(values, (str, bytes)):
      continue
    try:
      n = len(values)
    except TypeError:
      continue
    counts.append((f"{n:,} {what}{'s' * (n != 1)}", n))
  return counts


def check_variant_count(counts: Sequence[tuple[str, int]]) -> None:
  """Refuses a grid whose variants' result rows alone would not fit in this machine's memory.

  Cheap: it multiplies counts, so a caller can check a grid before building it (a script before
  expanding `--num_lrs` into learning rates or `--seeds` into a tuple:
  `check_variant_count([("--num_lrs=16", 16), ("--seeds=3", 3)])`). Planning refuses tighter,
  once the model and epochs are known (`plan_sweep`).

  Args:
    counts: `(description, length)` of each axis, e.g. `("--seeds=3", 3)`.

  Raises:
    ConfigError: one line naming the counts, the memory they need and this machine's.
  """
  total = math.prod(n for _, n in counts)
  memory = _host_memory_bytes()
  if memory is None or total * _ROW_BYTES <= memory:
    return
  product = " x ".join(what for what, _ in counts)
  raise ConfigError(
      f"{product} = {total:,} variants: their result rows alone need "
      f"~{_size(total * _ROW_BYTES)} of host memory ({_ROW_BYTES} bytes each), more than this "
      f"machine's {_size(memory)}; valid: at most {memory // _ROW_BYTES:,} variants (fewer "
      "learning rates, seeds or hyperparameter values), and fewer still once the model's "
      "state is counted")


def _size(num_bytes: float) -> str:
  """Bytes for a message: '47.7 GiB', '12.0 MiB'."""
  for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if num_bytes >= scale:
      return f"{num_bytes / scale:.1f} {unit}"
  return f"{int(num_bytes)} bytes"


def _grid_name(name: str) -> str:
  """A grid's name of a number, short; "model.<name>" kept for a user model's own numbers,
  which only the model declares (checked when planned)."""
  if not isinstance(name, str):
    raise ConfigError(f"Grid.hparams names must be strings, got {name!r}")
  known = hparams_lib.catalog()
  namespace, dot, short = name.rpartition(".")
  if namespace == "model" and short.isidentifier() and short not in known:
    return name
  name = hparams_lib.resolve(name, known)
  if name == "learning_rate":
    raise ConfigError("Grid.hparams may not list learning_rate; valid choice: give them as "
                      "Grid(learning_rates=...)")
  return name


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


def _points(experiment: Experiment, grid: Grid, *, task: str | None = None,
            feature_shape: tuple[int, ...] | None = None,
            model: Model | None = None) -> dict[str, np.ndarray]:
  """The grid points of an experiment: name -> [H] values, every value in its declared range.

  The product of `_point_columns` (see there).
  """
  return _product(_point_columns(experiment, grid, task=task, feature_shape=feature_shape,
                                 model=model))


def _product(columns: dict[str, tuple]) -> dict[str, np.ndarray]:
  """Every combination of the columns' values, as [H] float64 columns (the first varies slowest)."""
  combos = list(itertools.product(*columns.values()))
  # float64 on the host, so results report the values as given; float32 on the device.
  return {k: np.array([c[i] for c in combos], np.float64) for i, k in enumerate(columns)}


def _point_columns(experiment: Experiment, grid: Grid, *, task: str | None = None,
                   feature_shape: tuple[int, ...] | None = None,
                   model: Model | None = None) -> dict[str, tuple]:
  """The axes of an experiment's grid points: name -> values, every value checked; the points
  are their product (`_points`), which this does not build.

  Every number the experiment has (`lr_jax.hparams.axes`) is an axis: the grid's values or the
  experiment's default. An axis whose values are all its `off` value is left out (its code is
  not compiled), so a grid that does not sweep dropout is the program without dropout.

  Args:
    experiment: the static configuration.
    grid: the dynamic axes.
    task, feature_shape: the data's; None before it is loaded (then only what holds for any
      data is checked).
    model: a user model (its declared numbers), or None.
  """
  known = hparams_lib.axes(experiment, task=task, feature_shape=feature_shape, model=model)
  catalog = hparams_lib.catalog()
  listed = []
  for name, values in grid.hparams:
    short = name.rpartition(".")[2]
    if short not in known and short in catalog:
      if all(x == catalog[short].spec.off for x in values):
        continue  # Off: it changes nothing here either (--dropout=0 with a linear model).
      valid = ", ".join(f"{a.namespace}.{a.name}" for a in known.values())
      why = hparams_lib.not_here(short, experiment, task=task, feature_shape=feature_shape,
                                 model=model)
      raise ConfigError(f"hyperparameter {short!r} does not apply to {why}; valid choices: "
                        f"{valid}")
    listed.append((name, values))
  given = {hparams_lib.resolve(name, known): values for name, values in listed}
  columns = {"learning_rate": grid.learning_rates}
  for name, axis in known.items():
    if name == "learning_rate":
      continue
    values = given.get(name, (axis.spec.default,))
    for x in given.get(name, ()):  # Defaults are the config's, checked when it was built.
      hparams_lib.check_value(name, axis.spec, x)
    if all(x == axis.spec.off for x in values):
      continue
    columns[name] = values
  for x in grid.learning_rates:
    hparams_lib.check_value("learning_rate", known["learning_rate"].spec, x)
  return columns


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
    if exp.train.monitor not in ("val_loss", "val_accuracy") and exp.train.monitor not in user:
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


def _num_outputs(dataset: data_lib.Dataset) -> int:
  return dataset.num_classes if dataset.task == "classification" else 1


def _check_user_model(model: Model, dataset: data_lib.Dataset) -> None:
  """Refuses a user model whose input or output shape does not fit the data (no compiling)."""
  needs = (f"{dataset.num_classes} classes" if dataset.task == "classification"
           else "regression, 1 output")
  check_widths(model, dataset.x.shape[1], _num_outputs(dataset), f"{dataset.name!r} ({needs})",
               dataset.feature_shape)


def _check_steps(exp: Experiment, splits: data_lib.Splits) -> None:
  """Refuses a run whose optimizer step count does not fit the int32 the program counts it in.

  A variant counts its updates in int32 (`VariantState.steps_run`, optax's count), and a
  schedule with a horizon (cosine, warmup_cosine, onecycle) multiplies by epochs x steps per
  epoch when the program is built: past 2**31 - 1 that overflows while tracing (a traceback
  after the data is loaded), or wraps the count. `TrainConfig.max_steps` caps the updates of
  the other schedules; a horizon schedule's shape spans all the epochs whatever the cap.
  """
  train = exp.train
  n_max = int(splits.train_idx.shape[1])
  _, steps_per_epoch = batching(train.batch_size, n_max)
  total = train.epochs * steps_per_epoch
  horizon = SCHEDULES[exp.optim.schedule].horizon
  if total <= INT32_MAX or (train.max_steps and not horizon):
    return
  batch = f"batch_size={train.batch_size}" if train.batch_size else "full batch (batch_size=0)"
  valid = f"epochs <= {INT32_MAX // steps_per_epoch:,} at this batch size, or a larger batch_size"
  if horizon:
    why = (f"the {exp.optim.schedule!r} schedule's horizon, an int32 in the program (max_steps "
           "does not shorten it)")
  else:
    why = "a variant's step count, an int32"
    valid += f", or max_steps in 1..{INT32_MAX} to cap the updates"
  raise ConfigError(
      f"epochs={train.epochs:,} x {steps_per_epoch:,} steps per epoch ({batch}, {n_max:,} "
      f"training rows) = {total:,} optimizer steps, more than {INT32_MAX:,}, the most {why} "
      f"holds; valid: {valid}")


def _activation_bytes(exp: Experiment, dataset: data_lib.Dataset, splits: data_lib.Splits) -> int:
  """A variant's activations: a validation pass (`v_max` rows) and a quarter of the training
  rows through every layer of the built-in MLP's widths (`default_max_variants`)."""
  widths = sum(exp.model.hidden) + max(dataset.num_classes, 1)
  return 4 * widths * (splits.val_idx.shape[1] + splits.train_idx.shape[1] // 4)


def _tree_bytes(tree) -> int:
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree_util.tree_leaves(tree))


def _check_memory(exp: Experiment, model: Model, dataset: data_lib.Dataset,
                  splits: data_lib.Splits, columns: dict[str, tuple], *, num_seeds: int,
                  user_model: bool, num_metrics: int) -> None:
  """Refuses a group whose smallest unit cannot fit, from shapes alone (nothing allocated).

  Two units: one variant on the device (its parameters, their best copy, gradients, optimizer
  state, activations: what a chunk of one variant holds, `default_max_variants`' estimate),
  and the whole grid on the host, where the chunks wait between calls and the result is
  assembled (every variant's final state, its history, its result row). Each estimate is
  compared with the memory as a whole: a refusal means it cannot fit at all, not that it
  would be tight.

  Raises:
    ConfigError: one line naming the estimate, its parts and the memory it exceeds.
  """
  # Shapes only: an abstract key (a concrete PRNGKey(0) would compile a program before the
  # scripts have checked their --out, which they do before anything compiles), and no
  # JAX_LOG_COMPILES line for a trace that compiles nothing.
  with jax.log_compiles(False):
    params = jax.eval_shape(model.init, jax.eval_shape(jax.random.PRNGKey, 0))
  param_bytes = _tree_bytes(params)
  n_max = int(splits.train_idx.shape[1])
  _, steps_per_epoch = batching(exp.train.batch_size, n_max)
  family = OPTIMIZERS.get(exp.optim.name)
  eval_bytes = param_bytes if family is not None and family.eval_params is not None else 0
  state = {"parameters": param_bytes, "best parameters": param_bytes,
           "optimizer state": 0, "validated parameters": eval_bytes}
  device = {**state, "gradients": param_bytes,
            "activations": _activation_bytes(exp, dataset, splits)}
  memory = _device_memory_bytes()
  host = _host_memory_bytes()
  num_points = math.prod(len(v) for v in columns.values())
  num_streams = num_seeds * splits.num_folds
  epochs = exp.train.epochs
  history = 4 * epochs * (len(History._fields) + num_metrics)
  variants = num_streams * num_points
  # The optimizer's state from its shapes, traced only where it could decide: it would have to
  # be over three times the rest (nine times the parameters) to matter otherwise, and tracing
  # calls the family's factory, which a sweep should do once, when it compiles.
  rest_host = variants * (sum(state.values()) + history + _ROW_BYTES)
  if 4 * sum(device.values()) > memory or (host is not None and 4 * rest_host > host):
    try:  # A family that cannot say counts none.
      make_tx = make_optimizer(exp.optim, exp.train.epochs * steps_per_epoch)
      hparams = {k: np.float32(v[0]) for k, v in columns.items()}
      with jax.log_compiles(False):
        opt_bytes = _tree_bytes(jax.eval_shape(lambda p, h: make_tx(h).init(p), params, hparams))
    except Exception:  # pylint: disable=broad-except
      opt_bytes = 0
    state["optimizer state"] = device["optimizer state"] = opt_bytes
  per_device = sum(device.values())
  if per_device > memory:
    if user_model:
      what, valid = f"the model {model.name!r}", "a smaller model"
    else:
      what = (f"ModelConfig(name={exp.model.name!r}, hidden={tuple(exp.model.hidden)}) (--model, "
              "--hidden)")
      valid = "narrower or fewer hidden layers"
    parts = ", ".join(f"{k} {_size(v)}" for k, v in device.items() if v)
    where = "this machine's" if jax.default_backend() == "cpu" else "this device's"
    raise ConfigError(
        f"{what} on {dataset.name!r} ({int(np.prod(dataset.feature_shape)):,} features): one "
        f"variant needs ~{_size(per_device)} ({parts}), more than {where} {_size(memory)}; "
        f"valid: {valid}, or a machine with more memory")
  if host is None:
    return
  per_host = sum(state.values()) + history + _ROW_BYTES
  if variants * per_host > host:
    folds = f" x {splits.num_folds} folds" if splits.num_folds > 1 else ""
    raise ConfigError(
        f"{num_seeds:,} seeds{folds} x {num_points:,} grid points = {variants:,} variants need "
        f"~{_size(variants * per_host)} of host memory ({_size(per_host)} each: the final "
        f"state, {epochs:,} epochs of history and the result row), more than this machine's "
        f"{_size(host)}; valid: at most {host // per_host:,} variants with this model and "
        "epochs (fewer learning rates, seeds, folds or hyperparameter values)")


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


def compiler_options() -> dict | None:
  """XLA options of lr_jax's programs on a CPU.

  LLVM optimization level 1 instead of 2. Measured on a study cell and workload P (2-core
  CPU): XLA compiles them 20-30% faster (the trainer 3.6 -> 2.8 s, the initializers 1.5 ->
  0.5 s); they run as fast within the noise (workload P at N=64: 0.078 vs 0.075 s per
  variant, medians of two runs each, level 1 vs 2).

  Copy insertion with region analysis: without it XLA cannot see that the step reads the old
  Adam moments before it overwrites them in place, and copies both every minibatch step (1.2
  MB per step at workload P's 16-variant chunk).
  """
  if jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": 1,
          "xla_cpu_copy_insertion_use_region_analysis": True}


@functools.lru_cache(maxsize=32)
def _flat_model(model_cfg, model: Model | None, num_outputs: int,
                feature_shape: tuple[int, ...]) -> Flat:
  """The model the engine trains: the user's or the built-in one, its parameters one vector."""
  if model is None:
    model = build_model(model_cfg, num_outputs, feature_shape)
  return flattened(model)


def _group_model(group: Group) -> Flat:
  # The model of the compile key (`_compiled`'s): one initializer for every dropout default.
  return _flat_model(_without_defaults(group.experiment).model, group.model,
                     _num_outputs(group.dataset), group.dataset.feature_shape)


@functools.lru_cache(maxsize=32)
def _compiled(experiment: Experiment, model: Model | None, task: str, num_outputs: int,
              feature_shape: tuple[int, ...], n_max: int, loss: Loss | None = None,
              metrics: Metrics = (), namespaces: tuple[tuple[str, str], ...] = ()):
  """The trainer of a static signature and its jitted functions, built once per process.

  Keyed by the static signature only, so a new learning rate (or seed, or grid of the same
  size) reuses the compiled program instead of tracing again; a user loss or metric is part
  of it (by identity), so another one never reuses a program traced with the first.
  `namespaces` is `(name, namespace)` of each number the group's points trace.
  """
  flat = _flat_model(experiment.model, model, num_outputs, feature_shape)
  trainer = make_trainer(experiment, flat, task=task, n_max=n_max, loss=loss, metrics=metrics,
                         namespaces=dict(namespaces), feature_shape=feature_shape)
  init = jax.jit(trainer.init, compiler_options=compiler_options())
  run = jax.jit(trainer.run, static_argnames="num_epochs", donate_argnums=0,
                compiler_options=compiler_options())
  return trainer, init, run


@functools.lru_cache(maxsize=32)
def _compiled_flat(*key):
  """The trainer's run over a compacted population: W variants, each its own stream of one
  point (its own seed, fold and hyperparameters), so any set of survivors is rectangular.

  Its state has `epoch` [W] and variant leaves [W, 1, 1, ...]; hyperparameters, seeds and
  folds are [W, 1]; its history leaves [E, W, 1, 1]. A variant's minibatches depend only on
  its seed and fold, so it trains as it would in its chunk, to float32 rounding.
  """
  trainer = _compiled(*key)[0]

  def run_flat(state, hparams_W, seeds_W, folds_W, data, budget, num_epochs):
    one = lambda st, hp, s, f: trainer.run(st, hp, s, f, data, budget, num_epochs)
    return jax.vmap(one, out_axes=(0, 1))(state, hparams_W, seeds_W, folds_W)

  return jax.jit(run_flat, static_argnames="num_epochs", donate_argnums=0,
                 compiler_options=compiler_options())


optim_lib.on_reregister(_compiled.cache_clear)
optim_lib.on_reregister(_compiled_flat.cache_clear)


@functools.lru_cache(maxsize=32)
def _compiled_init(flat: Flat):
  """`seed -> params` of a model, jitted once per process for every group with that model."""
  return jax.jit(functools.partial(initial_params, flat.model), compiler_options=compiler_options())


def _init_fn(group: Group):
  return _compiled_init(_group_model(group))


def stream_params(group: Group, seeds: np.ndarray) -> object:
  """Initial params of streams with these seeds, leaves [S, ...] on the host."""
  init = _init_fn(group)
  by_seed = {int(s): jax.device_get(init(np.int32(s))) for s in dict.fromkeys(seeds.tolist())}
  return jax.tree_util.tree_map(lambda *a: np.stack(a), *[by_seed[int(s)] for s in seeds])


def _init_shape(group: Group, trainer, points: dict[str, np.ndarray], num_streams: int):
  """The shapes of `trainer.init`'s state for `num_streams` streams and these points."""
  params = jax.eval_shape(_init_fn(group), np.int32(0))
  params_S = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct((num_streams,) + a.shape, a.dtype), params)
  return jax.eval_shape(trainer.init, params_S, points, np.zeros(num_streams, np.int32),
                        _data_arrays(group))


def _compile_key(group: Group) -> tuple:
  """The static signature of a group: what `_compiled` is keyed by."""
  # The data config shapes nothing beyond what the key already holds (task, sizes), so two
  # data seeds or subsamples of equal size share one program; likewise the config fields that
  # only give defaults of dynamic numbers (decay_rate, dropout, ...): the points carry them,
  # and which numbers are traced (an off axis is not) is the key's last part. The budget
  # (epochs, patience, step cap) is traced too (`train.Budget`), except the epochs of a
  # schedule whose shape depends on the run's length.
  exp = group.experiment
  return (_without_defaults(exp), group.model, group.dataset.task, _num_outputs(group.dataset),
          group.dataset.feature_shape, group.splits.train_idx.shape[1], group.loss, group.metrics,
          tuple((name, axis.namespace) for name, axis in _group_axes(group).items()
                if name in group.points))


def _without_defaults(exp: Experiment) -> Experiment:
  """The experiment with every config field that is only a dynamic number's default, or the
  traced budget, reset."""
  train = TrainConfig()
  changes = {"train__patience": train.patience, "train__max_steps": train.max_steps}
  if not SCHEDULES[exp.optim.schedule].horizon:
    changes["train__epochs"] = train.epochs
  for axis in hparams_lib.catalog().values():
    if axis.spec.field:
      part, _, field = axis.spec.field.partition(".")
      default = getattr(type(getattr(exp, part))(), field)
      changes[f"{part}__{field}"] = default
  return dataclasses.replace(exp.replace(**changes), data=DataConfig())


def _group_axes(group: Group) -> dict[str, hparams_lib.Axis]:
  return hparams_lib.axes(group.experiment, task=group.dataset.task,
                          feature_shape=group.dataset.feature_shape, model=group.model)


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How the host runs a sweep; none of it changes a result.

  Attributes:
    max_variants_per_chunk: most variants (streams x points) in one compiled call; more are run
      as successive, evenly sized chunks. None derives it from the memory the variants need
      and the device's memory, and on a CPU from its cache (`default_max_variants`).
    checkpoint_dir: folder of the sweep's checkpoints; None disables checkpointing. `run_sweep`
      and `run_planned` check it (an existing file, or a folder that cannot be written, is
      refused before compiling) and hold it (`outputs.FolderLock`) for the run, unless this
      process holds it already (`cli.check_checkpoints`).
    checkpoint_every: save the sweep state at the first chunk boundary after every this many
      epochs (0: only when a chunk of variants finishes).
    resume: continue from the checkpoints in `checkpoint_dir` if there are any.
    log_every_s: seconds between progress log lines.
    progress_bar: draw a progress bar on stderr; None draws one when stderr is a terminal.
    compact: between compiled calls, continue only the variants still training, gathered
      into a narrower population (widths from `compaction_ladder`); changes no result beyond
      float32 rounding.
    prune: None, or "halving": successive halving of the grid points (`prune_rungs`,
      `prune_eta`); this one does change results: pruned variants stop early, flagged `pruned`.
    prune_rungs: epochs at which halving decides (each must be below the configured epochs to
      take effect).
    prune_eta: at each rung, about 1/eta of the grid points still in play continue (the
      others stop unless not significantly worse than the best, `lr_jax.stats.not_worse`).
    chunk_epochs: epochs per compiled call of the host loop (progress, early exit, compaction
      and checkpoints between calls); 0 runs all epochs in one call. A call's length, the
      smaller of this and the epochs, is part of the program (the epochs are not,
      `train.Budget`): groups of fewer epochs than this, or with 0, compile per epoch count.
  """

  max_variants_per_chunk: int | None = None
  checkpoint_dir: str | None = None
  checkpoint_every: int = 0
  resume: bool = False
  log_every_s: float = 10.0
  progress_bar: bool | None = None
  compact: bool = True
  prune: str | None = None
  prune_rungs: tuple[int, ...] = (5, 15, 45)
  prune_eta: float = 3.0
  chunk_epochs: int = 10

  def prune_config(self) -> dict | None:
    """The pruning rule and its settings (they change results), or None without pruning."""
    if not self.prune:
      return None
    return {"rule": self.prune, "rungs": list(self.prune_rungs), "eta": self.prune_eta}

  def __post_init__(self):
    check_fields(self)
    if self.max_variants_per_chunk is not None:
      check_positive("max_variants_per_chunk", self.max_variants_per_chunk, integer=True)
    check_positive("checkpoint_every", self.checkpoint_every, integer=True, allow_zero=True)
    check_positive("log_every_s", self.log_every_s, allow_zero=True)
    check_positive("chunk_epochs", self.chunk_epochs, integer=True, allow_zero=True)
    if self.resume and not self.checkpoint_dir:
      raise ConfigError("resume needs a checkpoint folder; give --checkpoint_dir (or --out)")
    if self.prune not in PRUNE_RULES:
      raise ConfigError(f"prune {self.prune!r} is not a pruning rule; valid choices: "
                        f"{', '.join(r for r in PRUNE_RULES if r)}, or None (unset) for none")
    if not self.prune_rungs:
      raise ConfigError("prune_rungs is empty; give at least one epoch, e.g. 5,15,45")
    for r in self.prune_rungs:
      check_positive("prune rung", r, integer=True)
    if list(self.prune_rungs) != sorted(set(self.prune_rungs)):
      raise ConfigError(f"prune_rungs {self.prune_rungs} must be increasing and distinct")
    if not (math.isfinite(self.prune_eta) and self.prune_eta > 1):
      raise ConfigError(f"prune_eta must be a number > 1, got {self.prune_eta!r}")


PRUNE_RULES = (None, "halving")


def _mesh() -> Mesh | None:
  """A 1-D mesh over every device of every process, or None on a single device."""
  devices = jax.devices()
  return Mesh(np.array(devices), ("points",)) if len(devices) > 1 else None


def _put(x: np.ndarray, mesh: Mesh | None, spec: P):
  """Places a host array (the same on every process) on the mesh with `spec`."""
  if mesh is None:
    return jax.device_put(x)
  sharding = NamedSharding(mesh, spec)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _to_host(tree):
  """Fetches a (possibly multi-process sharded) pytree to numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _device_memory_bytes() -> int:
  """One device's memory: an accelerator's limit, else (a CPU) the machine's."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return _host_memory_bytes() or 2**63


def _host_memory_bytes() -> int | None:
  """This machine's memory: the physical memory, or a smaller cgroup (v2) limit of this
  process's container; None where neither can be read."""
  sizes = []
  try:
    sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (OSError, ValueError, AttributeError):
    pass
  try:
    with open("/sys/fs/cgroup/memory.max") as f:
      text = f.read().strip()
    if text.isdigit():
      sizes.append(int(text))
  except OSError:
    pass
  return min(sizes) if sizes else None


def _cache_bytes() -> int:
  """The CPU's largest cache (Linux sysfs), or 32 MiB where it cannot be read."""
  base = "/sys/devices/system/cpu/cpu0/cache"
  units = {"K": 2**10, "M": 2**20, "G": 2**30}
  sizes = []
  try:
    for index in os.listdir(base):
      with open(os.path.join(base, index, "size")) as f:
        text = f.read().strip()
      sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
  except (OSError, ValueError):
    pass
  return max(sizes, default=32 * 2**20)


def default_max_variants(group: Group, trainer, fraction: float = 0.5) -> int:
  """Variants per chunk: what fits in `fraction` of the devices' memory, and on a CPU the cache.

  Per variant: parameters, gradients, best parameters and optimizer state (counted from
  their shapes), plus the activations of a validation pass (`v_max` rows through every layer).
  Accelerators hold a chunk's variants sharded, each its own memory; CPU devices share the
  host's. On a CPU a chunk's training state is also held to an eighth of the largest cache:
  every minibatch step reads and writes all of it, and a step whose state stays in cache runs
  faster. Workload P on a 2-core EPYC with 32 MiB of L3 (`benchmarks/throughput.py`), 256
  learning rates, seconds per variant by variants per chunk: 8: 0.060, 16: 0.050-0.052,
  24: 0.054, 32: 0.057, 64: 0.063, 128: 0.076, all 256 at once: 0.098; this rule allows 21.
  """
  splits = group.splits
  state = _init_shape(group, trainer, {k: v[:1].astype(np.float32)
                                       for k, v in group.points.items()}, 1)
  state_bytes = sum(leaf.size * leaf.dtype.itemsize
                    for leaf in jax.tree_util.tree_leaves(state.variants))
  param_bytes = sum(leaf.size * leaf.dtype.itemsize
                    for leaf in jax.tree_util.tree_leaves(state.variants.params))
  activations = _activation_bytes(group.experiment, group.dataset, splits)
  per_variant = state_bytes + param_bytes + activations
  if jax.default_backend() == "cpu":
    by_memory = fraction * _device_memory_bytes() // per_variant
    by_cache = _cache_bytes() // 8 // (state_bytes + param_bytes)
    return max(1, int(min(by_memory, by_cache)))
  return max(1, int(fraction * _device_memory_bytes() // per_variant) * jax.device_count())


def _even_chunk(total: int, most: int) -> int:
  """The chunk size that splits `total` into the fewest chunks of at most `most`, evenly."""
  return -(-total // -(-total // most))


def chunk_layout(num_streams: int, num_points: int, budget: int, ndev: int = 1
                 ) -> tuple[int, int]:
  """A chunk's streams x points under a budget of variants; points a multiple of `ndev` (the
  axis sharded over devices).

  Streams first while all of them fit one chunk: a chunk then holds adjacent learning rates,
  which tend to stop together, so it exits early (the default sweep, 3 seeds x 16 points under
  21: chunks of 3 x 6). When they do not fit, streams first would leave one point per chunk, and
  a stream's points share its minibatches (one wide matmul per layer instead of a batch of
  narrow ones), so a chunk is one stream's points. The 1600-variant headline sweep (25 streams x
  64 points under 21, compacted; workload P's model on digits, 2-core CPU): chunks of 1 x 16
  took 233 s where 13 x 1 took 325 s.
  """
  if num_streams <= budget:
    s_c = num_streams
    h_c = _even_chunk(num_points, max(1, budget // s_c))
  else:
    h_c = _even_chunk(num_points, budget)
    s_c = _even_chunk(num_streams, max(1, budget // h_c))
  return s_c, -(-h_c // ndev) * ndev


def _data_arrays(group: Group) -> DataArrays:
  return DataArrays.of(group.dataset, group.splits)


def _pad_to(a: np.ndarray, n: int) -> np.ndarray:
  """Pads axis 0 to length n by repeating the last entry: valid variants, dropped later."""
  return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])


class _Progress:
  """Progress of a group on the log (every `log_every_s`) and, on a terminal, as a bar."""

  def __init__(self, name: str, total_epochs: int, options: RunOptions):
    self.name, self.total, self.options = name, total_epochs, options
    self.bar = options.progress_bar if options.progress_bar is not None else sys.stderr.isatty()
    self.t0 = self.last = time.perf_counter()

  def update(self, done_epochs: int, active: int, variants: int, final: bool) -> None:
    now = time.perf_counter()
    rate = done_epochs / max(now - self.t0, 1e-9)
    eta = (self.total - done_epochs) / rate if rate > 0 else math.inf
    if self.bar:
      width = 30
      filled = int(width * done_epochs / max(self.total, 1))
      sys.stderr.write(f"\r{self.name} [{'#' * filled}{'.' * (width - filled)}] "
                       f"{done_epochs}/{self.total} epochs, {active} active, ETA {eta:.0f}s ")
      if final:
        sys.stderr.write("\n")
      sys.stderr.flush()
    if final or now - self.last >= self.options.log_every_s:
      logging.info("%s: epoch %d/%d, %d/%d variants active, %.1f epochs/s (x%d variants), ETA %.0fs",
                   self.name, done_epochs, self.total, active, variants, rate, variants,
                   0.0 if final else eta)
      self.last = now


class GroupOutput(NamedTuple):
  """What `run_group` returns: one compile group's final state and history, on the host.

  Attributes:
    variants: the final `VariantState`, numpy leaves [S, H, ...]; `params` are the final
      parameters (the best epoch's with `restore_best`), `best_params` the best epoch's.
    params: the final parameters, leaves [S*H, ...], stream-major (row order).
    history: metric name -> [S, H, E], NaN where a variant was not training.
    pruned: [S, H] bool, stopped by successive halving (`RunOptions.prune`).
    steps_per_epoch: optimizer updates per epoch.
    compile_s: seconds the group spent tracing, lowering and compiling its programs (or
      loading them from the persistent compilation cache), from JAX's compile events in this
      thread, apart from running them; 0.0 when every program came from this process's cache.
    run_s: seconds of the whole group, compile_s included.
    epochs_executed: most epochs any chunk ran.
    variant_epochs_trained: epochs the variants trained, summed over the variants.
    variant_epochs_executed: epochs the compiled calls ran, summed over their lanes (padding,
      and stopped variants still in a population, included): what the compute paid for.
    programs_compiled: XLA programs the group compiled or loaded from the persistent cache;
      0 when it reused this process's (nothing compiled).
    programs_from_disk: of those, the ones loaded from the persistent compilation cache.
  """

  variants: object
  params: object
  history: dict[str, np.ndarray]
  pruned: np.ndarray
  steps_per_epoch: int
  compile_s: float | None
  run_s: float
  epochs_executed: int
  variant_epochs_trained: int
  variant_epochs_executed: int
  programs_compiled: int = 0
  programs_from_disk: int = 0


# JAX's monitoring events of building a program: Python tracing to a jaxpr, lowering it to
# StableHLO, and XLA's compile (or loading it from the persistent cache).
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_clocks = threading.local()  # `.running`: this thread's clocks, innermost last
_listening = []  # [True] once the listeners are registered (once per process)
_listening_lock = threading.Lock()


def _on_time_span(event: str, start: float, end: float, **kwargs) -> None:
  del kwargs
  if event in (_TRACE_EVENT, _LOWER_EVENT, _COMPILE_EVENT):
    for clock in getattr(_clocks, "running", ()):
      clock.spans.append((start, end))
      clock.programs += event == _COMPILE_EVENT


def _on_event(event: str, **kwargs) -> None:
  del kwargs
  if event == _CACHE_HIT_EVENT:
    for clock in getattr(_clocks, "running", ()):
      clock.cache_hits += 1


class _CompileClock:
  """Times what this thread spends building programs while it is entered, apart from running
  them: the union of JAX's trace, lower and compile spans (a nested jit's tracing lies within
  its caller's, so spans are merged, not summed).

  Attributes:
    seconds: that time.
    programs: programs compiled (or loaded from the persistent cache); 0: every program came
      from this process's own cache.
    cache_hits: of those, the ones loaded from the persistent cache.
  """

  def __init__(self):
    self.spans: list[tuple[float, float]] = []
    self.programs = 0
    self.cache_hits = 0

  @property
  def seconds(self) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(self.spans):
      if b > end:
        total += b - max(a, end)
        end = b
    return total

  def __enter__(self) -> "_CompileClock":
    with _listening_lock:
      if not _listening:
        jax.monitoring.register_event_time_span_listener(_on_time_span)
        jax.monitoring.register_event_listener(_on_event)
        _listening.append(True)
    _clocks.running = getattr(_clocks, "running", ()) + (self,)
    return self

  def __exit__(self, *exc) -> None:
    _clocks.running = tuple(c for c in _clocks.running if c is not self)


@dataclasses.dataclass(frozen=True)
class _GroupPlan:
  """What `run_group` decides before training: programs, chunks, padding, call lengths."""

  trainer: object
  init: object
  run: object
  run_flat: object
  mesh: Mesh | None
  ndev: int
  path: str | None               # the group's checkpoint file, or None
  config: dict | None            # what that checkpoint must match
  saved: dict                    # the checkpoint's arrays; empty when starting afresh
  like: object                   # the shapes of a chunk's SweepState
  s_c: int                       # streams per chunk
  h_c: int                       # points per chunk, a multiple of ndev
  seeds: np.ndarray              # [S_pad] int32
  folds: np.ndarray              # [S_pad] int32
  points: dict[str, np.ndarray]  # name -> [H_pad] float32
  blocks: list[tuple[int, int]]  # each chunk's first stream and first point
  budget: Budget                 # the group's epochs, patience and step cap (traced)
  num_epochs: int                # the configured epochs
  call_epochs: int               # epochs per compiled call
  rungs: tuple[int, ...]         # epochs at which halving decides; () without pruning


@dataclasses.dataclass
class _Chunk:
  """One chunk between compiled calls, on the host: what the next call continues from and
  what a checkpoint holds. Every variant's entry is its latest state.
  """

  state: object                   # SweepState (numpy), variants [s_c, h_c, ...]
  history: dict[str, np.ndarray]  # name -> [epochs so far, s_c, h_c]
  pruned: np.ndarray              # [s_c, h_c] bool
  real: np.ndarray                # [s_c, h_c] bool: not padding
  executed: int = 0               # variant-epochs the compiled calls ran for this chunk

  @property
  def epoch(self) -> int:
    return int(self.state.epoch)


def compaction_ladder(full: int, ndev: int) -> list[int]:
  """Narrower widths a chunk of `full` variants may continue at: ndev * 2^k, at most full / 2.

  A small fixed set, so a sweep compiles a handful of programs (each reused, also from the
  persistent compilation cache), each a multiple of the device count, which shards it. At most
  half the chunk: a compacted variant trains on its own minibatches, not its stream's shared
  ones, and costs more per epoch (digits, MLP(128): ~1.2x, 48 variants either way), so a
  narrower program pays only once it is much narrower.
  """
  widths, w = [], ndev
  while 2 * w <= full:
    widths.append(w)
    w *= 2
  return widths


# ----- The survivors: the one place that decides what a compiled call continues. The loop and
# ----- a resumed run both call it on the chunk's host state, so they continue alike, bit for bit.


def _live(chunk: _Chunk) -> np.ndarray:
  """[s_c, h_c] bool: the variants still training (not stopped, diverged, pruned or padding)."""
  v = chunk.state.variants
  return chunk.real & ~v.stopped & ~v.diverged & ~chunk.pruned


def _halving(chunk: _Chunk, eta: float) -> np.ndarray:
  """Successive halving at a rung: the chunk's `pruned` mask after this rung.

  The grid points still in play (none of their variants pruned) are ranked by their mean
  best monitored value over the chunk's streams (a point with a diverged run ranks last); the
  best ceil(n / eta) continue. Another point stops (its live variants flagged `pruned`)
  unless it is not significantly worse than the best by `stats.not_worse`, the one-sided
  paired t-test over streams that also gives a sweep's not-worse set.
  """
  v = chunk.state.variants
  real_points = chunk.real.any(axis=0)
  in_play = np.flatnonzero(real_points & ~chunk.pruned.any(axis=0))
  if len(in_play) <= 1:
    return chunk.pruned
  streams = chunk.real[:, in_play[0]]
  # best_score is lower-is-better (-accuracy or loss); inf until a variant has a best epoch.
  score_SxP = np.where(v.diverged, np.inf, v.best_score)[streams][:, in_play].astype(np.float64)
  mean_P = score_SxP.mean(axis=0)
  order = np.argsort(mean_P, kind="stable")
  keep = np.zeros(len(in_play), bool)
  keep[order[:max(1, math.ceil(len(in_play) / eta))]] = True
  finite = np.flatnonzero(np.isfinite(score_SxP).all(axis=0))
  if order[0] in finite:  # Not significantly worse than the best: kept, whatever its rank.
    protected = stats.not_worse(score_SxP[:, finite], int(np.flatnonzero(finite == order[0])[0]),
                                higher_is_better=False)
    keep[finite[protected]] = True
  cut = np.zeros(chunk.pruned.shape[1], bool)
  cut[in_play[~keep]] = True
  return chunk.pruned | (_live(chunk) & cut[None, :])


def _call(plan: _GroupPlan, chunk: _Chunk, b: int, data) -> None:
  """Runs one compiled call of `plan.call_epochs` epochs on a whole chunk, in place.

  Only the variants that went in live are written back; the others keep their state and NaN
  history.
  """
  mesh, s_c, h_c = plan.mesh, plan.s_c, plan.h_c
  si, hi = plan.blocks[b]
  live_before = _live(chunk)
  num_epochs = plan.call_epochs
  v = chunk.state.variants
  # A pruned variant is frozen as a stopped one is; its own `stopped` stays False.
  device_state = chunk.state._replace(variants=v._replace(stopped=v.stopped | chunk.pruned))
  state = jax.tree_util.tree_map(
      lambda a: _put(a, mesh, P(None, "points") if a.ndim >= 2 else P()), device_state)
  out_state, hist = plan.run(
      state, {k: _put(a[hi:hi + h_c], mesh, P("points")) for k, a in plan.points.items()},
      _put(plan.seeds[si:si + s_c], mesh, P()), _put(plan.folds[si:si + s_c], mesh, P()), data,
      plan.budget, num_epochs=num_epochs)
  out_state, hist = _to_host((out_state, hist))
  new_epoch = int(out_state.epoch)
  mask = lambda a: live_before.reshape(live_before.shape + (1,) * (a.ndim - 2))
  variants = jax.tree_util.tree_map(lambda new, old: np.where(mask(new), new, old),
                                    out_state.variants, chunk.state.variants)
  chunk.executed += s_c * h_c * (new_epoch - chunk.epoch)
  chunk.state = SweepState(epoch=np.asarray(new_epoch, np.int32), variants=variants)
  chunk.history = {k: np.concatenate([chunk.history[k], getattr(hist, k)])
                   for k in plan.trainer.history_fields}


def _call_flat(plan: _GroupPlan, members: list[tuple[int, _Chunk]], width: int, data) -> None:
  """Runs one compiled call on the live variants of `members` (chunks at one epoch), gathered
  into one population of `width` lanes, each its own one-point stream; scatters them back.

  Members from several chunks share the call: once few variants survive, the chunks continue
  as one narrow program rather than one call each (lockstep).
  """
  mesh, s_c, h_c = plan.mesh, plan.s_c, plan.h_c
  num_epochs = plan.call_epochs
  flat = lambda a: a.reshape((s_c * h_c,) + a.shape[2:])
  parts = [(b, c, np.flatnonzero(_live(c).reshape(-1))) for b, c in members]
  owner = np.concatenate([np.full(len(idx), j) for j, (_, _, idx) in enumerate(parts)])
  lane_idx = np.concatenate([idx for _, _, idx in parts])
  n = len(lane_idx)
  pad = lambda a: np.concatenate([a, np.repeat(a[-1:], width - n, axis=0)])  # Copies, dropped.
  gathered = jax.tree_util.tree_map(
      lambda *leaves: pad(np.concatenate([flat(leaf)[idx] for leaf, (_, _, idx) in
                                          zip(leaves, parts)])).reshape(
                                              (width, 1, 1) + leaves[0].shape[2:]),
      *[c.state.variants for _, c, _ in parts])
  first_stream = np.array([plan.blocks[b][0] for b, _, _ in parts])[owner] + lane_idx // h_c
  first_point = np.array([plan.blocks[b][1] for b, _, _ in parts])[owner] + lane_idx % h_c
  put = lambda a: _put(np.ascontiguousarray(a), mesh, P("points"))
  epochs = np.array([c.epoch for _, c, _ in parts], np.int32)[owner]
  state = SweepState(epoch=put(pad(epochs)), variants=jax.tree_util.tree_map(put, gathered))
  out_state, hist = plan.run_flat(
      state, {k: put(pad(a[first_point]).reshape(width, 1)) for k, a in plan.points.items()},
      put(pad(plan.seeds[first_stream]).reshape(width, 1)),
      put(pad(plan.folds[first_stream]).reshape(width, 1)), data, plan.budget,
      num_epochs=num_epochs)
  out_state, hist = _to_host((out_state, hist))
  for j, (b, chunk, idx) in enumerate(parts):
    lanes = np.flatnonzero(owner == j)

    def scatter(new, old):
      out = flat(old).copy()
      out[idx] = new[lanes, 0, 0]
      return out.reshape(old.shape)

    variants = jax.tree_util.tree_map(scatter, out_state.variants, chunk.state.variants)
    hist_ExSxH = {}
    for k in plan.trainer.history_fields:
      h = np.full((num_epochs, s_c * h_c), np.nan, np.float32)
      h[:, idx] = getattr(hist, k)[:, lanes, 0, 0]
      hist_ExSxH[k] = h.reshape(num_epochs, s_c, h_c)
    # The lanes of a vmapped population run every epoch of the call (its skip is per lane);
    # the padding lanes are the first member's bill.
    chunk.executed += (len(lanes) + (width - n if j == 0 else 0)) * num_epochs
    chunk.state = SweepState(epoch=np.asarray(out_state.epoch[lanes].max(), np.int32),
                             variants=variants)
    chunk.history = {k: np.concatenate([chunk.history[k], hist_ExSxH[k]])
                     for k in plan.trainer.history_fields}


def _round(plan: _GroupPlan, chunks: dict[int, _Chunk], data, compact: bool) -> None:
  """One compiled call's worth of epochs for every unfinished chunk, in place.

  The populations are decided from the host state alone (whole chunks, each compacted, or all
  survivors together), so a resumed run, which has nothing else, makes exactly the same calls.
  """
  members = [(b, c) for b, c in chunks.items() if not _done(plan, c)]
  if compact and len(members) > 1:
    # Survivors of several chunks: up to a whole chunk's width, which replaces two calls or more.
    n = sum(int(_live(c).sum()) for _, c in members)
    fits = [w for w in compaction_ladder(2 * plan.s_c * plan.h_c, plan.ndev) if w >= n]
    if fits:
      _call_flat(plan, members, fits[0], data)
      return
  for b, c in members:
    n = int(_live(c).sum())
    fits = [w for w in compaction_ladder(plan.s_c * plan.h_c, plan.ndev) if w >= n] if compact else []
    if fits:
      _call_flat(plan, [(b, c)], fits[0], data)
    else:
      _call(plan, c, b, data)


def _done(plan: _GroupPlan, chunk: _Chunk) -> bool:
  return chunk.epoch >= plan.num_epochs or not _live(chunk).any()


def _tile(plan: _GroupPlan, chunks: dict[int, _Chunk], get) -> np.ndarray:
  """[S_pad, H_pad]: a per-variant array of every chunk, placed as the chunks tile the grid."""
  first = get(next(iter(chunks.values())))
  out = np.zeros((len(plan.seeds), len(next(iter(plan.points.values())))), first.dtype)
  for b, c in chunks.items():
    si, hi = plan.blocks[b]
    out[si:si + plan.s_c, hi:hi + plan.h_c] = get(c)
  return out


def _prune_all(plan: _GroupPlan, chunks: dict[int, _Chunk], eta: float) -> None:
  """Successive halving over the whole group at a rung: every grid point ranked over every
  stream, whichever chunk holds it; the chunks' `pruned` masks updated in place."""
  tile = functools.partial(_tile, plan, chunks)
  view = types.SimpleNamespace(
      state=types.SimpleNamespace(variants=types.SimpleNamespace(
          best_score=tile(lambda c: c.state.variants.best_score),
          diverged=tile(lambda c: c.state.variants.diverged),
          stopped=tile(lambda c: c.state.variants.stopped))),
      real=tile(lambda c: c.real), pruned=tile(lambda c: c.pruned))
  pruned = _halving(view, eta)
  for b, c in chunks.items():
    si, hi = plan.blocks[b]
    c.pruned = pruned[si:si + plan.s_c, hi:hi + plan.h_c]


def _plan_group(group: Group, index: int, options: RunOptions) -> _GroupPlan:
  """Programs, chunks, padding and call lengths of a group; reads its checkpoint if resuming."""
  key = _compile_key(group)
  trainer, init, run = _compiled(*key)
  num_streams, num_points = len(group.seeds), len(group.points["learning_rate"])
  mesh = _mesh()
  ndev = mesh.size if mesh is not None else 1
  path = (os.path.join(options.checkpoint_dir, f"group{index}.npz")
          if options.checkpoint_dir else None)
  config = group_config(group) if path else None
  if config is not None and options.prune:  # Pruning changes results: a resume must match it.
    config["prune"] = {"rule": options.prune, "rungs": list(options.prune_rungs),
                       "eta": options.prune_eta}
  saved = (checkpoint.load(path, config) if (path and options.resume) else None) or {}

  budget = options.max_variants_per_chunk or default_max_variants(group, trainer)
  s_c, h_c = chunk_layout(num_streams, num_points, budget, ndev)
  if "layout" in saved:  # The checkpoint's state is in its chunks: keep them.
    planned = (s_c, h_c)
    s_c, h_c = (int(n) for n in saved["layout"])
    if h_c % ndev:
      raise ConfigError(f"checkpoint {path} holds chunks of {h_c} point{'s' * (h_c != 1)}, "
                        f"which {ndev} devices cannot share evenly; resume on a device count "
                        f"that divides {h_c}, or delete it to start afresh")
    if (s_c, h_c) != planned:
      flag = options.max_variants_per_chunk
      logging.info("group %d: resuming in the checkpoint's chunks of %d streams x %d points, not "
                   "the %d x %d of %s", index, s_c, h_c, *planned,
                   f"max_variants_per_chunk={flag}" if flag else "the default chunk budget")
  s_pad, h_pad = -(-num_streams // s_c) * s_c, -(-num_points // h_c) * h_c
  points = {k: _pad_to(v, h_pad).astype(np.float32) for k, v in group.points.items()}
  like = _init_shape(group, trainer, {k: v[:h_c] for k, v in points.items()}, s_c)
  num_epochs = group.experiment.train.epochs
  # The call's length is static: groups of at least `chunk_epochs` epochs share it, whatever
  # their budget. Not longer than the run: a compacted call (lanes vmapped, so its skipped
  # epochs are masked, not skipped) would compute the excess.
  call_epochs = min(options.chunk_epochs or num_epochs, num_epochs)
  rungs = ()
  if options.prune:
    rungs = tuple(r for r in options.prune_rungs if r < num_epochs)
    # Calls end at every rung; one call length keeps it one program per width.
    call_epochs = math.gcd(call_epochs, *rungs)
  return _GroupPlan(
      trainer=trainer, init=init, run=run, run_flat=_compiled_flat(*key), mesh=mesh, ndev=ndev,
      path=path, config=config, saved=saved, like=like, s_c=s_c, h_c=h_c,
      seeds=_pad_to(group.seeds, s_pad), folds=_pad_to(group.folds, s_pad), points=points,
      blocks=[(si, hi) for si in range(0, s_pad, s_c) for hi in range(0, h_pad, h_c)],
      budget=Budget(*(_put(a, mesh, P()) for a in Budget.of(group.experiment.train))),
      num_epochs=num_epochs,
      call_epochs=call_epochs, rungs=rungs)


def _real(group: Group, plan: _GroupPlan, b: int) -> np.ndarray:
  si, hi = plan.blocks[b]
  real = np.zeros((plan.s_c, plan.h_c), bool)
  real[:len(group.seeds) - si, :len(group.points["learning_rate"]) - hi] = True
  return real


def _save_chunks(plan: _GroupPlan, chunks: dict[int, _Chunk]) -> None:
  """Checkpoints every chunk (`done<b>` once finished, `live<b>` before) as one file."""
  if plan.path is None or jax.process_index() != 0:
    return
  arrays = {"layout": np.array([plan.s_c, plan.h_c])}
  for b, c in chunks.items():
    name = f"{'done' if _done(plan, c) else 'live'}{b}"
    arrays.update(checkpoint.flatten(f"{name}/state", c.state))
    arrays.update({f"{name}/hist/{k}": v for k, v in c.history.items()})
    arrays[f"{name}/pruned"] = c.pruned
    arrays[f"{name}/executed"] = np.array(c.executed)
  checkpoint.save(plan.path, arrays, plan.config)


def _load_chunk(plan: _GroupPlan, name: str, real: np.ndarray) -> _Chunk | None:
  saved = plan.saved
  if f"{name}/state/0" not in saved:
    return None
  return _Chunk(state=checkpoint.unflatten(f"{name}/state", saved, plan.like),
                history={k: saved[f"{name}/hist/{k}"] for k in plan.trainer.history_fields},
                # A checkpoint from before pruning and compaction existed has neither.
                pruned=saved.get(f"{name}/pruned", np.zeros(real.shape, bool)), real=real,
                executed=int(saved.get(f"{name}/executed", 0)))


def _run_chunks(group: Group, plan: _GroupPlan, index: int, options: RunOptions
                ) -> dict[int, _Chunk]:
  """The loop: every chunk in compiled calls, in lockstep, compacting and pruning between them.

  All chunks advance together, one call's epochs per round, so halving ranks every grid point
  of the group at a rung, and once few variants survive they continue as one population
  whichever chunks they came from.

  Returns:
    The chunks, history NaN-padded to the configured epochs.
  """
  exp, blocks = group.experiment, plan.blocks
  num_epochs = plan.num_epochs
  reals = [_real(group, plan, b) for b in range(len(blocks))]
  chunks = {b: c for b in range(len(blocks))
            if (c := _load_chunk(plan, f"done{b}", reals[b]) or
                _load_chunk(plan, f"live{b}", reals[b])) is not None}
  if plan.saved:
    logging.info("resuming group %d from %s: %d of %d chunks done, at epoch %d/%d", index,
                 plan.path, sum(_done(plan, c) for c in chunks.values()), len(blocks),
                 max((c.epoch for c in chunks.values() if not _done(plan, c)), default=num_epochs),
                 num_epochs)
  data = jax.tree_util.tree_map(lambda a: _put(a, plan.mesh, P()), _data_arrays(group))
  num_variants = len(group.seeds) * len(group.points["learning_rate"])
  progress = _Progress(f"group {index} ({exp.optim.name})", len(blocks) * num_epochs, options)
  checkpoint.fault_point("before_compile")
  first_call = True
  if len(chunks) < len(blocks):
    params_S = stream_params(group, plan.seeds)  # Once, not once per chunk of points.
  for b, (si, hi) in enumerate(blocks):
    if b in chunks:
      continue
    params = jax.tree_util.tree_map(lambda a: _put(a[si:si + plan.s_c], plan.mesh, P()), params_S)
    state = plan.init(params, {k: _put(a[hi:hi + plan.h_c], plan.mesh, P("points"))
                               for k, a in plan.points.items()},
                      _put(plan.folds[si:si + plan.s_c], plan.mesh, P()), data)
    chunks[b] = _Chunk(state=_to_host(state), pruned=np.zeros((plan.s_c, plan.h_c), bool),
                       history={k: np.zeros((0, plan.s_c, plan.h_c), np.float32)
                                for k in plan.trainer.history_fields}, real=reals[b])
  last_saved = max((c.epoch for c in chunks.values() if not _done(plan, c)), default=0)
  while not all(_done(plan, c) for c in chunks.values()):
    finished_before = sum(_done(plan, c) for c in chunks.values())
    _round(plan, chunks, data, options.compact)
    epoch = max(c.epoch for c in chunks.values())
    if first_call:
      first_call = False
      checkpoint.fault_point("after_compile")
    if epoch in plan.rungs:
      _prune_all(plan, chunks, options.prune_eta)
    active = sum(int(_live(c).sum()) for c in chunks.values())
    done = [_done(plan, c) for c in chunks.values()]
    progress.update(sum(num_epochs if d else c.epoch for d, c in zip(done, chunks.values())),
                    active, num_variants, all(done))
    if all(done):
      break
    if options.checkpoint_every and epoch - last_saved >= options.checkpoint_every:
      _save_chunks(plan, chunks)
      last_saved = epoch
    elif sum(done) > finished_before and len(blocks) > 1:
      _save_chunks(plan, chunks)
  for c in chunks.values():
    # [E, s_c, h_c] with E the configured epochs: a chunk that stopped early is NaN-padded.
    c.history = {
        k: np.concatenate([v, np.full((max(0, num_epochs - len(v)),) + v.shape[1:], np.nan,
                                      np.float32)])[:num_epochs]
        for k, v in c.history.items()}
  if len(blocks) > 1 or options.checkpoint_every:
    _save_chunks(plan, chunks)
  return chunks


def _assemble(group: Group, plan: _GroupPlan, finished: dict[int, _Chunk],
              clock: _CompileClock, run_s: float) -> GroupOutput:
  """The chunks as one [S, H] population (padding dropped), its parameters and counts."""
  exp, blocks = group.experiment, plan.blocks
  num_streams, num_points = len(group.seeds), len(group.points["learning_rate"])
  s_pad, h_pad = len(plan.seeds), len(next(iter(plan.points.values())))

  def assemble(get):
    rows = []
    for si in range(0, s_pad, plan.s_c):
      rows.append(np.concatenate([get(finished[blocks.index((si, hi))])
                                  for hi in range(0, h_pad, plan.h_c)], axis=1))
    return np.concatenate(rows, axis=0)[:num_streams, :num_points]

  leaves, treedef = jax.tree_util.tree_flatten(plan.like.variants)
  variants = jax.tree_util.tree_unflatten(treedef, [
      assemble(lambda c, i=i: jax.tree_util.tree_leaves(c.state.variants)[i])
      for i in range(len(leaves))])
  unravel = _group_model(group).unravel
  variants = variants._replace(params=unravel(final_params(variants, exp.train.restore_best)),
                               best_params=unravel(variants.best_params))
  history = {k: assemble(lambda c, k=k: np.moveaxis(c.history[k], 0, -1)) for k in plan.trainer.history_fields}
  params = jax.tree_util.tree_map(
      lambda a: a.reshape((-1,) + a.shape[2:]), variants.params)  # [S*H, ...], stream-major
  return GroupOutput(
      variants=variants, params=params, history=history,
      pruned=assemble(lambda c: c.pruned), steps_per_epoch=plan.trainer.steps_per_epoch,
      compile_s=clock.seconds, run_s=run_s,
      epochs_executed=max(c.epoch for c in finished.values()),
      variant_epochs_trained=int(variants.epochs_run.sum()),
      variant_epochs_executed=int(sum(c.executed for c in finished.values())),
      programs_compiled=clock.programs, programs_from_disk=clock.cache_hits)


def run_group(group: Group, *, index: int = 0, options: RunOptions = RunOptions()) -> GroupOutput:
  """Trains every variant of one compile group; returns its final state and history on the host.

  Plan (`_plan_group`), loop (`_run_chunks`), assemble (`_assemble`). The variants are run in
  chunks of at most `options.max_variants_per_chunk` (each chunk the same shape, so one
  compiled program serves all), each chunk's epochs in compiled calls of `chunk_epochs`. Between
  calls the chunk's live variants are compacted into a narrower population (`options.compact`),
  halving may prune grid points (`options.prune`), and a checkpoint is written when asked. A
  resumed group keeps the chunks of its checkpoint, whatever `max_variants_per_chunk` says now:
  they change no result.

  Args:
    group: from `plan_sweep`.
    index: the group's position in the sweep (names its checkpoint file).
    options: chunking, compaction, pruning, checkpointing and progress; a checkpoint of another
      `group_config` is refused.

  Returns:
    A `GroupOutput`.
  """
  plan = _plan_group(group, index, options)
  t0 = time.perf_counter()
  with _CompileClock() as clock:
    finished = _run_chunks(group, plan, index, options)
  return _assemble(group, plan, finished, clock, time.perf_counter() - t0)


def clear_checkpoints(checkpoint_dir: str) -> None:
  """Deletes a finished sweep's checkpoint files (and the folder, if it is then empty)."""
  if not os.path.isdir(checkpoint_dir):
    return
  for name in os.listdir(checkpoint_dir):
    if (name.startswith("group") and name.endswith(".npz")) or name.startswith(".tmp-"):
      os.unlink(os.path.join(checkpoint_dir, name))
  if not os.listdir(checkpoint_dir):
    os.rmdir(checkpoint_dir)


def _axes(columns: dict[str, np.ndarray]) -> dict[str, list]:
  """Columns of a product table (`Group.points`, streams) as the axes that make it, in order.

  The full columns where they are not such a product (an axis with a repeated value), so the
  description stays exact.
  """
  axes = {k: list(dict.fromkeys(v.tolist())) for k, v in columns.items()}
  rows = list(zip(*(v.tolist() for v in columns.values())))
  return axes if list(itertools.product(*axes.values())) == rows else {
      k: v.tolist() for k, v in columns.items()}


def group_config(group: Group) -> dict:
  """What a group's checkpoint must match, as JSON: its configuration, grid and data.

  The experiment's fields (`data.data_seed`, `train.epochs`, ...), the grid's axes
  (`grid.learning_rates`, `grid.seeds`, other hyperparameters), `data.fingerprint` (a hash of
  the arrays and the split), `data.content` (hashes of the arrays and of each data file's
  bytes, `data.content_fingerprint`: a file changed under the same name is refused as such,
  even where this process holds its old content) and, for a user model, `model.user` (its
  parameter shapes). A checkpoint stores it, so a refused resume names the fields that differ.
  """
  config = json.loads(json.dumps(data_lib.config_dict(group.experiment), default=str))
  config["data"]["content"] = data_lib.content_fingerprint(group.dataset, group.experiment.data)
  s = group.splits
  config["data"]["fingerprint"] = checkpoint.fingerprint(  # 64 bits: short enough to print.
      group.dataset.x, group.dataset.y, s.train_idx, s.train_mask, s.val_idx, s.val_mask)[:16]
  if group.model is not None:  # Its repr holds addresses; its parameter shapes describe it.
    shapes = jax.eval_shape(group.model.init, jax.random.PRNGKey(0))
    config["model"]["user"] = json.loads(json.dumps(
        jax.tree_util.tree_map(lambda a: [list(a.shape), str(a.dtype)], shapes), default=str))
  if group.loss is not None or group.metrics:  # By name: a function's identity is per process.
    config["objective"] = {"loss": _describe(group.loss),
                           "metrics": {n: [_describe(m.fn), m.higher_is_better]
                                       for n, m in group.metrics}}
  grid = _axes(group.points)
  grid["learning_rates"] = grid.pop("learning_rate")
  config["grid"] = {**grid, **_axes({"seeds": group.seeds, "folds": group.folds})}
  return config


def _describe(f) -> str | None:
  """A function's module-qualified name (None for None), to describe it across processes."""
  if f is None:
    return None
  return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__name__)}"


def run_sweep(experiments: Experiment | Sequence[Experiment], grid: Grid, *,
              model: Model | None = None, target: float | None = None,
              options: RunOptions = RunOptions(),
              select: str = stats.DEFAULT_SELECT, loss: Loss | None = None,
              metrics: Mapping[str, Metric] | None = None,
              select_by: str | None = None) -> SweepResult:
  """Runs a learning-rate sweep: every experiment x every grid point x seed x fold.

  Args:
    experiments: static configurations; each distinct one is compiled once.
    grid: learning rates, seeds and other dynamic hyperparameters.
    model: optional user model replacing the built-in one (see `lr_jax.models`).
    target: a validation metric to reach (accuracy for classification, loss for regression),
      for epochs- and steps-to-target.
    options: chunking, checkpointing, resuming and progress (`RunOptions`).
    select: how each group's learning rate is chosen: "best" (highest mean) or "one_se"
      (`lr_jax.stats.select_index`).
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]` (the model's outputs, the labels or
      targets) replacing softmax cross-entropy / squared error in training and validation.
    metrics: `{name: lr_jax.Metric(fn, higher_is_better)}`; `fn(outputs_VxK, y_V, w_V)` is
      computed on each fold's whole validation set every epoch (`w_V` is 0 on padding). Each
      appears as `val_<name>` in the history and `best_val_<name>` (at the best epoch) in the
      rows, and may be `TrainConfig.monitor` or `select_by`.
    select_by: the metric the aggregates and the selection score, e.g. "val_auc"; None is
      val_accuracy for classification, val_loss for regression.

  Returns:
    A `SweepResult`: one row per variant, histories, aggregates and the selected learning rate.

  Raises:
    ConfigError: on any bad input, before anything is compiled (see `plan_sweep`); a
      checkpoint folder that cannot be written or that another process holds
      (`holding_checkpoints`) before any data is loaded.
  """
  target = check_target(target)  # Types before any data is loaded; the range once planned.
  check_type(options, RunOptions, "options")
  stats.check_select(select)
  loss, metric_items = check_loss_metrics(loss, metrics)
  if select_by is not None:  # Before any data is loaded: a name no group can have.
    valid = ["val_loss", "val_accuracy", *(f"val_{n}" for n, _ in metric_items)]
    if check_type(select_by, str, "select_by") not in valid:
      raise ConfigError(f"select_by {select_by!r} is not a metric of this sweep; valid "
                        f"choices: {', '.join(valid)}")
  with holding_checkpoints(options):  # Checked and held before any data is loaded.
    groups = plan_sweep(experiments, grid, model, loss=loss, metrics=dict(metric_items))
    return run_planned(groups, grid, target=target, options=options, select=select,
                       select_by=select_by)


def _log_compiles(out: GroupOutput, index: int, num_groups: int) -> None:
  """What a group compiled, apart from what it ran; "reused" when it compiled nothing."""
  if not out.programs_compiled:
    logging.info("group %d/%d: reused the programs compiled earlier in this process (nothing "
                 "compiled); %.1f s in all", index + 1, num_groups, out.run_s)
    return
  loaded = (f", {out.programs_from_disk} loaded from the persistent cache"
            if out.programs_from_disk else "")
  logging.info("group %d/%d: compiled %d program%s%s in %.1f s (tracing, lowering, XLA); %.1f s "
               "in all", index + 1, num_groups, out.programs_compiled,
               "s" * (out.programs_compiled != 1), loaded, out.compile_s, out.run_s)


@contextlib.contextmanager
def holding_checkpoints(options: RunOptions):
  """Checks `options.checkpoint_dir` and holds it (`outputs.FolderLock`) while the block runs.

  The folder is refused in one line before anything is compiled when it is an existing file
  or cannot be written, or another live process holds it. A folder this process already holds
  (a script's `cli.check_checkpoints`, or an enclosing `run_sweep`) is not locked again: a
  second `flock` of the same process would refuse it. Only process 0 writes checkpoints, so
  only it holds the folder. Nothing happens without a checkpoint folder.
  """
  directory = options.checkpoint_dir
  if not directory or _held_here(directory) or jax.process_index() != 0:
    yield
    return
  lock = outputs.FolderLock(directory, "checkpoint_dir").open()
  try:
    yield
  finally:
    lock.close()


def _held_here(directory: str) -> bool:
  """Whether this process holds `directory` by an `outputs.FolderLock` already."""
  real = os.path.realpath(directory)
  # pylint: disable-next=protected-access
  return any(lock.held and os.path.realpath(lock.path) == real for lock in outputs._FOLDER_LOCKS)


def run_planned(groups: Sequence[Group], grid: Grid, *, target: float | None = None,
                options: RunOptions = RunOptions(),
                select: str = stats.DEFAULT_SELECT, select_by: str | None = None) -> SweepResult:
  """Runs groups from `plan_sweep` (so a script can check all input before compiling)."""
  target = check_target(target, groups)  # Its range needs the tasks, known once planned.
  stats.check_select(select)
  select_by = check_select_by(select_by, groups)
  check_type(options, RunOptions, "options")
  group_outputs = []
  with holding_checkpoints(options):
    for i, group in enumerate(groups):
      logging.info("group %d/%d: %s, %d streams x %d points", i + 1, len(groups),
                   group.experiment.optim.name, len(group.seeds),
                   len(group.points["learning_rate"]))
      out = run_group(group, index=i, options=options)
      _log_compiles(out, i, len(groups))
      group_outputs.append(out)
  result = SweepResult.from_groups(groups, group_outputs, grid=grid, target=target,
                                   select=select, select_by=select_by,
                                   prune=options.prune_config())
  return result  # Nested cross-validation's refits are composed above (`lr_jax.api`).


