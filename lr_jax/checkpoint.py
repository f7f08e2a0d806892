"""Sweep checkpoints: one `.npz` of named arrays, written atomically, with the configuration
that wrote it (as JSON and as a fingerprint), so a resume is refused naming what differs.

Why not Orbax (which Flax brings): a sweep's state is a few megabytes of host arrays that one
process writes. A single `.npz` written to a temporary file and renamed into place is atomic
on POSIX, bit-exact, readable with numpy alone, and costs no start-up time; Orbax's
directory-per-step layout, async commit protocol and tensorstore back end solve problems
(sharded multi-terabyte state written by many hosts) that a sweep does not have.

`fault_point` is for tests only: it lets them kill a run at an exact point (`$LR_JAX_FAULT`).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import signal
import zipfile

import jax
import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.io import UNREADABLE, atomic_write, json_differences

_FINGERPRINT = "__fingerprint__"
_CONFIG = "__config__"

FAULT_ENV = "LR_JAX_FAULT"
FAULT_POINTS = ("before_compile", "after_compile", "in_checkpoint_write", "after_checkpoint")
_fault_passes: collections.Counter = collections.Counter()


def fault_point(point: str) -> None:
  """Test-only: signals this process at a named point when `$LR_JAX_FAULT` asks for it.

  `LR_JAX_FAULT=<point>[:<k>[:<signal>]]` makes the k-th pass (default 1st) of this process
  through `point` send itself `signal` (default SIGKILL, e.g. `SIGINT` for a Ctrl-C), so a test
  interrupts a run at an exact place instead of racing a timer. Points: `before_compile` (a
  group is about to run its first compiled call, whose program may be building in a thread
  already; nothing of it is on disk), `after_compile`
  (its first compiled call returned; no checkpoint written yet), `in_checkpoint_write` (the new
  checkpoint is complete under a temporary name, not yet renamed over the previous one),
  `after_checkpoint` (a checkpoint is in place). Unset, as in every real run, this does nothing.

  Args:
    point: one of `FAULT_POINTS`.

  Raises:
    ConfigError: `$LR_JAX_FAULT` is malformed.
  """
  spec = os.environ.get(FAULT_ENV)
  if not spec:
    return
  name, _, rest = spec.partition(":")
  count, _, sig = rest.partition(":")
  try:
    k, signum = int(count or 1), signal.Signals[sig or "SIGKILL"]
  except (ValueError, KeyError):
    k = signum = None
  if name not in FAULT_POINTS or k is None or k < 1:
    raise ConfigError(f"{FAULT_ENV}={spec!r} is malformed; expected <point>[:<k>[:<signal>]] "
                      f"with point one of {', '.join(FAULT_POINTS)}")
  if point != name:
    return
  _fault_passes[point] += 1
  if _fault_passes[point] == k:
    os.kill(os.getpid(), signum)


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


def save(path: str, arrays: dict[str, np.ndarray], config: dict) -> None:
  """Writes `arrays` and the configuration they belong to to `path`, atomically.

  Args:
    path: the checkpoint file.
    arrays: the state, e.g. from `flatten`.
    config: a JSON-able description of what produced the state (flags, grid, a fingerprint
      of the data); `load` compares it with the resuming run's and names the fields that differ.
  """
  buf = io.BytesIO()
  np.savez(buf, **arrays, **{_FINGERPRINT: np.array(fingerprint(config)),
                             _CONFIG: np.array(_canonical(config))})
  # Staged whole under a temporary name, then renamed over the previous checkpoint: a kill at
  # any point leaves one complete checkpoint (`clear_checkpoints` removes a stale `.tmp-`).
  staged = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))
  try:
    atomic_write(staged, buf.getvalue())  # Removes its own partial file if the write fails.
  except OSError as e:  # A full disk, a quota, a folder made read-only: one line, exit 2.
    kept = ("the previous checkpoint there is unchanged, and --resume continues from it"
            if os.path.exists(path) else "no checkpoint was written")
    raise ConfigError(f"could not write checkpoint {path} ({e.strerror or type(e).__name__}); "
                      f"{kept}") from None
  fault_point("in_checkpoint_write")
  os.replace(staged, path)
  fault_point("after_checkpoint")


def load(path: str, config: dict) -> dict[str, np.ndarray] | None:
  """Reads a checkpoint written by `save` with the same `config`; None if there is none.

  Raises:
    ConfigError: the file is corrupted, or was written by a different configuration (the
      one-line message names the fields that differ, with both values).
  """
  if not os.path.exists(path):
    return None
  try:
    arrays = _read(path)
  except OSError as e:
    if e.errno not in UNREADABLE:  # Malformed content (numpy's own, a seek to a bad offset).
      raise _corrupted(path, e) from None
    raise ConfigError(f"cannot read checkpoint {path} ({e.strerror or type(e).__name__}); make it "
                      "readable, or delete it or run without --resume") from None
  except (zipfile.BadZipFile, ValueError, EOFError, KeyError) as e:
    raise _corrupted(path, e) from None
  found, written = arrays.pop(_FINGERPRINT), json.loads(str(arrays.pop(_CONFIG)))
  if str(found) != fingerprint(config):
    now = json.loads(_canonical(config))
    fields = differences(written, now)
    changed = _changed_data(written, now)
    rest = [f for f in fields if not f.startswith(("data.content", "data.fingerprint"))]
    if changed and not any(f.startswith("data.") for f in rest):
      # The data itself changed, not a data flag (which would explain it): say so first.
      also = f"; it also differs in {', '.join(rest[:3])}" + (
          f" and {len(rest) - 3} more" if len(rest) > 3 else "") if rest else ""
      raise ConfigError(f"checkpoint {path} was written with other data: {changed} changed "
                        f"since{also}; resume with the data it was written with, or delete "
                        "it to start afresh")
    what = (": " + ", ".join(fields[:3]) + (f" and {len(fields) - 3} more" if len(fields) > 3 else "")
            if fields else " (data, flags or grid)")
    raise ConfigError(f"checkpoint {path} was written by a different configuration{what}; "
                      "resume with the same flags, or delete it to start afresh")
  return arrays


_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


class _Invalid(ValueError):
  """Why a file is not a checkpoint `save` wrote."""


def _read(path: str) -> dict[str, np.ndarray]:
  """The arrays of a checkpoint file, never unpickling anything."""
  with open(path, "rb") as f:
    head = f.read(4)
  # Checked first: numpy reads a file that is not a zip (or a .npy) as a pickle, and its error
  # advises loading it unsafely.
  if head not in _ZIP_MAGICS:
    raise _Invalid("not a zip archive")
  with np.load(path, allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
  for k, v in arrays.items():
    if not isinstance(v, np.ndarray):  # numpy hands back a non-.npy member's raw bytes.
      raise _Invalid(f"its entry {k!r} is not a .npy array")
  if _FINGERPRINT not in arrays or _CONFIG not in arrays:
    raise _Invalid("it has no configuration record")
  try:
    record = json.loads(str(arrays[_CONFIG]))
  except ValueError:
    record = None
  if not isinstance(record, dict):
    raise _Invalid("its configuration record is not a JSON object")
  return arrays


def _corrupted(path: str, e: BaseException) -> ConfigError:
  text = " ".join(str(e).split())
  if "pickle" in text.lower():  # Never pass on numpy's advice to unpickle the file.
    text = "it holds pickled Python objects, which are never loaded"
  elif not isinstance(e, _Invalid):
    text = f"{type(e).__name__}: {text}"
  return ConfigError(f"checkpoint {path} is corrupted: not a valid lr_jax checkpoint ({text}); "
                     "delete it or run without --resume")


def _changed_data(old: dict, new: dict) -> str:
  """Which data changed between two configurations (`data.content`, see
  `lr_jax.data.content_fingerprint`), e.g. "the content of 'train.csv'"; "" if none did."""
  was, now = old.get("data", {}), new.get("data", {})
  if not isinstance(was, dict) or not isinstance(now, dict):
    return ""
  a, b = was.get("content"), now.get("content")
  if not isinstance(a, dict) or not isinstance(b, dict) or a == b or set(a) != set(b):
    return ""
  if any(was.get(k) != now.get(k) for k in b if k != "arrays"):
    return ""  # Another file, not the same file changed: the fields that differ say which.
  files = [repr(now.get(k)) for k in b if k != "arrays" and a[k] != b[k]]
  return f"the content of {' and '.join(files)}" if files else "the data set's arrays"


def differences(old: dict, new: dict) -> list[str]:
  """The leaves of two nested JSON dicts that differ, as `a.b.c (checkpoint X, now Y)`."""
  return [f"{k} (checkpoint {_short(a)}, now {_short(b)})" for k, a, b in json_differences(
      _leaves(old), _leaves(new), sort_keys=False, into_lists=False, absent=_MISSING)]


_MISSING = object()


def _canonical(config: dict) -> str:
  return json.dumps(config, sort_keys=True, default=str)


def _leaves(tree, prefix: str = "") -> dict[str, object]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def _short(value, width: int = 60) -> str:
  text = "none" if value is _MISSING else json.dumps(value)
  return text if len(text) <= width else text[:width - 3] + "..."
