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
from lr_jax.data.folders import is_hidden


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
  changed under the same name is told apart (even from a stale in-memory copy); a folder of
  images, the hash of each (non-hidden) file's path in it, size and bytes.

  Raises:
    ConfigError: a named file or folder can no longer be read.
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
    folder = os.path.isdir(path)
    try:
      (_hash_folder if folder else _hash_file)(h, path)
    except OSError as e:
      raise _cannot_read(path, "image folder" if folder else what, e) from None
    out[field] = h.hexdigest()[:16]
  return out


def _hash_file(h, path: str) -> None:
  with open(path, "rb") as f:
    while block := f.read(1 << 20):
      h.update(block)


def _hash_folder(h, path: str) -> None:
  """Adds every non-hidden file under `path` to `h`: its relative path, size and bytes, in a
  fixed order, so that a renamed, added, removed or rewritten image changes the hash."""
  def fail(e: OSError):
    raise e

  # Linked folders are followed, as the reader follows them.
  for root, dirs, files in os.walk(path, onerror=fail, followlinks=True):
    dirs[:] = sorted(d for d in dirs if not is_hidden(d))
    for name in sorted(f for f in files if not is_hidden(f)):
      file = os.path.join(root, name)
      relative = os.path.relpath(file, path).replace(os.sep, "/")
      h.update(f"{relative}\0{os.path.getsize(file)}\0".encode())
      _hash_file(h, file)
