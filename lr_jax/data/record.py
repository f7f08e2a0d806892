"""What a run records of its data: the configuration as JSON, hashes of the content."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from lr_jax.config import DataConfig
from lr_jax.data.builtin import DATASETS
from lr_jax.data.dataset import Dataset
from lr_jax.data.files import _cannot_read


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
