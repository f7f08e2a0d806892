"""Static configuration: frozen, hashable dataclasses, validated when built.

A leaf: it imports no registry, so every layer can import it lightly. What a config names in a
registry (a model, optimizer or schedule, the ranges of the numbers it defaults) is checked when
an experiment is planned (`lr_jax.hparams.check_experiment`), before anything loads or compiles.

Each distinct `Experiment` is a *compile group*. Most fields decide shapes or code; groups
that differ only in fields the program traces (the epochs, patience and step cap of
`train.Budget`, the defaults of dynamic numbers such as `OptimConfig.decay_rate`) share one
compiled program (`engine.programs._compile_key`). Numbers that only change values -- learning rate,
seed, fold, weight decay, momentum -- are swept as dynamic hyperparameters (`lr_jax.hparams`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from lr_jax.errors import ConfigError



@runtime_checkable
class DatasetLike(Protocol):
  """What a `DataConfig` takes besides a name or a path: a `lr_jax.Dataset` (`lr_jax.data`),
  recognised by its arrays and description, so the configs need not import the data layer."""

  name: str
  x: np.ndarray
  y: np.ndarray
  task: str
  feature_shape: tuple[int, ...]

MONITORS = ("val_loss", "val_accuracy")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "elu", "silu")
# JAX computes in 32 bits (x64 off): a count or seed past this overflows where it meets JAX
# (`train.Budget`'s int32 epochs, patience and step cap; the engine's int32 seeds).
INT32_MAX = 2**31 - 1
# The built-in data sets that `noise` and `num_samples` make (`lr_jax.data.DATASETS`); the real
# ones and data files are fixed data.
SYNTHETIC_DATASETS = ("moons", "spirals", "blobs", "linear", "teacher")


def check_choice(what: str, value: object, choices: Iterable[str]) -> None:
  """Raises `ConfigError` unless `value` is one of `choices`."""
  choices = tuple(choices)
  if value not in choices:
    raise ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


class Registry(dict):
  """A registry (name -> entry) whose lookup of an unknown name is one `ConfigError` line
  listing the valid names, wherever the lookup happens (planning, a saved model, the API)."""

  def __init__(self, what: str, entries=()):
    super().__init__(entries)
    self.what = what

  def __missing__(self, name):
    check_choice(self.what, name, self)


def check_fields(config) -> None:
  """Checks every field of a config dataclass against its annotation, normalizing it in place.

  The one type check of every config (called first in each `__post_init__`): numpy and JAX
  numbers become Python `int`/`float`/`bool` and sequences (1-D arrays too) tuples, so a
  config stays hashable and JSON-able; an `os.PathLike` becomes a `str`. A string is never a
  sequence, a number never a bool, a float never an integer.

  Args:
    config: a dataclass instance (frozen or not) whose annotations are `bool`, `int`, `float`,
      `str`, a class, `X | None`, `tuple[X, ...]` or a fixed `tuple[X, Y]`, nested.

  Raises:
    ConfigError: one line naming `Class.field` (and the index inside a sequence), the
      expected type and the value given.
  """
  cls = type(config)
  for name, kind in _field_types(cls).items():
    value = check_type(getattr(config, name), kind, f"{cls.__name__}.{name}")
    object.__setattr__(config, name, value)


@functools.cache
def _field_types(cls) -> dict[str, object]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_type(value, kind, where: str):
  """Checks one value against a type, as `check_fields` checks a field.

  Args:
    value: the value given.
    kind: the type it must have (see `check_fields`), e.g. `float | None`.
    where: its name in the error message, e.g. "target".

  Returns:
    `value` normalized: Python numbers, tuples for sequences, `str` for a path.
  """
  if hasattr(value, "__array__") and not isinstance(value, (np.ndarray, np.generic)):
    value = np.asarray(value)  # A JAX array reads as numpy's.
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value[()]  # A 0-d array is its number.
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    element_error = None
    for option in args:
      if option is type(None):
        continue
      try:
        return check_type(value, option, where)
      except ConfigError as e:
        if typing.get_origin(option) is tuple and _is_sequence(value):
          element_error = e  # It names the bad element: says more than the union would.
    raise element_error or _type_error(where, kind, value)
  if origin is tuple:
    if not _is_sequence(value):
      raise _type_error(where, kind, value)
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(check_type(x, args[0], f"{where}[{i}]") for i, x in enumerate(items))
    if len(items) != len(args):
      raise _type_error(where, kind, value)
    return tuple(check_type(x, a, f"{where}[{i}]") for i, (x, a) in enumerate(zip(items, args)))
  is_bool = isinstance(value, (bool, np.bool_))
  if kind is bool and is_bool:
    return bool(value)
  if kind is int and isinstance(value, numbers.Integral) and not is_bool:
    return int(value)
  if kind is float and isinstance(value, numbers.Real) and not is_bool:
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
      # np.float32(0.1) is 0.10000000149 as a double; its shortest repr is what was meant.
      return float(str(value))
    return float(value)
  if kind is str and isinstance(value, (str, os.PathLike)):
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
  if origin is None and isinstance(kind, type) and kind not in (bool, int, float, str):
    if isinstance(value, kind):
      return value
  raise _type_error(where, kind, value)


def _is_sequence(value) -> bool:
  if isinstance(value, np.ndarray):
    return value.ndim == 1
  return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


_SINGULAR = {bool: "a bool (True or False)", int: "an integer", float: "a number", str: "a string",
             DatasetLike: "a Dataset"}
_PLURAL = {bool: "bools", int: "integers", float: "numbers", str: "strings"}


def _describe(kind, plural: bool = False) -> str:
  """`int | None` -> "an integer or None"; `tuple[float, ...]` -> "a sequence of numbers"."""
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType):
    words = [_describe(a, plural) for a in args if a is not type(None)]
    return " or ".join(words + ["None"] * (type(None) in args))
  if origin is tuple:
    if len(args) == 2 and args[1] is Ellipsis:
      return ("sequences" if plural else "a sequence") + f" of {_describe(args[0], True)}"
    name = {2: "pair"}.get(len(args), f"{len(args)}-tuple")
    inner = ", ".join(_describe(a) for a in args)
    return f"{name}s ({inner})" if plural else f"a {name} ({inner})"
  if plural:
    return _PLURAL.get(kind) or f"{getattr(kind, '__name__', kind)}s"
  name = getattr(kind, "__name__", str(kind))
  return _SINGULAR.get(kind) or ("an " if name[0] in "AEIOUaeiou" else "a ") + name


def _type_error(where: str, kind, value) -> ConfigError:
  shown = " ".join(repr(value).split())  # One line, also for a 2-D array.
  shown = shown if len(shown) <= 60 else shown[:57] + "..."
  return ConfigError(f"{where} must be {_describe(kind)}, got {type(value).__name__} {shown}")


class Interval(NamedTuple):
  """The valid values of a number: `low` to `high`, each end included or not.

  Attributes:
    low: the lower end.
    high: the upper end (`math.inf` for none).
    ends: "[]", "[)", "(]" or "()": which ends are included, as written in mathematics.
  """

  low: float
  high: float
  ends: str = "[]"

  def __contains__(self, x: float) -> bool:
    above = x >= self.low if self.ends[0] == "[" else x > self.low
    below = x <= self.high if self.ends[1] == "]" else x < self.high
    return math.isfinite(x) and above and below

  def __str__(self) -> str:
    return f"{self.ends[0]}{self.low:g}, {self.high:g}{self.ends[1]}"


def check_distinct(what: str, values: Sequence, why: str = "") -> None:
  """Raises `ConfigError` naming the first value that repeats in `values`."""
  seen = set()
  for x in values:
    if x in seen:
      count = list(values).count(x)
      times = "twice" if count == 2 else f"{count} times"
      raise ConfigError(f"{what} must be distinct{why}, got {x!r} {times} in {tuple(values)}")
    seen.add(x)


def check_positive(what: str, value: float, *, integer: bool = False, allow_zero: bool = False) -> None:
  """Raises `ConfigError` unless `value` is a finite positive (or zero) number.

  An integer must also fit in 32 bits (at most `INT32_MAX`): every count and seed of lr_jax
  reaches JAX, which holds it as an int32, and a larger one would overflow only after compiling.
  """
  ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
  if isinstance(value, (bool, np.bool_)) or not ok_type or not math.isfinite(value):
    kind = "an integer" if integer else "a finite number"
    raise ConfigError(f"{what} must be {kind}, got {value!r}")
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{what} must be {bound}, got {value!r}")
  if integer and value > INT32_MAX:
    raise ConfigError(f"{what} must be at most {INT32_MAX} (2**31 - 1: JAX holds it as a 32-bit "
                      f"integer), got {value!r}; valid: {0 if allow_zero else 1}..{INT32_MAX}")


class Applies(NamedTuple):
  """Fields of a config that only some values of another of its fields read.

  Attributes:
    fields: the fields read only then, e.g. ("decay_steps", "staircase").
    by: the field whose value decides, e.g. "schedule".
    values: the values of `by` that read `fields`; (None,) reads them only while `by` is unset.
    note: why, for messages ("" for none beyond the values).
  """

  fields: tuple[str, ...]
  by: str
  values: tuple
  note: str = ""


# Which static fields of each config only some registry entries (or settings) read, by class
# name; the fields not listed apply to every configuration. The dynamic numbers are declared by
# the registries themselves (`lr_jax.hparams`), and a grid value of one that does not apply is
# refused when planned. `unused_fields` reads this table; the CLI refuses a flag given for a field
# it lists as unused (`lr_jax.cli`).
APPLIES: dict[str, tuple[Applies, ...]] = {
    "DataConfig": (
        Applies(("noise", "num_samples"), "dataset", SYNTHETIC_DATASETS,
                "the real data sets and data files are fixed data"),
        Applies(("val_fraction",), "val_dataset", (None,), "its rows are the validation split"),
        Applies(("val_fraction",), "folds", (None,),
                "k-fold cross-validation validates on each fold in turn and uses every "
                "non-test row"),
    ),
    "ModelConfig": (Applies(("hidden", "activation"), "name", ("mlp", "cnn")),),
    "OptimConfig": (
        Applies(("decay_steps", "staircase"), "schedule", ("exponential",)),
        Applies(("boundaries", "scales"), "schedule", ("piecewise",)),
    ),
    "RunOptions": (Applies(("prune_rungs", "prune_eta"), "prune", ("halving",)),),
}


class Unused(NamedTuple):
  """Why a field of a config is not read: the rule and the deciding field's value."""

  rule: Applies
  value: object


