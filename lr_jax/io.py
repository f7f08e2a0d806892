"""Atomic file writes, JSON-able values, and the errnos that mean a file cannot be read."""

from __future__ import annotations

import errno
import math
import os
import tempfile
from collections.abc import Mapping

import numpy as np

# The errors of a file that cannot be read, whatever it holds; other OSErrors of a reader
# (e.g. EINVAL, a seek to a corrupted offset) say the content is malformed.
UNREADABLE = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.EISDIR, errno.ENOENT,
                        errno.ENXIO, errno.ENODEV, errno.ESTALE})


def jsonable(x):
  """`x` with numpy scalars and arrays as Python values and non-finite floats as None (JSON null)."""
  if isinstance(x, Mapping):  # A dict, or a typed record read as one (`results.Aggregate`).
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, np.ndarray)):
    return [jsonable(v) for v in x]
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temporary file and a rename, so a kill never leaves half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def json_differences(old, new, *, sort_keys: bool = True, into_lists: bool = True, absent=None,
                     prefix: str = "") -> list[tuple[str, object, object]]:
  """Where two JSON values differ: `(path, old leaf, new leaf)` for each leaf that differs.

  Dicts are walked key by key over the keys of both: sorted by `str`, or with `sort_keys=False`
  `new`'s keys and then the rest of `old`'s; a key one side lacks reads as `absent`. With
  `into_lists`, two lists of one length that hold a dict or a list are walked item by item.
  Anything else is a leaf, compared with `==`. A path is dotted (`a.b`, `a[0].b`); the whole
  value's is `prefix` ("").

  The differences an output folder (`lr_jax.outputs`) and a checkpoint (`lr_jax.checkpoint`)
  name: the folder walks its identities with the defaults (a key absent is None); a checkpoint
  compares its configurations' flattened leaves in the order of the new one, lists whole, and
  an absent key as its own `absent`.
  """
  if isinstance(old, dict) and isinstance(new, dict):
    keys = sorted(set(old) | set(new), key=str) if sort_keys else dict.fromkeys([*new, *old])
    out = []
    for k in keys:
      out += json_differences(old.get(k, absent), new.get(k, absent), sort_keys=sort_keys,
                              into_lists=into_lists, absent=absent,
                              prefix=f"{prefix}.{k}" if prefix else str(k))
    return out
  if (into_lists and isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
      and any(isinstance(v, (dict, list)) for v in old)):
    out = []
    for i, (a, b) in enumerate(zip(old, new)):
      out += json_differences(a, b, sort_keys=sort_keys, into_lists=into_lists, absent=absent,
                              prefix=f"{prefix}[{i}]")
    return out
  return [] if old == new else [(prefix, old, new)]
