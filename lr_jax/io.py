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