def unused_fields(config) -> dict[str, Unused]:
  """The fields of a config that its other fields leave unread (`APPLIES`), field -> why.

  E.g. `unused_fields(OptimConfig(schedule="constant"))` has "decay_steps", "staircase",
  "boundaries" and "scales"; a field several rules leave unread has the first of them.
  """
  out: dict[str, Unused] = {}
  for rule in APPLIES.get(type(config).__name__, ()):
    value = getattr(config, rule.by)
    if value not in rule.values:  # A Dataset object compares by identity: not a name.
      for field in rule.fields:
        out.setdefault(field, Unused(rule, value))
  return out


def why_unused(why: Unused, name=lambda field: field) -> str:
  """'to schedule=constant (only to exponential)': how `Unused` reads in a message.

  Args:
    why: from `unused_fields`.
    name: how a field is named, e.g. its flag (`lambda f: f"--{f}"`).
  """
  rule, value = why
  by = name(rule.by)
  shown = getattr(value, "name", value)
  if rule.values == (None,):
    text = f"with {by}={shown}"
  elif value is None:
    text = f"without {by}={'/'.join(map(str, rule.values))}"
  else:
    text = f"to {by}={shown} (only to {', '.join(map(str, rule.values))})"
  return f"{text}: {rule.note}" if rule.note else text


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data, how much of it, and how it is split.

  Attributes:
    dataset: a built-in name (see `lr_jax.data.DATASETS`), a path to a `.npz` (arrays `x`,
      `y`) or `.csv` file, or a `lr_jax.Dataset` (e.g. `Dataset.from_arrays(x, y)`), which
      compares and hashes by identity.
    train_size: examples to train on, a stratified subsample of the training pool (the "small
      dataset" knob); None uses the whole pool.
    val_fraction: fraction of the whole data set held out for validation (holdout mode only).
    folds: None for one holdout split; k >= 2 for stratified k-fold cross-validation over the
      `train_size` examples (each fold validates on its held-out k-th).
    standardize: scale features to zero mean, unit variance using training statistics only
      (per fold).
    data_seed: seed of the split and subsample; fixed across training seeds so that seeds vary
      only the init and the minibatch order.
    label_column: the label column of a `.csv` file (name or 0-based index); default the last.
    task: for user files, "classification" or "regression"; None infers it from the labels.
    noise: noise level of the synthetic data sets.
    num_samples: size of the synthetic data sets.
    val_dataset: a `.npz` or `.csv` file of validation rows with the training file's columns,
      used as they are: `val_fraction` and `folds` do not apply, `train_size` subsamples the
      training file only.
    test_fraction: None, or the fraction of the data (of the training file, with a given
      validation split) held out as a test set, stratified and drawn first with `data_seed`;
      the sweep never sees it (`Splits.test_idx`; `lr_jax.export.refit` scores on it).
    test_dataset: a `.npz` or `.csv` file of test rows with the training file's columns, used
      as they are (`Splits.test_idx`), the sweep never sees them; not with `test_fraction`.
    outer_folds: None, or K >= 2 for nested cross-validation: the `train_size` pool is split
      into K stratified outer folds, each outer fold's other K - 1 parts are split as
      configured (`folds` or `val_fraction`), the selection runs per outer fold and its choice
      is refit and scored on the held-out part (`SweepResult.nested`).
  """

  dataset: str | os.PathLike | DatasetLike = "digits"
  train_size: int | None = None
  val_fraction: float = 0.2
  folds: int | None = None
  standardize: bool = True
  data_seed: int = 0
  label_column: str | int | None = None
  task: str | None = None
  noise: float = 0.1
  num_samples: int = 1000
  val_dataset: str | None = None
  test_fraction: float | None = None
  test_dataset: str | None = None
  outer_folds: int | None = None

  def __post_init__(self):
    if isinstance(self.dataset, (tuple, list)):  # Arrays given as they are: say how instead.
      self._check_dataset_object()
    check_fields(self)
    if self.test_fraction is not None and not 0 < self.test_fraction < 1:
      raise ConfigError(f"test_fraction must be in (0, 1) (or unset for no test set), got "
                        f"{self.test_fraction!r}")
    self._check_test_and_outer()
    if not isinstance(self.dataset, str):
      self._check_dataset_object()
    if self.val_dataset is not None:
      self._check_given_split(f"val_dataset={self.val_dataset!r}")
    if not 0 < self.val_fraction < 1:
      raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
    if self.train_size is not None:
      check_positive("train_size", self.train_size, integer=True)
    if self.folds is not None and self.folds < 2:
      raise ConfigError(
          f"folds must be an integer >= 2 (or unset for a holdout split), got {self.folds!r}")
    if self.task is not None:
      check_choice("task", self.task, ("classification", "regression"))
    check_positive("noise", self.noise, allow_zero=True)
    check_positive("num_samples", self.num_samples, integer=True)

  def _check_test_and_outer(self) -> None:
    if self.test_dataset is not None and self.test_fraction is not None:
      raise ConfigError(
          f"test_dataset={self.test_dataset!r} and test_fraction={self.test_fraction!r} both "
          "give a test set; keep one")
    if self.outer_folds is None:
      return
    if self.outer_folds < 2:
      raise ConfigError(f"outer_folds must be an integer >= 2 (or unset for no nested "
                        f"cross-validation), got {self.outer_folds!r}")
    for field in ("test_fraction", "test_dataset", "val_dataset"):
      if getattr(self, field) is not None:
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply with outer_folds="
            f"{self.outer_folds}: nested cross-validation makes its own test and validation "
            f"parts; drop {field} or outer_folds")

  def _check_dataset_object(self) -> None:
    if not isinstance(self.dataset, DatasetLike):
      raise ConfigError(
          f"dataset must be a name, a file path or a lr_jax.Dataset (for arrays: "
          f"Dataset.from_arrays(x, y)), got a {type(self.dataset).__name__}")
    if self.val_dataset is not None:
      raise ConfigError(
          f"val_dataset={self.val_dataset!r} applies to data files; give a Dataset's validation "
          "rows as Dataset.from_arrays(x, y, x_val, y_val)")
    if self.test_dataset is not None:
      raise ConfigError(
          f"test_dataset={self.test_dataset!r} applies to data files; give a Dataset's test "
          "rows as Dataset.from_arrays(x, y, x_test=..., y_test=...)")
    if self.outer_folds is not None and (self.dataset.num_val or self.dataset.num_test):
      raise ConfigError(
          f"outer_folds={self.outer_folds} does not apply to {self.dataset.name!r}: its "
          "validation or test rows are given; nested cross-validation makes its own")
    for field, value in (("label_column", None), ("task", self.dataset.task)):
      if getattr(self, field) not in (None, value):
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply to the Dataset object "
            f"{self.dataset.name!r}; give it to Dataset.from_arrays")
    if self.dataset.num_val:
      self._check_given_split(f"{self.dataset.name!r} with x_val, y_val")

  def _check_given_split(self, given: str) -> None:
    # 0.2 is val_fraction's default, so as far as a dataclass can tell it was not given.
    for field, unset in (("folds", None), ("val_fraction", 0.2)):
      if getattr(self, field) != unset:
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply with a given validation split "
            f"({given}); drop {field}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A built-in model.

  Attributes:
    name: "mlp", "linear" or "cnn" (see `lr_jax.models.MODELS`).
    hidden: hidden-layer widths of the MLP, channels of the CNN's conv layers.
    activation: nonlinearity of the hidden layers.
    dropout: dropout rate after each hidden layer (training only); 0 disables it.
  """

  name: str = "mlp"
  hidden: tuple[int, ...] = (128,)
  activation: str = "relu"
  dropout: float = 0.0

  def __post_init__(self):
    check_fields(self)
    for width in self.hidden:
      check_positive("hidden width", width, integer=True)
    if self.name == "cnn" and not self.hidden:
      raise ConfigError("model 'cnn' needs at least one conv width in hidden, got ()")
    check_choice("activation", self.activation, ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimizer family, schedule shape and clipping.

  The learning rate, and weight decay and momentum where the optimizer has them, are not here:
  they are per-variant numbers (`lr_jax.optim.OPTIMIZERS` lists each family's). The schedule's
  peak is the variant's learning rate; the fields below give its shape.

  Attributes:
    name: optimizer family (see `lr_jax.optim.OPTIMIZERS`).
    schedule: schedule shape (see `lr_jax.optim.SCHEDULES`).
    decay_steps: exponential decay: steps per factor of `decay_rate` (Keras ExponentialDecay).
    decay_rate: exponential decay: multiplier per `decay_steps` steps.
    staircase: exponential decay: decay in whole steps of `decay_steps`.
    warmup_fraction: warmup_cosine: fraction of all steps spent warming up from 0.
    alpha: cosine, warmup_cosine: final learning rate as a fraction of the peak.
    pct_start: onecycle: fraction of steps spent rising to the peak.
    boundaries: piecewise: step boundaries, increasing.
    scales: piecewise: multiplier applied at each boundary.
    clip_norm: clip gradients to this global norm first; None disables clipping.
    plateau_factor: plateau: multiply the learning rate by this when `monitor` stops improving
      (Keras ReduceLROnPlateau).
    plateau_patience: plateau: epochs without improvement before a reduction.
    plateau_cooldown: plateau: epochs after a reduction before counting again.
    plateau_min_lr: plateau: the learning rate is never reduced below this.
    plateau_min_delta: plateau: an improvement smaller than this does not count.

  Every number here but `decay_steps`, `staircase`, `boundaries` and `scales` is only the
  default of a per-variant number (`lr_jax.hparams.catalog()`), which a grid may sweep.
  """

  name: str = "adam"
  schedule: str = "constant"
  decay_steps: int = 1000
  decay_rate: float = 0.9
  staircase: bool = False
  warmup_fraction: float = 0.1
  alpha: float = 0.0
  pct_start: float = 0.3
  boundaries: tuple[int, ...] = ()
  scales: tuple[float, ...] = ()
  clip_norm: float | None = None
  plateau_factor: float = 0.1
  plateau_patience: int = 10
  plateau_cooldown: int = 0
  plateau_min_lr: float = 0.0
  plateau_min_delta: float = 1e-4

  def __post_init__(self):
    check_fields(self)
    check_positive("decay_steps", self.decay_steps, integer=True)
    for b in self.boundaries:  # Step counts: compared with the int32 step in the schedule.
      if b > 0:
        check_positive("piecewise boundary", b, integer=True)
    if self.schedule == "piecewise":
      if not self.boundaries or len(self.boundaries) != len(self.scales):
        raise ConfigError(
            "schedule 'piecewise' needs boundaries and scales of equal, non-zero length, got "
            f"boundaries={self.boundaries} scales={self.scales}")
      if list(self.boundaries) != sorted(set(self.boundaries)) or self.boundaries[0] <= 0:
        raise ConfigError(
            f"piecewise boundaries must be positive and increasing, got {self.boundaries}")
      for s in self.scales:
        check_positive("piecewise scale", s)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The training loop: epochs, batches, early stopping, divergence.

  Attributes:
    epochs: maximum epochs per variant.
    batch_size: minibatch size; 0 trains full-batch. The last, partial batch of an epoch is
      kept (as Keras does).
    patience: early stopping after this many epochs without improvement of `monitor`; 0
      disables early stopping (the best epoch is still tracked and restored).
    monitor: "val_loss" (lower is better), "val_accuracy" (higher is better), or
      "val_<name>" for a user metric `name` given to `run_sweep(metrics=...)` (its own
      direction; checked against the metrics when the sweep is planned).
    min_delta: an improvement smaller than this does not count (Keras semantics).
    restore_best: end each variant with the parameters of its best epoch.
    divergence_factor: a variant diverges when a minibatch loss is non-finite or exceeds this
      multiple of its initial training loss; it is then frozen and flagged.
    max_steps: stop updating a variant after this many optimizer updates (0: no cap), so a
      budget of exactly S steps does not depend on how the epochs divide it.
  """

  epochs: int = 100
  batch_size: int = 32
  patience: int = 5
  monitor: str = "val_loss"
  min_delta: float = 0.0
  restore_best: bool = True
  divergence_factor: float = 10.0
  max_steps: int = 0

  def __post_init__(self):
    check_fields(self)
    check_positive("epochs", self.epochs, integer=True)
    check_positive("batch_size", self.batch_size, integer=True, allow_zero=True)
    check_positive("patience", self.patience, integer=True, allow_zero=True)
    self._check_monitor()
    check_positive("min_delta", self.min_delta, allow_zero=True)
    check_positive("divergence_factor", self.divergence_factor)
    if self.divergence_factor <= 1:
      raise ConfigError(f"divergence_factor must be > 1, got {self.divergence_factor!r}")
    check_positive("max_steps", self.max_steps, integer=True, allow_zero=True)

  def _check_monitor(self) -> None:
    """A built-in monitor, or "val_<name>" of a user metric (checked when planned) that does not
    abbreviate a built-in one: "val_acc" (Keras' old name) means val_accuracy, not a metric."""
    valid = MONITORS + ("val_<name> of a user metric given to run_sweep(metrics=...)",)
    name = self.monitor[len("val_"):]
    if self.monitor in MONITORS:
      return
    if not (self.monitor.startswith("val_") and name.isidentifier()):
      check_choice("monitor", self.monitor, valid)
    for builtin in MONITORS:
      if builtin.startswith(self.monitor):
        raise ConfigError(
            f"unknown monitor {self.monitor!r} (did you mean {builtin}? a user metric's name may "
            f"not abbreviate a built-in one); valid choices: {', '.join(valid)}")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One configuration of a compile group: everything that decides its compiled program, and
  the defaults of the numbers it traces."""

  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    check_fields(self)

  def replace(self, **changes) -> "Experiment":
    """Returns a copy with fields of the sub-configs changed, e.g. `replace(optim__name='sgd')`."""
    parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    grouped: dict[str, dict] = {}
    for key, value in changes.items():
      part, _, field = key.partition("__")
      if part not in parts or not field:
        raise ConfigError(f"unknown field {key!r}; use <part>__<field>, parts: {', '.join(parts)}")
      names = [f.name for f in dataclasses.fields(parts[part])]
      if field not in names:
        raise ConfigError(f"unknown field {key!r}; {part} fields: {', '.join(names)}")
      grouped.setdefault(part, {})[field] = value
    for part, fields in grouped.items():
      parts[part] = dataclasses.replace(parts[part], **fields)
    return Experiment(**parts)


def log_spaced(lr_min: float, lr_max: float, num: int) -> tuple[float, ...]:
  """`num` learning rates log-spaced from `lr_min` to `lr_max` inclusive, to 12 digits."""
  lr_min, lr_max = check_learning_rates((lr_min, lr_max))
  if lr_min >= lr_max:
    raise ConfigError(f"lr_min must be < lr_max, got lr_min={lr_min!r} lr_max={lr_max!r}")
  check_positive("num_lrs", num, integer=True)
  num = int(num)
  if num == 1:
    return (lr_min,)
  ratio = math.log(lr_max / lr_min) / (num - 1)
  # 12 significant digits: the grid prints as given (0.01, not 0.010000000000000005) and is
  # still distinct at any spacing a sweep would use.
  return tuple(float(f"{lr_min * math.exp(ratio * i):.12g}") for i in range(num))


def check_learning_rates(lrs: Sequence[float]) -> tuple[float, ...]:
  """Validates a learning-rate grid: non-empty, finite, positive."""
  lrs = tuple(lrs)
  if not lrs:
    raise ConfigError("the learning-rate grid is empty; give at least one learning rate")
  for lr in lrs:
    if (isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real)
        or not math.isfinite(lr) or lr <= 0):
      raise ConfigError(f"learning rate must be a finite number > 0, got {lr!r}")
  return tuple(check_type(lr, float, "learning rate") for lr in lrs)
