"""The `Dataset` type, and building one from raw arrays: checks, the task, the labels' encoding."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
from absl import logging

from lr_jax.config import check_choice
from lr_jax.data.folders import read_folder
from lr_jax.errors import ConfigError

CLASSIFICATION = "classification"
REGRESSION = "regression"


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


  @classmethod
  def from_folder(cls, path, *, image_size: int | Sequence[int] | None = None,
                  color: str = "grayscale") -> Dataset:
    """A classification data set from a folder of images, one sub-folder per class.

    Pass it as `DataConfig(dataset=Dataset.from_folder(path))`, or give the path itself:
    `DataConfig(dataset=path, image_size=..., color=...)`, `--dataset=path`. The layout, and
    what is refused, is `lr_jax.data.folders`'.

    Args:
      path: `DIR/<class>/*.png` (or .jpg, .jpeg); with given splits `DIR/train/<class>/`
        and `DIR/val/<class>/` and/or `DIR/test/<class>/`, the same classes in each, used as
        `x_val` and `x_test` are.
      image_size: None keeps the images' size (all must have one); an int resizes each to a
        square of that side, (height, width) to that shape.
      color: "grayscale" ([H, W, 1]) or "rgb" ([H, W, 3]).

    Returns:
      The data set: pixels in [0, 1], `feature_shape` (H, W, C), class ids in the order of
      the sorted folder names, which are `class_names`; named `path`.

    Raises:
      ConfigError: one line naming the folder or file (`lr_jax.data.folders.read_folder`).
    """
    folder = read_folder(path, image_size=image_size, color=color)
    train, val, test = (folder.parts.get(s) for s in ("train", "val", "test"))
    return _finish(os.fspath(path), train.x, train.y, CLASSIFICATION,
                   class_names=folder.class_names,
                   val=(val.x, val.y) if val else None, val_name=val.folder if val else "",
                   test=(test.x, test.y) if test else None,
                   test_name=test.folder if test else "")


def _some_names(indices: Sequence[int], names: Sequence[str] | None, limit: int = 5) -> str:
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
        f"{_some_names(cols, columns)}; remove or fill them")
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
  parts, given = _parts(name, x, y, val, val_name, test, test_name)
  if feature_shape is None:
    feature_shape = tuple(int(d) for d in parts[0][1].shape[1:])
  columns = _column_names(name, columns, math.prod(feature_shape))
  x = np.concatenate([_features(n, a, columns) for n, a, _ in parts])
  y, task, reason = _labels(name, parts, given, task)
  num_train = len(parts[0][2])
  if task == CLASSIFICATION:
    classes, y = np.unique(y, return_inverse=True)  # Sorted: numbers numerically, text by text.
    if reason.startswith("inferred: ") and "integer" in reason:
      _warn_many_classes(name, len(classes), len(y))
    y = y.reshape(-1).astype(np.int32)
    _check_classes(name, y, classes, given, parts, num_train)
    num_classes = len(classes)
    names = _class_names(name, classes, class_names)
  else:
    y, num_classes, names = _targets(name, y, class_names)
  x.flags.writeable = False
  y.flags.writeable = False
  if user_file:
    _log_task(name, task, reason)
  num_test = len(parts[-1][2]) if test is not None else 0
  return Dataset(name, x, y, task, num_classes, feature_shape,
                 task_reason=reason if user_file else "", class_names=names,
                 feature_names=columns or (), num_val=len(y) - num_train - num_test,
                 num_test=num_test)


def _parts(name: str, x, y, val, val_name: str, test, test_name: str
           ) -> tuple[list[tuple], list[tuple]]:
  """The checked (name, x, y) of the training data and each given split (`_rows`), and the
  given splits' (name, "validation" or "test", (x, y)).

  Raises:
    ConfigError: a split's examples are not shaped as the training data's.
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
  return parts, given


def _column_names(name: str, columns: Sequence[str] | None, num_features: int
                  ) -> tuple[str, ...] | None:
  """The feature names as a tuple of str, one per feature; None where none are given."""
  if columns is not None:
    columns = tuple(str(c) for c in columns)
    if len(columns) != num_features:
      raise ConfigError(
          f"{len(columns)} feature names given for {name!r}, which has {num_features} features")
  return columns


def _labels(name: str, parts: Sequence[tuple], given: Sequence[tuple], task: str | None
            ) -> tuple[np.ndarray, str, str]:
  """All the parts' labels, concatenated ([N] text, or [N] float64 numbers, checked finite),
  the task (given, or inferred from the labels) and why it is what it is."""
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
  return y, task, reason


def _check_classes(name: str, y: np.ndarray, classes: np.ndarray, given: Sequence[tuple],
                   parts: Sequence[tuple], num_train: int) -> None:
  """Refuses a given split's class that the training rows (the first `num_train` of the
  class ids `y`) lack, and fewer than 2 classes."""
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


def _class_names(name: str, classes: np.ndarray, class_names: Sequence | None) -> tuple:
  """`Dataset.class_names`: those given (one per class), else each class's label."""
  num_classes = len(classes)
  names = tuple(_class_name(c) for c in classes)
  if class_names is not None:
    if len(class_names) != num_classes:
      raise ConfigError(
          f"{len(class_names)} class names given for {name!r}, which has {num_classes} "
          f"classes ({', '.join(repr(n) for n in names[:10])}"
          f"{', ...' if num_classes > 10 else ''})")
    names = tuple(class_names)
  return names


def _targets(name: str, y: np.ndarray, class_names: Sequence | None
             ) -> tuple[np.ndarray, int, tuple]:
  """A regression's [N] float32 targets, its 0 classes and () class names."""
  if class_names is not None:
    raise ConfigError(f"class_names apply to classification, {name!r} is regression")
  with np.errstate(over="ignore"):
    y, num_classes, names = y.astype(np.float32), 0, ()
  if not np.isfinite(y).all():
    raise ConfigError(f"labels of {name!r} exceed the float32 range")
  return y, num_classes, names
