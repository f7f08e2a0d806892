"""Data sets and their splits, on the host in numpy.

    dataset = load_dataset(DataConfig(dataset="digits"))
    splits = make_splits(dataset, DataConfig(train_size=200, folds=5))
    mine = Dataset.from_arrays(x, y, x_val, y_val)  # arrays, with a given validation split

A data set is held once, whole, as `[N, D]` float32 features. A split is only indices into it,
padded per fold to a common length and masked, so that every fold of a sweep has the same shapes
and shares one compiled program. scikit-learn is imported only by the loaders that need it, so
that importing lr_jax stays fast.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import hashlib
import math
import os
import warnings
import zipfile
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from absl import logging

from lr_jax.config import DataConfig, check_choice
from lr_jax.errors import ConfigError
from lr_jax.io import UNREADABLE

CLASSIFICATION = "classification"
REGRESSION = "regression"
# Seeds the target function of "linear" and "teacher", so that every data_seed samples the
# same task; data_seed only draws the examples and the noise.
_FUNCTION_SEED = 20240601


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A whole data set, features flattened; its arrays are read-only (loads are cached).

  Attributes:
    name: the built-in name, or the file path as given.
    x: [N, D] float32 features.
    y: [N] int32 class ids 0..C-1 (classification) or [N] float32 targets (regression).
    task: "classification" or "regression".
    num_classes: C for classification, 0 for regression.
    feature_shape: the shape of one example before flattening, e.g. (8, 8, 1) for digits
      (image-shaped, for a CNN); its product is D.
    task_reason: why `task` is what it is, e.g. "inferred: 10 distinct integer labels"; empty
      for the built-in data sets.
    class_names: the label of each class id as it appeared in the data (an int, float or
      str; class c is `class_names[c]`), or the names given; () for regression.
    feature_names: the name of each of the D features (a .csv file's columns), or () when the
      data names none.
    num_val: the `num_val` rows before the test rows are a given validation split, used as
      it is (no stratified re-split, no folds); 0 when `make_splits` draws the validation rows.
    num_test: the last `num_test` rows are a given test split (`DataConfig.test_dataset`),
      which no fold trains or validates on; 0 without one.
  """

  name: str
  x: np.ndarray
  y: np.ndarray
  task: str
  num_classes: int
  feature_shape: tuple[int, ...]
  task_reason: str = ""
  class_names: tuple = ()
  feature_names: tuple[str, ...] = ()
  num_val: int = 0
  num_test: int = 0

  @classmethod
  def from_arrays(cls, x, y, x_val=None, y_val=None, *, x_test=None, y_test=None,
                  task: str | None = None, feature_names: Sequence[str] | None = None,
                  class_names: Sequence | None = None, name: str = "arrays") -> Dataset:
    """A data set from arrays in memory, checked exactly as a data file is.

    Pass it as `DataConfig(dataset=Dataset.from_arrays(x, y))`. The object is its own cache
    key (it compares and hashes by identity), so new arrays are never mistaken for old ones.

    Args:
      x: [N, ...] numeric features; rows after the first axis are flattened for training and
        their shape kept as `feature_shape` (e.g. [N, 8, 8, 1] images for a CNN).
      y: [N] labels: any numbers or strings (e.g. -1/+1, "cat"/"dog") for classification,
        mapped to class ids 0..C-1 in sorted order; numbers for regression.
      x_val: [M, ...] features of a given validation split, used exactly as given; None lets
        `make_splits` draw one (stratified, `val_fraction`, or `folds`).
      y_val: [M] labels of the validation split; encoded together with `y`, so equal labels
        get equal ids. A class the training labels lack is refused.
      x_test: [T, ...] features of a given test split (`Splits.test_idx`), which no fold trains
        or validates on; `lr_jax.export.refit` scores the chosen configuration on it.
      y_test: [T] labels of the test split, encoded with `y` as `y_val` is.
      task: "classification" or "regression"; None infers it from the labels, as for files.
      feature_names: D names, one per (flattened) feature; default a DataFrame's columns.
      class_names: one name per distinct label, in sorted label order; default the labels.
      name: how logs, errors and results name the data set.

    Returns:
      The checked data set; training rows first, then the `num_val` validation rows, then the
      `num_test` test rows.

    Raises:
      ConfigError: non-finite features or labels, mismatched lengths or shapes, fewer than 2
        classes, a validation class unseen in training, names of the wrong length.
    """
    if task is not None:
      check_choice("task", task, (CLASSIFICATION, REGRESSION))
    for what, (a, b) in (("validation", (x_val, y_val)), ("test", (x_test, y_test))):
      if (a is None) != (b is None):
        names = ("x_val", "y_val") if what == "validation" else ("x_test", "y_test")
        raise ConfigError(f"a {what} split needs both {names[0]} and {names[1]}, got only "
                          f"{names[0] if b is None else names[1]}")
    if feature_names is None and hasattr(x, "columns"):
      feature_names = [str(c) for c in x.columns]  # A pandas DataFrame names its columns.
    return _finish(name, x, y, task, columns=feature_names, user_file=True,
                   val=None if x_val is None else (x_val, y_val),
                   val_name=f"{name} (x_val, y_val)", class_names=class_names,
                   test=None if x_test is None else (x_test, y_test),
                   test_name=f"{name} (x_test, y_test)")


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """The training and validation indices of each fold (F = 1 for a holdout split).

  Attributes:
    train_idx: [F, n_max] int32 indices into `Dataset.x`, sorted; padded entries are 0.
    train_mask: [F, n_max] bool, True for real entries.
    val_idx: [F, v_max] int32 indices, sorted; padded entries are 0.
    val_mask: [F, v_max] bool.
    mean: [F, D] float32 feature mean of each fold's training rows (zeros if not standardizing).
    std: [F, D] float32 feature std of each fold's training rows, 0 replaced by 1 (ones if not
      standardizing).
    test_idx: [T] int32 sorted indices of the test rows (`DataConfig.test_fraction` or
      `test_dataset`), in no fold's training or validation rows; empty without a test set.
    outer_test_idx: [K, t_max] int32 sorted indices of each outer fold's test part (nested
      cross-validation, `DataConfig.outer_folds`); padded entries are 0; [0, 0] without.
      Folds `o * inner_folds ... (o + 1) * inner_folds - 1` are outer fold o's inner folds:
      they train and validate on its other parts only.
    outer_test_mask: [K, t_max] bool, True for real entries.
  """

  train_idx: np.ndarray
  train_mask: np.ndarray
  val_idx: np.ndarray
  val_mask: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  test_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
  outer_test_idx: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 0), np.int32))
  outer_test_mask: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 0), bool))

  @property
  def num_folds(self) -> int:
    return self.train_idx.shape[0]

  @property
  def num_outer(self) -> int:
    """K, the outer folds of nested cross-validation; 0 without."""
    return self.outer_test_idx.shape[0]

  @property
  def inner_folds(self) -> int:
    """Folds per outer fold (all of them without nested cross-validation)."""
    return self.num_folds // max(1, self.num_outer)

  def outer_rows(self, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """(training part, test part) of outer fold `outer`: sorted row indices.

    The training part is every row its inner folds train or validate on.
    """
    if not 0 <= outer < self.num_outer:
      raise ConfigError(f"outer fold must be in 0..{self.num_outer - 1}, got {outer!r}")
    folds = slice(outer * self.inner_folds, (outer + 1) * self.inner_folds)
    seen = np.union1d(self.train_idx[folds][self.train_mask[folds]],
                      self.val_idx[folds][self.val_mask[folds]])
    return seen.astype(np.int32), self.outer_test_idx[outer][self.outer_test_mask[outer]]

  @property
  def train_sizes(self) -> np.ndarray:
    """[F] int32 number of training examples of each fold."""
    return self.train_mask.sum(axis=1).astype(np.int32)

  @property
  def val_sizes(self) -> np.ndarray:
    """[F] int32 number of validation examples of each fold."""
    return self.val_mask.sum(axis=1).astype(np.int32)


def config_dict(config) -> dict:
  """`dataclasses.asdict(config)`, a `Dataset` in it given by its name, not its arrays (JSON)."""

  def inner(value):
    if isinstance(value, Dataset):
      return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
      return {f.name: inner(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
      return type(value)(inner(v) for v in value)
    if isinstance(value, dict):
      return {k: inner(v) for k, v in value.items()}
    return value

  return inner(config)


# ----------------------------------------------------------------------------- building


def _describe(indices: Sequence[int], names: Sequence[str] | None, limit: int = 5) -> str:
  what = [f"column {names[i]!r}" if names else f"feature index {i}" for i in indices[:limit]]
  more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
  return ", ".join(what) + more


# The task lines already logged: a file loaded again (another data_seed, another script step)
# is not news.
_LOGGED_TASKS: set[str] = set()


def _log_task(name: str, task: str, reason: str) -> None:
  line = f"data set {name!r}: task {task} ({reason})"
  if reason.startswith("inferred"):
    other = REGRESSION if task == CLASSIFICATION else CLASSIFICATION
    line = line[:-1] + f"; pass task={other!r} (--task={other}) to override)"
  if line not in _LOGGED_TASKS:
    _LOGGED_TASKS.add(line)
    logging.info("%s", line)


def _rows(name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
  """Checks the shapes and dtypes of raw features and labels: x [N, ...], y [N]."""
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim == 0:
    raise ConfigError(
        f"features x of {name!r} must be an array [examples, features...], got a "
        "0-dimensional array (a single value)")
  if x.ndim == 1:
    x = x[:, None]
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if x.shape[0] == 0 or x.size == 0:
    raise ConfigError(f"data set {name!r} has no examples or no features (x has shape {x.shape})")
  if y.ndim != 1:
    raise ConfigError(f"labels of {name!r} must have shape [N], got {y.shape}")
  if len(y) != len(x):
    raise ConfigError(f"data set {name!r} has {len(x)} rows of features but {len(y)} labels")
  if x.dtype.kind not in "biuf":
    raise ConfigError(f"features of {name!r} must be numeric, got dtype {x.dtype}")
  if y.dtype == object and all(isinstance(v, str) for v in y):
    y = y.astype(str)  # Text labels from a list or a pandas column.
  if y.dtype.kind not in "USbiuf":
    raise ConfigError(f"labels of {name!r} must be numbers or strings, got dtype {y.dtype}")
  return x, y


def _features(name: str, x: np.ndarray, columns: Sequence[str] | None) -> np.ndarray:
  """x [N, ...] as [N, D] float32, refusing non-finite values."""
  # Cast first: a float64 value beyond float32's range becomes inf and is caught below.
  with np.errstate(over="ignore"):
    x = x.reshape(len(x), -1).astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    cols = np.unique(np.nonzero(bad)[1]).tolist()
    raise ConfigError(
        f"data set {name!r} has {int(bad.sum())} NaN or inf feature value(s), in "
        f"{_describe(cols, columns)}; remove or fill them")
  return x


def _class_name(label) -> int | float | str:
  """A label as a plain Python value: integer-valued numbers as int."""
  if isinstance(label, (str, np.str_)):
    return str(label)
  return int(label) if float(label).is_integer() else float(label)


# An inferred classification with more classes than this share of the rows (and more than
# `_MANY_CLASSES`) is more likely a numeric target (a count, a score, a price) read as classes.
_MANY_CLASSES_SHARE = 0.1
_MANY_CLASSES = 10


def _warn_many_classes(name: str, num_classes: int, num_rows: int) -> None:
  """Warns, visibly, when whole-number labels were read as suspiciously many classes."""
  if num_classes > _MANY_CLASSES and num_classes > _MANY_CLASSES_SHARE * num_rows:
    warnings.warn(
        f"data set {name!r}: its whole-number labels were read as {num_classes} classes in "
        f"{num_rows} rows, a classification; if they are quantities, pass task='regression' "
        "(Dataset.from_arrays(..., task='regression'), DataConfig(task='regression') or "
        "--task=regression)", UserWarning, stacklevel=4)


def _finish(name: str, x: np.ndarray, y: np.ndarray, task: str | None,
            feature_shape: tuple[int, ...] | None = None,
            columns: Sequence[str] | None = None, user_file: bool = False, *,
            val: tuple[np.ndarray, np.ndarray] | None = None, val_name: str = "",
            class_names: Sequence | None = None,
            test: tuple[np.ndarray, np.ndarray] | None = None, test_name: str = "") -> Dataset:
  """Checks raw arrays and builds a `Dataset`; `task` None infers it from the labels.

  `val` and `test`, the (x, y) of a given validation and test split, get the same checks
  (errors name them `val_name`, `test_name`), and their labels are encoded together with the
  training labels. A user file's task, inferred or given, is logged once with its reason.
  """
  parts = [(name, *_rows(name, x, y))]
  given = [(n, what, p) for n, what, p in ((val_name, "validation", val),
                                           (test_name, "test", test)) if p is not None]
  for part_name, what, part in given:
    parts.append((part_name, *_rows(part_name, *part)))
    if parts[-1][1].shape[1:] != parts[0][1].shape[1:]:
      raise ConfigError(
          f"examples of {part_name!r} have shape {parts[-1][1].shape[1:]}, those of {name!r} "
          f"{parts[0][1].shape[1:]}; the {what} data needs the training data's features")
  if feature_shape is None:
    feature_shape = tuple(int(d) for d in parts[0][1].shape[1:])
  num_features = math.prod(feature_shape)
  if columns is not None:
    columns = tuple(str(c) for c in columns)
    if len(columns) != num_features:
      raise ConfigError(
          f"{len(columns)} feature names given for {name!r}, which has {num_features} features")
  x = np.concatenate([_features(n, a, columns) for n, a, _ in parts])

  kinds = ["text" if b.dtype.kind in "US" else "numbers" for _, _, b in parts]
  for (part_name, what, _), kind in zip(given, kinds[1:]):
    if kind != kinds[0]:
      raise ConfigError(
          f"labels of {name!r} are {kinds[0]}, labels of {part_name!r} are {kind}; the "
          f"training and {what} labels must be of one kind")
  reason = "given"
  if kinds[0] == "text":
    y = np.concatenate([b for _, _, b in parts])
    if task == REGRESSION:
      raise ConfigError(
          f"task 'regression' needs numeric labels, {name!r} has labels like {str(y[0])!r}")
    if task is None:
      reason = "inferred: the labels are text"
    task = CLASSIFICATION
  else:
    for n, _, b in parts:
      b = b.astype(np.float64)
      if not np.isfinite(b).all():
        raise ConfigError(
            f"data set {n!r} has {int((~np.isfinite(b)).sum())} NaN or inf label(s); "
            "every example needs a finite label")
    y = np.concatenate([b.astype(np.float64) for _, _, b in parts])
    if task is None:
      # Integer labels are read as class ids, as scikit-learn's type_of_target does; counts
      # are integers too, hence the logged reason and the override.
      if bool(np.all(y == np.round(y))):
        task = CLASSIFICATION
        reason = f"inferred: {len(np.unique(y))} distinct integer labels"
      else:
        task, reason = REGRESSION, "inferred: the labels are not all integers"

  num_train = len(parts[0][2])
  if task == CLASSIFICATION:
    classes, y = np.unique(y, return_inverse=True)  # Sorted: numbers numerically, text by text.
    if reason.startswith("inferred: ") and "integer" in reason:
      _warn_many_classes(name, len(classes), len(y))
    y = y.reshape(-1).astype(np.int32)
    start = num_train
    for (part_name, _, _), (_, _, b) in zip(given, parts[1:]):
      size = len(b)
      unseen = np.setdiff1d(y[start:start + size], y[:num_train])
      start += size
      if len(unseen):
        raise ConfigError(
            f"the labels of {part_name!r} hold {len(unseen)} class(es) that the training data "
            f"{name!r} lacks: {', '.join(repr(_class_name(classes[c])) for c in unseen[:5])}"
            f"{' and more' if len(unseen) > 5 else ''}; a model cannot predict an untrained "
            "class")
    if len(classes) < 2:
      raise ConfigError(
          f"classification needs at least 2 classes, {name!r} has 1 (every label is "
          f"{classes[0].item()!r})")
    num_classes = len(classes)
    names = tuple(_class_name(c) for c in classes)
    if class_names is not None:
      if len(class_names) != num_classes:
        raise ConfigError(
            f"{len(class_names)} class names given for {name!r}, which has {num_classes} "
            f"classes ({', '.join(repr(n) for n in names[:10])}"
            f"{', ...' if num_classes > 10 else ''})")
      names = tuple(class_names)
  else:
    if class_names is not None:
      raise ConfigError(f"class_names apply to classification, {name!r} is regression")
    with np.errstate(over="ignore"):
      y, num_classes, names = y.astype(np.float32), 0, ()
    if not np.isfinite(y).all():
      raise ConfigError(f"labels of {name!r} exceed the float32 range")
  x.flags.writeable = False
  y.flags.writeable = False
  if user_file:
    _log_task(name, task, reason)
  num_test = len(parts[-1][2]) if test is not None else 0
  return Dataset(name, x, y, task, num_classes, feature_shape,
                 task_reason=reason if user_file else "", class_names=names,
                 feature_names=columns or (), num_val=len(y) - num_train - num_test,
                 num_test=num_test)


# ----------------------------------------------------------------------------- built-ins


@functools.lru_cache(maxsize=None)
def _sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
  import sklearn.datasets  # Late: importing scikit-learn takes about a second.
  bunch = getattr(sklearn.datasets, f"load_{name}")()
  return bunch.data, bunch.target, list(bunch.feature_names)


def _real(name: str,
          feature_shape: tuple[int, ...] | None = None) -> Callable[[DataConfig], Dataset]:
  def load(cfg: DataConfig) -> Dataset:
    del cfg  # Fixed data: num_samples and noise are for the synthetic sets.
    x, y, columns = _sklearn_arrays(name)
    return _finish(name, x, y, CLASSIFICATION, feature_shape, columns)
  load.__doc__ = f"scikit-learn's {name} data set (shipped with it, no download)."
  return load


def _rng(cfg: DataConfig) -> np.random.Generator:
  _check_seed(cfg.data_seed)
  # A stream of its own: drawing from default_rng(data_seed), as the split does, would tie
  # which examples are held out to how they were generated.
  return np.random.default_rng((cfg.data_seed, 1))


def _class_sizes(cfg: DataConfig, name: str, num_classes: int) -> list[int]:
  n = cfg.num_samples
  if n < 2 * num_classes:
    raise ConfigError(
        f"num_samples={n} is too small for {name!r} ({num_classes} classes, each needs one "
        f"training and one validation example); valid: >= {2 * num_classes}")
  return [n // num_classes + (c < n % num_classes) for c in range(num_classes)]


def _labels(sizes: Sequence[int]) -> np.ndarray:
  return np.repeat(np.arange(len(sizes)), sizes)


def _moons(cfg: DataConfig) -> Dataset:
  """Two interleaving half circles (as scikit-learn's make_moons), with Gaussian noise."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "moons", 2)
  t0, t1 = np.pi * rng.random(sizes[0]), np.pi * rng.random(sizes[1])
  x = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                      np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
  return _finish("moons", x + cfg.noise * rng.standard_normal(x.shape), _labels(sizes),
                 CLASSIFICATION)


def _spirals(cfg: DataConfig) -> Dataset:
  """Two interleaved spirals of 1.5 turns within the unit disc, with Gaussian noise."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "spirals", 2)
  arms = []
  for c, n in enumerate(sizes):
    t = 3 * np.pi * np.sqrt(rng.random(n))  # sqrt: an even density along the arm.
    angle = t + c * np.pi
    arms.append(t[:, None] / (3 * np.pi) * np.stack([np.cos(angle), np.sin(angle)], 1))
  x = np.concatenate(arms)
  return _finish("spirals", x + cfg.noise * rng.standard_normal(x.shape), _labels(sizes),
                 CLASSIFICATION)


def _blobs(cfg: DataConfig) -> Dataset:
  """Four isotropic Gaussian blobs of std `noise`, centred on the corners (+-1, +-1)."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "blobs", 4)
  centres = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float64)
  y = _labels(sizes)
  return _finish("blobs", centres[y] + cfg.noise * rng.standard_normal((len(y), 2)), y,
                 CLASSIFICATION)


def _regression_inputs(cfg: DataConfig, name: str) -> tuple[np.random.Generator, np.ndarray]:
  if cfg.num_samples < 2:
    raise ConfigError(f"num_samples={cfg.num_samples} is too small for {name!r}; valid: >= 2")
  rng = _rng(cfg)
  return rng, rng.standard_normal((cfg.num_samples, 8))


def _linear(cfg: DataConfig) -> Dataset:
  """y = x.w + noise, x ~ N(0, I_8), a fixed w ~ N(0, I/8) so that x.w has unit variance."""
  rng, x = _regression_inputs(cfg, "linear")
  w = np.random.default_rng(_FUNCTION_SEED).standard_normal(8) / math.sqrt(8)
  return _finish("linear", x, x @ w + cfg.noise * rng.standard_normal(len(x)), REGRESSION)


def _teacher(cfg: DataConfig) -> Dataset:
  """y = tanh(x W1 + b1) w2 + noise: a fixed random net of 16 tanh units, x ~ N(0, I_8)."""
  rng, x = _regression_inputs(cfg, "teacher")
  net = np.random.default_rng(_FUNCTION_SEED + 1)
  # Pre-activations of std ~2 put the units in tanh's curved range: a non-linear target.
  w1 = net.standard_normal((8, 16)) * 2 / math.sqrt(8)
  b1 = net.standard_normal(16) * 0.5
  w2 = net.standard_normal(16) / math.sqrt(16)
  y = np.tanh(x @ w1 + b1) @ w2
  return _finish("teacher", x, y + cfg.noise * rng.standard_normal(len(x)), REGRESSION)


# name -> loader(DataConfig) -> Dataset. Register a loader here to add a data set by name.
DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": _real("digits", (8, 8, 1)),
    "iris": _real("iris"),
    "wine": _real("wine"),
    "breast_cancer": _real("breast_cancer"),
    "moons": _moons,
    "spirals": _spirals,
    "blobs": _blobs,
    "linear": _linear,
    "teacher": _teacher,
}


# ----------------------------------------------------------------------------- files


def _label_index(header: list[str], label_column: str | int | None, path: str) -> int:
  if label_column is None:
    return len(header) - 1
  if isinstance(label_column, str) and label_column in header:
    return header.index(label_column)
  if isinstance(label_column, int) and not isinstance(label_column, bool):
    index = label_column
  elif isinstance(label_column, str) and label_column.strip().isdigit():
    index = int(label_column)
  else:
    raise ConfigError(
        f"label column {label_column!r} not found in {path!r}; available columns: "
        f"{', '.join(header)}")
  if not 0 <= index < len(header):
    raise ConfigError(
        f"label column index {index} is out of range for {path!r}, which has {len(header)} "
        f"columns; valid: 0..{len(header) - 1} or a name among {', '.join(header)}")
  return index


def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def _shorten(cells: Sequence[str], limit: int = 4) -> str:
  return ",".join(cells[:limit]) + (",..." if len(cells) > limit else "")


def _example_header(num_columns: int) -> str:
  names = [f"x{i + 1}" for i in range(num_columns - 1)] + ["label"]
  return _shorten(names[:-1], 3) + ",label" if num_columns > 4 else ",".join(names)


class _Raw(NamedTuple):
  """A data file as read, before `_finish` checks and encodes it."""

  x: np.ndarray                # [N, ...] features
  y: np.ndarray                # [N] labels; a .csv file's as text, parsed in `_file_labels`
  columns: list[str] | None    # a .csv file's feature columns
  label: str | None            # a .csv file's label column


def _csv_columns(header: list[str], path: str, label_column: str | int | None,
                 like: _Raw | None) -> tuple[int, list[int]]:
  """The label column's index and the feature columns' indices, in `like`'s order if given."""
  if like is None or like.columns is None:
    label = _label_index(header, label_column, path)
    return label, [j for j in range(len(header)) if j != label]
  if label_column is None:  # The training file's label column, found by name.
    if like.label not in header:
      raise ConfigError(
          f"label column {like.label!r} of the training data is not in {path!r}; its columns: "
          f"{', '.join(header)}")
    label = header.index(like.label)
  else:
    label = _label_index(header, label_column, path)
  names = [h for j, h in enumerate(header) if j != label]
  missing = [c for c in like.columns if c not in names]
  extra = [c for c in names if c not in like.columns]
  if missing or extra or header[label] != like.label:
    what = [f"missing {', '.join(missing)}" if missing else "",
            f"extra {', '.join(extra)}" if extra else "",
            f"label column {header[label]!r}, not {like.label!r}"
            if header[label] != like.label else ""]
    raise ConfigError(
        f"the columns of {path!r} differ from the training data's: "
        f"{'; '.join(w for w in what if w)}")
  # Same columns in another order: matched by name.
  return label, [header.index(c) for c in like.columns]


def check_header(header: Sequence[str], path: str) -> None:
  """Refuses a .csv header that names a column twice (columns are found by name).

  Args:
    header: the column names, stripped.
    path: the file, for the message.

  Raises:
    ConfigError: one line naming each repeated name, its 1-based column positions and the file.
  """
  counts = collections.Counter(header)
  repeated = [name for name, n in counts.items() if n > 1]
  if not repeated:
    return
  where = [f"{name!r} (columns {', '.join(str(j + 1) for j, h in enumerate(header) if h == name)})"
           for name in repeated]
  raise ConfigError(
      f"the header of {path!r} names {'a column' if len(repeated) == 1 else 'columns'} more than "
      f"once: {'; '.join(where[:5])}{' and more' if len(where) > 5 else ''}; every column needs "
      "a distinct name (columns are matched by name)")


def _cannot_read(path: str, what: str, e: OSError) -> ConfigError:
  return ConfigError(f"cannot read {what} {path!r}: {e.strerror or type(e).__name__}")


def _read_csv(path: str, label_column: str | int | None, like: _Raw | None = None,
              what: str = "data file") -> _Raw:
  rows, lines = [], []
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = next(reader, None)
      if header is None:
        raise ConfigError(f"data file {path!r} is empty")
      header = [h.strip() for h in header]
      if all(_is_number(h) for h in header):
        raise ConfigError(
            f"the first line of {path!r} is all numbers ({_shorten(header)}), not a header: it "
            "would be lost as column names; add a first line naming the columns, e.g. "
            f"{_example_header(len(header))}")
      check_header(header, path)
      for row in reader:
        if not any(cell.strip() for cell in row):
          continue  # Blank lines, e.g. at the end.
        if len(row) != len(header):
          raise ConfigError(
              f"line {reader.line_num} of {path!r} has {len(row)} columns, the header has "
              f"{len(header)}")
        rows.append(row)
        lines.append(reader.line_num)
  except UnicodeDecodeError:
    raise ConfigError(f"data file {path!r} is not UTF-8 text; a .csv file must be") from None
  except csv.Error as e:
    raise ConfigError(f"data file {path!r} is not valid CSV: {e}") from None
  except OSError as e:  # Unreadable: permissions, a directory, an I/O error.
    raise _cannot_read(path, what, e) from None
  if not rows:
    raise ConfigError(f"data file {path!r} has a header but no data rows")
  if len(header) < 2:
    raise ConfigError(
        f"data file {path!r} has only the column {header[0]!r}; it needs a label column and at "
        "least one feature column")
  label, features = _csv_columns(header, path, label_column, like)
  cells = [[row[j] for j in features] for row in rows]
  try:
    x = np.array(cells, dtype=np.float64)
  except ValueError:
    for row, line in zip(cells, lines):
      for j, cell in zip(features, row):
        try:
          float(cell)
        except ValueError:
          what = "an empty value" if not cell.strip() else f"non-numeric value {cell.strip()!r}"
          raise ConfigError(
              f"{what} in column {header[j]!r}, line {line} of {path!r}; every column but the "
              f"label ({header[label]!r}) must be a number") from None
    raise ConfigError(f"data file {path!r} has features that are not numbers") from None
  labels = [row[label].strip() for row in rows]
  for text, line in zip(labels, lines):
    if not text:
      raise ConfigError(f"missing label in column {header[label]!r}, line {line} of {path!r}")
  return _Raw(x, np.array(labels), [header[j] for j in features], header[label])


def _file_labels(raws: Sequence[_Raw]) -> list[np.ndarray]:
  """The labels of files read together; .csv text as numbers if every .csv label is one."""
  texts = [r.y for r in raws if r.columns is not None]
  try:
    # Numeric labels sort as numbers ("9" < "10"); all files at once, so that "1" in one file
    # and "1.0" in the other are one class.
    parsed = iter([np.array(t, dtype=np.float64) for t in texts])
  except ValueError:
    parsed = iter(texts)
  return [next(parsed) if r.columns is not None else r.y for r in raws]


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # A zip's first entry, or an empty zip.
_NPZ_HOW = "save one with np.savez(path, x=features, y=labels)"


def _not_pickle(e: BaseException) -> str:
  """numpy's message of a failed load, one line, without its advice to unpickle the file."""
  text = " ".join(str(e).split())
  if "pickle" in text.lower():
    return "it holds pickled Python objects, which are never loaded"
  return text or type(e).__name__


def _read_npz(path: str, what: str = "data file") -> _Raw:
  # Decided by the magic bytes, not by np.load: anything that is neither a zip nor a .npy is,
  # to numpy, a pickle, and its error advises loading it unsafely.
  try:
    with open(path, "rb") as f:
      head = f.read(len(_NPY_MAGIC))
  except OSError as e:
    raise _cannot_read(path, what, e) from None
  if head.startswith(_NPY_MAGIC):
    raise ConfigError(
        f"data file {path!r} holds a single array, not a .npz archive; {_NPZ_HOW}")
  if not head.startswith(_ZIP_MAGICS):
    raise ConfigError(
        f"data file {path!r} is not a valid .npz archive (not a zip file); {_NPZ_HOW}")
  try:
    with np.load(path, allow_pickle=False) as archive:
      present = list(archive.files)
      for key in ("x", "y"):
        if key not in present:
          raise ConfigError(
              f"data file {path!r} has no array {key!r}; arrays present: "
              f"{', '.join(present) or 'none'}")
      arrays = {}
      for key in ("x", "y"):
        try:
          arrays[key] = archive[key]
        except ValueError as e:
          if "allow_pickle" not in str(e) and "pickle" not in str(e):
            raise
          raise ConfigError(
              f"array {key!r} of {path!r} holds Python objects, which are not read; save it as "
              "numbers (or, for y, strings)") from None
        if not isinstance(arrays[key], np.ndarray):  # numpy hands back a non-.npy member's bytes.
          raise ConfigError(
              f"data file {path!r} is not a valid .npz archive (its {key!r} is not a .npy "
              f"array); {_NPZ_HOW}")
  except ConfigError:
    raise
  except OSError as e:
    if e.errno in UNREADABLE:  # Not malformed: not readable (a seek past a bad offset is).
      raise _cannot_read(path, what, e) from None
    raise ConfigError(f"data file {path!r} is not a valid .npz archive ({_not_pickle(e)}); "
                      f"{_NPZ_HOW}") from None
  except (ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ConfigError(f"data file {path!r} is not a valid .npz archive ({_not_pickle(e)}); "
                      f"{_NPZ_HOW}") from None
  return _Raw(arrays["x"], arrays["y"], None, None)


def _check_file(path: str, what: str = "data file") -> str:
  """Refuses a missing, empty or unknown kind of file; returns its extension."""
  ext = os.path.splitext(path)[1].lower()
  if os.path.isdir(path):
    raise ConfigError(f"{what} {path!r} is a directory, not a file; give a .npz or .csv file")
  if ext not in (".npz", ".csv"):
    if os.path.exists(path):
      raise ConfigError(f"cannot read {what} {path!r}: a data file must end in .npz or .csv")
    return ext
  if not os.path.exists(path):
    raise ConfigError(f"{what} {path!r} does not exist")
  if not os.path.isfile(path):
    raise ConfigError(f"{what} {path!r} is not a regular file; give a .npz or .csv file")
  if os.path.getsize(path) == 0:
    raise ConfigError(f"{what} {path!r} is empty")
  return ext


def _read_file(path: str, cfg: DataConfig, like: _Raw | None = None,
               what: str = "data file") -> _Raw:
  if os.path.splitext(path)[1].lower() == ".npz":
    if cfg.label_column is not None:
      raise ConfigError(
          f"label_column applies to .csv files only, got {cfg.label_column!r} with {path!r}")
    return _read_npz(path, what)
  return _read_csv(path, cfg.label_column, like, what)


_DATA_FILES = (("dataset", "data file"), ("val_dataset", "validation file"),
               ("test_dataset", "test file"))


def content_fingerprint(dataset: Dataset, cfg: DataConfig) -> dict[str, str]:
  """What a data set holds, as short hashes: what a checkpoint records of its data.

  `arrays` hashes the loaded features and labels; each data file that `cfg` names (`dataset`,
  `val_dataset`, `test_dataset`) has the hash of its bytes under its field's name, so a file
  changed under the same name is told apart (even from a stale in-memory copy).

  Raises:
    ConfigError: a named file can no longer be read.
  """
  h = hashlib.sha256()
  for a in (dataset.x, dataset.y):
    h.update(str((a.dtype, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
  out = {"arrays": h.hexdigest()[:16]}
  for field, what in _DATA_FILES:
    path = getattr(cfg, field)
    if isinstance(path, os.PathLike):
      path = os.fspath(path)
    if not isinstance(path, str) or (field == "dataset" and path in DATASETS):
      continue
    h = hashlib.sha256()
    try:
      with open(path, "rb") as f:
        while block := f.read(1 << 20):
          h.update(block)
    except OSError as e:
      raise _cannot_read(path, what, e) from None
    out[field] = h.hexdigest()[:16]
  return out


def load_dataset(cfg: DataConfig) -> Dataset:
  """Loads the data set named by `cfg.dataset`: a `DATASETS` name or a .npz / .csv path.

  A .npz file holds arrays `x` [N, ...] and `y` [N]. A .csv file has a header row; the label
  column is `cfg.label_column` (a name or 0-based index; default the last) and every other
  column is a numeric feature. Classification labels are mapped to 0..C-1 in sorted order;
  with `cfg.task` None, integer-valued or text labels mean classification, others regression
  (logged once, with the reason: integer targets such as counts need `task="regression"`).

  Args:
    cfg: the data configuration; `train_size`, `folds` and `val_fraction` are not used here.

  Returns:
    The whole data set.

  Raises:
    ConfigError: an unknown name, a missing or malformed file, non-finite features, or fewer
      than 2 classes.
  """
  if isinstance(cfg.dataset, Dataset):
    return cfg.dataset  # Checked when built; `DataConfig` refuses options that do not apply.
  name = os.fspath(cfg.dataset) if isinstance(cfg.dataset, os.PathLike) else cfg.dataset
  if not isinstance(name, str):
    raise ConfigError(f"dataset must be a name or a path, got {name!r}")
  if name in DATASETS:
    if cfg.label_column is not None:
      raise ConfigError(
          f"label_column applies to .csv files only, got {cfg.label_column!r} with built-in "
          f"dataset {name!r}")
    for field in ("val_dataset", "test_dataset"):
      if getattr(cfg, field) is not None:
        raise ConfigError(
            f"{field} needs dataset to be a .npz or .csv file with the same columns, got "
            f"built-in dataset {name!r}")
    dataset = DATASETS[name](cfg)
    if cfg.task is not None and cfg.task != dataset.task:
      raise ConfigError(
          f"dataset {name!r} is a {dataset.task} data set, got task={cfg.task!r}; task applies "
          "to .npz and .csv files only")
    return dataset
  if _check_file(name) not in (".npz", ".csv"):
    raise ConfigError(
        f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}, or the path of a .npz "
        "or .csv file")
  raw = _read_file(name, cfg)
  given = {}  # "val" / "test" -> the file's rows, read with the training file's columns
  for key, path, what in (("val", cfg.val_dataset, "validation file"),
                          ("test", cfg.test_dataset, "test file")):
    if path is None:
      continue
    if _check_file(path, what) not in (".npz", ".csv"):
      raise ConfigError(f"{key}_dataset {path!r} must be a .npz or .csv file")
    given[key] = _read_file(path, cfg, like=raw, what=what)
  y, *labels = _file_labels([raw, *given.values()])
  split = {key: (r.x, b) for (key, r), b in zip(given.items(), labels)}
  return _finish(name, raw.x, y, cfg.task, columns=raw.columns, user_file=True,
                 val=split.get("val"), val_name=cfg.val_dataset or "",
                 test=split.get("test"), test_name=cfg.test_dataset or "")


# ----------------------------------------------------------------------------- splits


def _check_seed(seed: int) -> None:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ConfigError(f"data_seed must be an integer >= 0, got {seed!r}")


def _apportion(quota: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: int) -> np.ndarray:
  """Integers lo <= a <= hi summing to `total`, each as close to its `quota` as the rest allow."""
  alloc = np.clip(np.floor(quota).astype(np.int64), lo, hi)
  # Few steps: flooring and clipping leave at most ~2 per class to hand out or take back.
  while (gap := total - int(alloc.sum())) != 0:
    if gap > 0:
      alloc[np.argmax(np.where(alloc < hi, quota - alloc, -np.inf))] += 1
    else:
      alloc[np.argmax(np.where(alloc > lo, alloc - quota, -np.inf))] -= 1
  return alloc


def _draw(idx: np.ndarray, labels: np.ndarray | None, size: int, rng: np.random.Generator,
          keep_each: bool) -> tuple[np.ndarray, np.ndarray]:
  """Draws `size` of `idx` at random, stratified by `labels` (None: unstratified).

  Every class present in `idx` is drawn at least once and, with `keep_each`, also left at
  least once in the rest. Callers check that this is possible.

  Returns:
    (drawn, rest), each sorted.
  """
  order = idx[rng.permutation(len(idx))]
  taken = np.zeros(len(order), bool)
  if labels is None:
    taken[:size] = True
  else:
    lab = labels[order]
    counts = np.bincount(lab)
    present = (counts > 0).astype(np.int64)
    alloc = _apportion(size * counts / len(order), present, counts - keep_each * present, size)
    for c, k in enumerate(alloc):
      taken[np.flatnonzero(lab == c)[:k]] = True
  return np.sort(order[taken]), np.sort(order[~taken])


def _kfold(idx: np.ndarray, labels: np.ndarray | None, k: int,
           rng: np.random.Generator) -> list[np.ndarray]:
  """Splits `idx` into `k` sorted parts, each class spread over them as evenly as possible."""
  order = idx[rng.permutation(len(idx))]
  if labels is not None:
    # Grouping classes, then dealing positions round-robin, gives every part floor or ceil of
    # each class's share, and part sizes within one of each other.
    order = order[np.argsort(labels[order], kind="stable")]
  part = np.arange(len(order)) % k
  return [np.sort(order[part == f]) for f in range(k)]


def _pad(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  width = max(len(p) for p in parts)
  idx = np.zeros((len(parts), width), np.int32)
  mask = np.zeros((len(parts), width), bool)
  for f, p in enumerate(parts):
    idx[f, :len(p)] = p
    mask[f, :len(p)] = True
  return idx, mask


def _test_rows(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Draws the test rows, before any other split: (test, rest), stratified; none without one.

  With a given validation split the test rows come from the training rows only; a given test
  split (`Dataset.num_test`) is used as it is.
  """
  n_all = len(dataset.y)
  rows = np.arange(n_all - dataset.num_val - dataset.num_test)
  if dataset.num_test:
    if cfg.test_fraction is not None:
      raise ConfigError(
          f"test_fraction={cfg.test_fraction} does not apply to {dataset.name!r}: its "
          f"{dataset.num_test} test rows are given; drop test_fraction")
    return np.arange(n_all - dataset.num_test, n_all, dtype=np.int32), rows
  if cfg.test_fraction is None:
    return np.zeros(0, np.int32), rows
  n_test = math.ceil(round(cfg.test_fraction * len(rows), 6))  # As `_holdout`'s n_val.
  if labels is not None:
    counts = np.bincount(labels[rows], minlength=dataset.num_classes)
    if counts.min() < 3:
      raise ConfigError(
          f"class {int(counts.argmin())} of {dataset.name!r} has {int(counts.min())} example(s); "
          "test_fraction needs at least 3 of each class (to test, train and validate)")
  if n_test < need or len(rows) - n_test < 2 * need:
    raise ConfigError(
        f"test_fraction={cfg.test_fraction} holds out {n_test} of {len(rows)} examples; the test "
        f"set needs at least {need} and the rest {2 * need}; valid: test_fraction in "
        f"[{need / len(rows):.4g}, {(len(rows) - 2 * need) / len(rows):.4g}]")
  test, rest = _draw(rows, labels, n_test, rng, keep_each=True)
  return test.astype(np.int32), rest


def _holdout(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
             rng: np.random.Generator, rows: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, int]:
  """Draws the validation rows of a holdout split from `rows` (default all): (val, pool, n_val)."""
  rows = np.arange(len(dataset.y)) if rows is None else rows
  n_all = len(rows)
  # ceil, as scikit-learn's train_test_split: digits at 0.2 holds out 360 of 1797. The round
  # keeps float error (0.1 * 30 = 3.0000000000000004) from adding one.
  n_val = math.ceil(round(cfg.val_fraction * n_all, 6))
  if labels is not None:
    counts = np.bincount(labels[rows], minlength=dataset.num_classes)
    if counts.min() < 2:
      # Rare "classes" are typical of counts read as classes: say how to train them as numbers.
      hint = ("; if the labels are quantities, pass task='regression' (--task=regression)"
              if "integer labels" in dataset.task_reason else "")
      raise ConfigError(
          f"class {int(counts.argmin())} of {dataset.name!r} has {int(counts.min())} example(s); "
          f"a stratified split needs at least 2 of each class (one to train, one to validate)"
          f"{hint}")
    if n_val < need:
      raise ConfigError(
          f"val_fraction={cfg.val_fraction} holds out {n_val} of {n_all} examples, fewer than "
          f"the {need} classes; valid: val_fraction > {(need - 1) / n_all:.4g}")
  if n_all - n_val < need:
    raise ConfigError(
        f"val_fraction={cfg.val_fraction} leaves {n_all - n_val} of {n_all} examples to train "
        f"on, fewer than {need}; valid: val_fraction <= {(n_all - need) / n_all:.4g}")
  val, pool = _draw(rows, labels, n_val, rng, keep_each=True)
  return val, pool, n_val


def make_splits(dataset: Dataset, cfg: DataConfig) -> Splits:
  """Splits a data set into training and validation indices, deterministically in `data_seed`.

  Holdout (`cfg.folds` None, F = 1): ceil(val_fraction * N) examples are held out for
  validation, stratified by class for classification; the rest is the training pool, of which
  a stratified subsample of `cfg.train_size` is trained on. A data set with a given validation
  split (`Dataset.num_val` > 0) validates on exactly those rows and draws `train_size` from the
  others (`val_fraction` and `folds` do not apply). With `cfg.test_fraction`, a stratified test
  set is drawn first, from every row (the training rows, with a given validation split), and
  everything above applies to the rest: no fold trains or validates on a test row.
  k-fold (`cfg.folds` = k, F = k): nothing is held out (`val_fraction` does not apply): every
  row that is not a test row, or a stratified subsample of `cfg.train_size` of them, is split
  into k stratified folds, and fold f trains on the other k - 1 and validates on fold f.
  Nested (`cfg.outer_folds` = K, F = K x inner folds): the pool, a stratified subsample of
  `train_size` examples (default all), is split into K stratified outer folds; outer fold o's
  other K - 1 parts are split as above, into `folds` k-folds (all its rows) or a
  `val_fraction` holdout; these are folds o * F/K ... and outer fold o tests on its part
  (`Splits.outer_test_idx`).

  Args:
    dataset: the whole data set.
    cfg: the data configuration.

  Returns:
    The padded indices of each fold and their standardization statistics.

  Raises:
    ConfigError: when `val_fraction`, `train_size` or `folds` do not fit the data.
  """
  _check_seed(cfg.data_seed)
  rng = np.random.default_rng(cfg.data_seed)
  n_all = len(dataset.y)
  labels = dataset.y if dataset.task == CLASSIFICATION else None
  need = dataset.num_classes if labels is not None else 1
  test, rest = _test_rows(dataset, cfg, labels, need, rng)  # First: nothing else sees them.
  if cfg.outer_folds is not None:
    train_parts, val_parts, outer = _nested(dataset, cfg, labels, need, rng, rest)
    return _fold_splits(dataset, cfg.standardize, train_parts, val_parts, test, outer)
  if dataset.num_val:
    if cfg.folds is not None:
      raise ConfigError(
          f"folds={cfg.folds} does not apply to {dataset.name!r}: its {dataset.num_val} "
          "validation rows are given; drop folds, or give no validation split to cross-validate")
    # Taken as given: building the data set checked that training holds every class.
    n_val = dataset.num_val
    end = n_all - dataset.num_test
    val, pool = np.arange(end - n_val, end), rest
  elif cfg.folds is not None:
    # k-fold: every row that is not a test row is in some fold; val_fraction does not apply
    # (each fold's validation part is its k-th), so nothing is held out here.
    val, pool, n_val = np.zeros(0, np.int64), rest, 0
  else:
    val, pool, n_val = _holdout(dataset, cfg, labels, need, rng, rest)

  size = len(pool) if cfg.train_size is None else cfg.train_size
  if size > len(pool):
    held = [f"{n_val} held out for validation"] if n_val else []
    held += [f"{len(test)} for test"] if len(test) else []
    raise ConfigError(
        f"train_size={size} is larger than the training pool of {len(pool)} examples ({n_all}"
        f"{' minus ' + ' and '.join(held) if held else ''}); valid: {need}..{len(pool)}")
  if size < need:
    raise ConfigError(
        f"train_size={size} is smaller than the {need} classes of {dataset.name!r}; every class "
        f"needs an example; valid: {need}..{len(pool)}")
  train, _ = _draw(pool, labels, size, rng, keep_each=False)

  if cfg.folds is None:
    train_parts, val_parts = [train], [val]
  else:
    k = cfg.folds
    if labels is not None:
      smallest = int(np.bincount(labels[train]).min())
      if k > smallest:
        valid = f"2..{smallest}" if smallest >= 2 else "none, use a larger train_size"
        raise ConfigError(
            f"folds={k} is more than {smallest}, the smallest class count among the {size} "
            f"training examples; every fold must hold each class; valid: {valid}")
    elif k > size:
      raise ConfigError(
          f"folds={k} is more than the {size} training examples; valid: 2..{size}")
    val_parts = _kfold(train, labels, k, rng)
    train_parts = [np.concatenate(val_parts[:f] + val_parts[f + 1:]) for f in range(k)]
    train_parts = [np.sort(p) for p in train_parts]

  return _fold_splits(dataset, cfg.standardize, train_parts, val_parts, test)


def _fold_splits(dataset: Dataset, standardize: bool, train_parts: Sequence[np.ndarray],
                 val_parts: Sequence[np.ndarray], test: np.ndarray | None = None,
                 outer: Sequence[np.ndarray] = ()) -> Splits:
  """`Splits` of given row indices per fold, each fold standardized by its training rows."""
  train_idx, train_mask = _pad(list(train_parts))
  val_idx, val_mask = _pad(list(val_parts))
  num_features = dataset.x.shape[1]
  mean = np.zeros((len(train_parts), num_features), np.float32)
  std = np.ones((len(train_parts), num_features), np.float32)
  if standardize:
    for f, part in enumerate(train_parts):
      # float64 makes a constant column's std exactly 0 (not ~1e-16, which would blow it up).
      rows = dataset.x[part].astype(np.float64)
      mean[f], std[f] = rows.mean(axis=0), rows.std(axis=0)
  std[std == 0] = 1.0
  extra = dict(zip(("outer_test_idx", "outer_test_mask"), _pad(list(outer)))) if outer else {}
  return Splits(train_idx, train_mask, val_idx, val_mask, mean, std,
                test_idx=np.zeros(0, np.int32) if test is None else test, **extra)


def fold_splits(dataset: Dataset, standardize: bool, train_parts: Sequence[np.ndarray],
                val_parts: Sequence[np.ndarray]) -> Splits:
  """`Splits` whose fold f trains on rows `train_parts[f]` and validates on `val_parts[f]`.

  For splits of one's own (e.g. refitting each outer fold's choice on its training part and
  scoring it on its test part); each fold is standardized by its training rows if asked.
  """
  return _fold_splits(dataset, standardize, train_parts, val_parts)


def _nested(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
            rng: np.random.Generator, rows: np.ndarray
            ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
  """Nested cross-validation's folds: (inner training parts, inner validation parts, outer
  test parts), the inner ones outer fold by outer fold (see `make_splits`)."""
  k = cfg.outer_folds
  size = len(rows) if cfg.train_size is None else cfg.train_size
  if not need <= size <= len(rows):
    raise ConfigError(f"train_size={size} does not fit {dataset.name!r}: the pool of nested "
                      f"cross-validation needs {need}..{len(rows)} examples")
  pool, _ = _draw(rows, labels, size, rng, keep_each=False)
  smallest = int(np.bincount(labels[pool]).min()) if labels is not None else size
  if k > smallest:
    what = (f"the smallest class count among the {size} examples" if labels is not None
            else f"the {size} examples")
    raise ConfigError(
        f"outer_folds={k} is more than {smallest}, {what}; every outer fold must test "
        f"{'each class' if labels is not None else 'an example'}; valid: "
        f"{f'2..{smallest}' if smallest >= 2 else 'none, use a larger train_size'}")
  outer = _kfold(pool, labels, k, rng)
  train_parts, val_parts = [], []
  for o in range(k):
    part = np.sort(np.concatenate(outer[:o] + outer[o + 1:]))
    if cfg.folds is None:
      val, train, _ = _holdout(dataset, cfg, labels, need, rng, part)
      train_parts.append(train)
      val_parts.append(val)
      continue
    inner = int(np.bincount(labels[part]).min()) if labels is not None else len(part)
    if cfg.folds > inner:
      raise ConfigError(
          f"folds={cfg.folds} is more than {inner}, the smallest class count of outer fold "
          f"{o}'s {len(part)} training examples; every inner fold must hold each class; "
          f"valid: {f'2..{inner}' if inner >= 2 else 'none, use a larger train_size'}")
    parts = _kfold(part, labels, cfg.folds, rng)
    val_parts += parts
    train_parts += [np.sort(np.concatenate(parts[:f] + parts[f + 1:]))
                    for f in range(cfg.folds)]
  return train_parts, val_parts, outer
