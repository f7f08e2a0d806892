"""The files a model predicts on (.csv, .npz), checked against its features; its predictions."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.export.folder import _one_line
from lr_jax.io import UNREADABLE
from lr_jax.trained import TrainedModel, non_finite


def read_features(path: str, model: TrainedModel) -> tuple[np.ndarray, np.ndarray | None]:
  """The raw features of a .csv or .npz file for `model`, its columns checked against the model's.

  A .csv file needs a header with the model's feature columns, in any order (matched by name),
  and may carry one more column, the training file's label column; a .npz file an array `x`
  of the model's feature width (and maybe `y`).

  Returns:
    ([N, D] float32 features in the model's order, [N] labels as read or None).

  Raises:
    ConfigError: a missing or unreadable file, or columns that differ from the model's (the
      message names the missing and the unexpected ones).
  """
  from lr_jax import data as data_lib  # Late, as elsewhere here: one file check for all readers.
  # A directory, a missing or an empty file: refused as every data file is.
  ext = data_lib._check_file(path)
  if ext not in (".csv", ".npz"):
    raise ConfigError(f"cannot read {path!r}: give a .csv or .npz file")
  width = int(model.mean.shape[0])
  if ext == ".npz":
    return _npz_features(path, model, width)
  header, body = _read_csv(path)
  names = list(model.feature_names) or [f"x{i}" for i in range(width)]
  label = _label_column(path, model, header, names, width)
  if not body:
    raise ConfigError(f"{path!r} has a header but no data rows")
  cols = [header.index(c) for c in names]
  x = _csv_values(path, header, body, cols, width)
  y = np.array([row[header.index(label)].strip() for _, row in body]) if label else None
  return model._features(x), y


def _npz_features(path: str, model: TrainedModel,
                  width: int) -> tuple[np.ndarray, np.ndarray | None]:
  """`read_features` of a .npz file: its `x`, checked to be `width` finite numbers a row."""
  x, y = _read_npz_features(path)
  if x.ndim < 2 or math.prod(x.shape[1:]) != width:
    raise ConfigError(f"x of {path!r} has shape {x.shape}; the model takes {width} features")
  if x.dtype.kind not in "biuf":
    raise ConfigError(f"x of {path!r} has dtype {x.dtype}; features must be numbers")
  with np.errstate(over="ignore"):
    flat = x.reshape(len(x), width).astype(np.float32)
  bad = non_finite(flat)
  if bad is not None:
    count, i, j = bad
    column = f"column {j + 1}" + (f" ({model.feature_names[j]!r})"
                                   if len(model.feature_names) == width else "")
    index = f"x[{i}, {j}]" if x.ndim == 2 else f"x[{i}].flat[{j}]"
    value = float(x.reshape(len(x), width)[i, j])
    what = ("NaN" if math.isnan(value) else f"{value}" if math.isinf(value)
            else f"{value:g}, beyond float32's range,")
    raise ConfigError(f"x of {path!r} holds {what} at row {i + 1}, {column}, counted from 1 "
                      f"({index}); predictions need finite features ({count} value(s) in all "
                      "are not)")
  return model._features(x), y


def _read_csv(path: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
  """A .csv file's header (each name stripped, each once) and its non-blank rows, each with
  its line number."""
  from lr_jax import data as data_lib
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = [h.strip() for h in next(reader, [])]
      data_lib.check_header(header, path)  # Columns are matched by name: each once.
      body = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
  except UnicodeDecodeError:
    raise ConfigError(f"data file {path!r} is not UTF-8 text; a .csv file must be") from None
  except csv.Error as e:
    raise ConfigError(f"data file {path!r} is not valid CSV: {_one_line(e)}") from None
  except OSError as e:
    raise _read_error(path, e, ".csv file") from None
  return header, body


def _label_column(path: str, model: TrainedModel, header: list[str], names: list[str],
                  width: int) -> str | None:
  """The .csv file's label column (its one column beside the model's features), or None; any
  other difference from the model's feature columns is refused."""
  missing = [c for c in names if c not in header]
  extra = [c for c in header if c not in names]
  label = model.card.get("label_column")
  if len(extra) == 1 and not missing and label in (None, extra[0]):
    label = extra[0]  # The labels, as in the training file: not a feature.
  elif missing or extra:
    more = lambda names: ", ".join(map(repr, names[:5])) + (" and more" if len(names) > 5 else "")
    what = ([f"missing {more(missing)}"] if missing else []) + (
        [f"unexpected {more(extra)}"] if extra else [])
    raise ConfigError(f"the columns of {path!r} do not match the model's {width} features: "
                      f"{'; '.join(what)}")
  else:
    label = None
  return label


