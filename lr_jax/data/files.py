"""Reading .csv and .npz data files: headers, columns, labels, and archives without pickle."""

from __future__ import annotations

import collections
import csv
import os
import zipfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.config import DataConfig
from lr_jax.errors import ConfigError
from lr_jax.io import UNREADABLE


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
