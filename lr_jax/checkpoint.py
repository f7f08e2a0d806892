"""Sweep checkpoints: one `.npz` of named arrays, written atomically, tagged with a fingerprint.

Why not Orbax (which Flax brings): a sweep's state is a few megabytes of host arrays that one
process writes. A single `.npz` written to a temporary file and renamed into place is atomic
on POSIX, bit-exact, readable with numpy alone, and costs no start-up time; Orbax's
directory-per-step layout, async commit protocol and tensorstore back end solve problems
(sharded multi-terabyte state written by many hosts) that a sweep does not have.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import jax
import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.results import atomic_write

_FINGERPRINT = "__fingerprint__"


def fingerprint(*parts) -> str:
  """A stable hash of JSON-able configuration and numpy arrays (e.g. the data set)."""
  h = hashlib.sha256()
  for part in parts:
    if isinstance(part, np.ndarray):
      h.update(str((part.dtype, part.shape)).encode())
      h.update(np.ascontiguousarray(part).tobytes())
    else:
      h.update(json.dumps(part, sort_keys=True, default=str).encode())
  return h.hexdigest()


def flatten(prefix: str, tree) -> dict[str, np.ndarray]:
  """The leaves of a pytree as `{prefix/i: array}`, in `tree_flatten` order."""
  return {f"{prefix}/{i}": np.asarray(leaf)
          for i, leaf in enumerate(jax.tree_util.tree_leaves(tree))}


def unflatten(prefix: str, arrays: dict[str, np.ndarray], like):
  """Rebuilds a pytree shaped like `like` from `flatten(prefix, ...)` output."""
  leaves, treedef = jax.tree_util.tree_flatten(like)
  restored = []
  for i, ref in enumerate(leaves):
    a = arrays[f"{prefix}/{i}"]
    if a.shape != tuple(ref.shape) or a.dtype != ref.dtype:
      raise ConfigError(f"checkpoint array {prefix}/{i} has shape {a.shape} {a.dtype}, expected "
                        f"{tuple(ref.shape)} {ref.dtype}; delete the checkpoint or run without --resume")
    restored.append(a)
  return jax.tree_util.tree_unflatten(treedef, restored)


def save(path: str, arrays: dict[str, np.ndarray], tag: str) -> None:
  """Writes `arrays` and the fingerprint `tag` to `path` atomically (temp file + rename)."""
  buf = io.BytesIO()
  np.savez(buf, **arrays, **{_FINGERPRINT: np.array(tag)})
  atomic_write(path, buf.getvalue())


def load(path: str, tag: str) -> dict[str, np.ndarray] | None:
  """Reads a checkpoint; None if there is none.

  Raises:
    ConfigError: the file is corrupted or was written by a different configuration.
  """
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
    raise ConfigError(f"checkpoint {path} is corrupted ({type(e).__name__}: {e}); delete it or "
                      "run without --resume") from None
  found = arrays.pop(_FINGERPRINT, None)
  if found is None or str(found) != tag:
    raise ConfigError(f"checkpoint {path} was written by a different configuration (data, flags "
                      "or grid); resume with the same flags, or delete it to start afresh")
  return arrays