def _csv_values(path: str, header: list[str], body: list, cols: list[int],
                width: int) -> np.ndarray:
  """The [N, D] float64 features of a .csv file's rows (`cols`: each feature's column),
  checked to be numbers, finite as float32."""
  x = np.empty((len(body), width), np.float64)
  for i, (line, row) in enumerate(body):
    if len(row) != len(header):
      raise ConfigError(f"line {line} of {path!r} has {len(row)} columns, the header {len(header)}")
    for j, c in enumerate(cols):
      try:
        x[i, j] = float(row[c])
      except ValueError:
        raise ConfigError(f"non-numeric value {row[c].strip()!r} in column {header[c]!r}, line "
                          f"{line} of {path!r}") from None
  with np.errstate(over="ignore"):
    bad = non_finite(x.astype(np.float32))  # As the model reads them: float32.
  if bad is not None:
    count, i, j = bad
    line, row = body[i]
    raise ConfigError(f"{_finite_problem(x[i, j])} {row[cols[j]].strip()!r} in column "
                      f"{header[cols[j]]!r}, data row {i + 1} (line {line}) of {path!r}; "
                      f"predictions need finite features ({count} value(s) in all are not)")
  return x


_NPZ_FEATURES_HOW = "save one with np.savez(path, x=features)"


def _read_error(path: str, e: OSError, kind: str) -> ConfigError:
  """'cannot read' for a file that cannot be read (`io.UNREADABLE`); else a malformed one."""
  from lr_jax import data as data_lib
  if e.errno in UNREADABLE:
    return ConfigError(f"cannot read {path!r}: {e.strerror or type(e).__name__}")
  return ConfigError(f"data file {path!r} is not a valid {kind} "
                     f"({e.strerror or data_lib._not_pickle(e)})")


def _read_npz_features(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  """The arrays `x` and `y` (None if absent) of a predict .npz; nothing is ever unpickled.

  Decided by the magic bytes before `np.load`: to numpy, a file that is neither a zip nor a
  .npy is a pickle, and its error advises loading it unsafely.
  """
  import zipfile
  from lr_jax import data as data_lib
  invalid = lambda why: ConfigError(
      f"data file {path!r} is not a valid .npz archive ({why}); {_NPZ_FEATURES_HOW}")
  try:
    with open(path, "rb") as f:
      head = f.read(len(data_lib._NPY_MAGIC))
    if head.startswith(data_lib._NPY_MAGIC):
      raise ConfigError(f"data file {path!r} holds a single array, not a .npz archive; "
                        f"{_NPZ_FEATURES_HOW}")
    if not head.startswith(data_lib._ZIP_MAGICS):
      raise invalid("not a zip file")
    with np.load(path, allow_pickle=False) as archive:
      if "x" not in archive.files:
        raise ConfigError(f"{path!r} has no array 'x'; arrays: "
                          f"{', '.join(archive.files) or 'none'}")
      arrays = {}
      for key in ("x", "y"):
        if key not in archive.files:
          continue
        try:
          arrays[key] = archive[key]
        except ValueError as e:
          if "pickle" not in str(e):
            raise
          raise ConfigError(f"array {key!r} of {path!r} holds Python objects, which are not "
                            "read; save it as numbers (or, for y, strings)") from None
        if not isinstance(arrays[key], np.ndarray):  # numpy hands back a non-.npy member's bytes.
          raise invalid(f"its {key!r} is not a .npy array")
  except ConfigError:
    raise
  except OSError as e:
    raise _read_error(path, e, ".npz archive") from None
  except (ValueError, EOFError, zipfile.BadZipFile) as e:
    raise invalid(data_lib._not_pickle(e)) from None
  return arrays["x"], arrays.get("y")


def _finite_problem(value: float) -> str:
  """What is wrong with a value that is not finite as float32."""
  if math.isnan(value):
    return "NaN"
  return "infinite value" if math.isinf(value) else "value beyond float32's range"


def predictions_csv(model: TrainedModel, x, files: Sequence[str] | None = None) -> str:
  """One line per row of `x`: the prediction (a class label as in the data, or a value) and,
  for classification, each class's probability (`p_<label>`).

  `files`, one name per row (the images `x` was read from), adds a first column `file`."""
  if files is not None and len(files) != len(x):
    raise ValueError(f"{len(files)} file names for {len(x)} rows")
  head = [] if files is None else ["file"]
  lead = (lambda i: []) if files is None else (lambda i: [files[i]])
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  if model.task == "classification":
    proba = model.predict_proba(x)
    labels = np.asarray(model.class_names)[np.argmax(proba, axis=-1)]
    writer.writerow(head + ["prediction"] + [f"p_{c}" for c in model.class_names])
    for i, (label, p) in enumerate(zip(labels.tolist(), proba)):
      writer.writerow(lead(i) + [label] + [f"{float(v):.6g}" for v in p])
  else:
    writer.writerow(head + ["prediction"])
    for i, v in enumerate(model.predict(x)):
      writer.writerow(lead(i) + [f"{float(v):.9g}"])
  return buf.getvalue()

