"""A run's output folder: checked before anything compiles, locked, and committed as one unit.

Every script (and `lr_jax.write_outputs`) holds its `--out` through an `OutputFolder`:

1. `open()` creates the folder and writes and removes a probe file, so a bad `--out` (an
   existing file, a read-only place) is refused in one line before any training, not after it.
2. It takes an exclusive `fcntl.flock` on `<out>/.lr_jax.lock` for the whole run. The kernel
   releases it when the process ends, however it ends, so there is no stale lock to time out and
   no heuristic: a second writer is refused at once, while the first still runs. A folder a
   run writes besides (its checkpoints) is held the same way by a `FolderLock`, and
   `--overwrite` never takes either from a live process.
3. It compares the configuration stored with the folder's results (the manifest
   `.lr_jax-run.json`; `summary.json`'s "config" for folders written before manifests existed)
   with this run's: the same configuration replaces its own results without asking (so a
   command stays re-runnable), a different one needs `overwrite`.
4. `staging()` yields a fresh folder inside `<out>`; the caller writes every file there, and
   only when all of them are written does the commit move them into place.

Why stage-then-rename rather than a manifest that readers check: the readers of `results.csv`
are people, pandas and spreadsheets, and none of them would check a manifest, so the files in
`<out>` themselves must always be one run's complete set. A folder cannot be renamed over
`<out>` (it holds the lock, the checkpoints, and what the user put there), so each file is
renamed on its own; to make the few renames one step, the staging folder is marked complete
(`.complete`, fsynced) before the first rename, and the next `open()` finishes the renames of a
complete staging folder that a kill interrupted (and deletes an incomplete one). A failure while
writing (a full disk) happens before the mark, so the previous set stays untouched. SIGINT is
held back during the renames themselves.
"""

from __future__ import annotations

from absl import logging
import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import uuid
import zipfile

import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.io import atomic_write, jsonable

LOCK_NAME = ".lr_jax.lock"
MANIFEST_NAME = ".lr_jax-run.json"
STAGING_PREFIX = ".staging-"
_COMPLETE = ".complete"
# Files whose presence means a folder holds some run's results (checked when there is no
# manifest, i.e. for folders written before manifests existed).
RESULT_NAMES = ("results.csv", "history.npz", "summary.json", "report.md", "finder.json")


def _problem(e: OSError) -> str:
  return e.strerror or type(e).__name__


def check_writable(path: str, flag: str = "--out") -> list[str]:
  """Creates folder `path` (and its parents) and writes and removes a probe file in it.

  Args:
    path: the folder.
    flag: how the user named it, for the message (`--out`, `--checkpoint_dir`, `out_dir`).

  Returns:
    The folders this call created, outermost first (so a refused run can remove them).

  Raises:
    ConfigError: one line naming `path` and the problem (an empty `path` too: it would be the
      working directory without a word).
  """
  check_given(path, flag)
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"{flag} {path} is an existing file, not a folder; give a folder path")
  missing = []
  parent = path
  while not os.path.exists(parent):
    missing.append(parent)
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; give a folder path")
  created = []
  try:
    for folder in reversed(missing):
      os.mkdir(folder)
      created.append(folder)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
    try:
      os.write(fd, b"probe")
    finally:
      os.close(fd)
      os.unlink(probe)
  except OSError as e:
    remove_empty(created)
    raise ConfigError(f"{flag} {path} is not writable ({_problem(e)}); give a folder you can "
                      "write to") from None
  return created


def check_given(path, flag: str = "--out") -> None:
  """Raises `ConfigError` for an empty (or blank) folder path, which would mean the working
  directory: a run would write there without a word."""
  if path is None or not os.fspath(path).strip():
    raise ConfigError(f"{flag} is empty, which would write into the working directory; give a "
                      f"folder path (e.g. {flag}=runs/mine), or drop {flag}")


def remove_empty(folders: list[str]) -> None:
  """Removes the given folders, innermost first, where they are empty."""
  for folder in reversed(folders):
    try:
      os.rmdir(folder)
    except OSError:
      return


def _canonical(x):
  """`x` as it reads back from JSON (tuples as lists, NaN as null), for comparisons."""
  return json.loads(json.dumps(jsonable(x), sort_keys=True))


def _differences(old, new, prefix: str = "") -> list[str]:
  """Dotted paths of the leaves where two JSON values differ."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new), key=str):
      out += _differences(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
    return out
  if (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
      and any(isinstance(v, (dict, list)) for v in old)):
    out = []
    for i, (a, b) in enumerate(zip(old, new)):
      out += _differences(a, b, f"{prefix}[{i}]")
    return out
  return [] if old == new else [prefix or "(all)"]


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


class OutputFolder:
  """One run's hold on its output folder (see the module docstring).

  Use as a context manager, or call `open()` and `close()`:

      with OutputFolder(out, identity={"kind": "sweep", "config": cfg}) as folder:
        ...                                  # train: nothing compiled before open() returned
        with folder.staging() as tmp:
          write_everything(tmp)              # committed into `out` as one unit on success
  """

  def __init__(self, path: str, *, identity: dict, overwrite: bool = False, flag: str = "--out",
               overwrite_hint: str = "--overwrite"):
    """Describes the hold; nothing is touched until `open()`.

    Args:
      path: the output folder.
      identity: JSON-able description of what this run computes (its kind and configuration,
        not how it runs); results with another identity are only replaced with `overwrite`.
      overwrite: replace a different run's results.
      flag: how the user named `path`, for messages.
      overwrite_hint: how the user asks to overwrite, for messages.
    """
    self.given = path  # As given: "" is refused by open(), not taken for the working directory.
    self.path = os.path.abspath(path) if path else path
    self.identity = _canonical(identity)
    self.overwrite = overwrite
    self.flag = flag
    self.overwrite_hint = overwrite_hint
    self._fd = None
    self._created: list[str] = []

  # The hold: open / close.

  def open(self) -> "OutputFolder":
    """Checks the folder is writable, locks it, recovers an interrupted commit, compares runs.

    Raises:
      ConfigError: the folder cannot be written, another run holds it, or it holds a different
        run's results and `overwrite` is off. Nothing is left behind.
    """
    check_given(self.given, self.flag)
    self._created = check_writable(self.path, self.flag)
    try:
      self._lock()
      self._recover()
      self._check_previous()
    except BaseException:
      self.close(remove_if_empty=True)
      raise
    return self

  def close(self, remove_if_empty: bool = False) -> None:
    """Releases the lock; with `remove_if_empty`, removes the folders `open()` created if empty.

    A `FolderLock` this process holds inside the folder (the run's checkpoints) ends with it.
    """
    for lock in list(_FOLDER_LOCKS):
      if self.path and os.path.commonpath([lock.path, self.path]) == self.path:
        lock.close()
    if self._fd is not None:
      if remove_if_empty and self._created:
        # Safe while we hold the lock: a waiting opener re-checks the inode it locked.
        with contextlib.suppress(OSError):
          os.unlink(os.path.join(self.path, LOCK_NAME))
      os.close(self._fd)  # Releases the flock.
      self._fd = None
    if remove_if_empty:
      remove_empty(self._created)

  def __enter__(self) -> "OutputFolder":
    return self.open()

  def __exit__(self, kind, value, tb) -> None:
    self.close(remove_if_empty=kind is not None)

  def _lock(self) -> None:
    self._fd = _take_lock(os.path.join(self.path, LOCK_NAME), self.flag, self.path)

  def _recover(self) -> None:
    """Finishes a commit a kill interrupted; deletes staging folders that never completed."""
    for name in sorted(os.listdir(self.path)):
      staging = os.path.join(self.path, name)
      if not (name.startswith(STAGING_PREFIX) and os.path.isdir(staging)):
        continue
      marker = _read_json(os.path.join(staging, _COMPLETE))
      if marker is not None:
        self._roll_forward(staging, marker)
      else:
        shutil.rmtree(staging, ignore_errors=True)

  def previous(self) -> dict | None:
    """The identity of the results the folder holds now; None if it holds none."""
    manifest = _read_json(os.path.join(self.path, MANIFEST_NAME))
    if isinstance(manifest, dict) and "identity" in manifest:
      return manifest["identity"]
    if not any(os.path.exists(os.path.join(self.path, n)) for n in RESULT_NAMES):
      return None
    # Written before manifests: a sweep's summary.json names its configuration.
    summary = _read_json(os.path.join(self.path, "summary.json"))
    if isinstance(summary, dict) and "config" in summary:
      return {"kind": "sweep", "config": summary["config"]}
    return {"kind": "unknown"}

  def _check_previous(self) -> None:
    old = self.previous()
    if old is None or old == self.identity or self.overwrite:
      return
    if old.get("kind") != self.identity.get("kind"):
      what = (f"the results of a different run (a {old.get('kind')}; this is a "
              f"{self.identity.get('kind')})")
    else:
      fields = [f.removeprefix("config.") for f in _differences(old, self.identity)]
      shown = ", ".join(fields[:4]) + (f" and {len(fields) - 4} more" if len(fields) > 4 else "")
      what = f"the results of a different {old.get('kind')} (differs in {shown})"
    raise ConfigError(f"{self.flag} {self.path} holds {what}; pass {self.overwrite_hint} to "
                      f"replace them, or give another {self.flag}")

  # The commit.

  @contextlib.contextmanager
  def staging(self):
    """Yields a fresh folder to write every output into; on success commits it into place.

    Raises:
      ConfigError: writing failed (e.g. the disk is full); the previous results are unchanged.
    """
    if self._fd is None:
      raise RuntimeError("OutputFolder.staging() before open()")
    staging = tempfile.mkdtemp(dir=self.path, prefix=STAGING_PREFIX)
    try:
      yield staging
      files = _files_under(staging)
      marker = {"identity": self.identity, "files": files, "run": uuid.uuid4().hex}
      _write_synced(os.path.join(staging, _COMPLETE), json.dumps(marker).encode())
    except BaseException as e:
      shutil.rmtree(staging, ignore_errors=True)
      if isinstance(e, OSError):
        raise ConfigError(f"could not write the results into {self.path} ({_problem(e)}); the "
                          "previous results there are unchanged") from None
      raise
    with _sigint_held():
      self._roll_forward(staging, marker)

  def _roll_forward(self, staging: str, marker: dict) -> None:
    """Moves a complete staging folder's files into place, then the manifest; idempotent."""
    for rel in marker["files"]:
      src, dst = os.path.join(staging, rel), os.path.join(self.path, rel)
      if os.path.exists(src):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.replace(src, dst)
    old = _read_json(os.path.join(self.path, MANIFEST_NAME))
    if isinstance(old, dict):  # A replaced run's files this run did not write would mislead.
      for rel in set(old.get("files", ())) - set(marker["files"]):
        with contextlib.suppress(OSError):
          os.unlink(os.path.join(self.path, rel))
    manifest = {"identity": marker["identity"], "files": marker["files"], "run": marker["run"]}
    atomic_write(os.path.join(self.path, MANIFEST_NAME),
                 (json.dumps(manifest, indent=2) + "\n").encode())
    shutil.rmtree(staging, ignore_errors=True)


def _take_lock(lock_path: str, flag: str, shown: str, *, directory: bool = False,
               record: bool = True) -> int:
  """Takes the exclusive `flock` of a run on `lock_path`; returns its file descriptor.

  A lock file (created if missing) gets this process's id (unless not `record`), which a
  refused run names; with `directory`, `lock_path` is a folder, locked itself (nothing is
  written into it), and the holder is read from the kernel's table of locks.

  Raises:
    ConfigError: another process holds it (even with `--overwrite`: a live run is never
      taken over), or it cannot be opened or locked.
  """
  while True:
    try:
      if directory:
        fd = os.open(lock_path, os.O_RDONLY | os.O_DIRECTORY)
      else:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
      if directory and isinstance(e, FileNotFoundError):
        check_writable(lock_path, flag)  # Removed by a holder that just finished with it.
        continue
      what = "open it" if directory else "create its lock file"
      raise ConfigError(f"{flag} {shown}: cannot {what} ({_problem(e)}); give a folder you can "
                        "write to") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if directory and e.errno in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP):
        # NFS imitates flock with byte-range locks, which a folder (opened read-only) cannot
        # take: go on unlocked rather than refuse every checkpointed run there.
        logging.warning("%s %s: this file system cannot lock a folder (%s); a second run on "
                        "it is not refused", flag, shown, _problem(e))
        return fd
      holder = _lock_holder(fd) if directory else _read_pid(lock_path)
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise ConfigError(f"{flag} {shown}: cannot lock it ({_problem(e)})") from None
      who = f" (process {holder})" if holder else ""
      raise ConfigError(f"{flag} {shown} is in use by another run{who}; wait for it to "
                        f"finish, or give another {flag}") from None
    # The file we locked may have been unlinked by a holder that just finished with a folder
    # it had created; then lock the one now at the path instead.
    try:
      same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      break
    os.close(fd)
  if record and not directory:
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
  return fd


def _lock_holder(fd: int) -> str:
  """The process holding a `flock` on `fd`'s file, from Linux's /proc/locks ("" if unknown)."""
  st = os.fstat(fd)
  key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
  try:
    with open("/proc/locks") as f:
      for line in f:
        parts = line.split()  # "1: FLOCK ADVISORY WRITE <pid> <maj:min:ino> 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key:
          return parts[4] if parts[4].isdigit() else ""
  except OSError:
    pass
  return ""


_FOLDER_LOCKS: list["FolderLock"] = []  # Those this process holds, in the order taken.


def held_here(directory: str) -> bool:
  """Whether this process already holds `directory` by a `FolderLock` (a second `flock` from
  the same process would conflict with the first)."""
  real = os.path.realpath(directory)
  return any(lock.held and os.path.realpath(lock.path) == real for lock in _FOLDER_LOCKS)


class FolderLock:
  """A run's exclusive hold on a folder it writes besides its `OutputFolder` (its checkpoints).

  The folder itself is `flock`ed, as `OutputFolder` locks its lock file: the kernel releases it
  when the process ends, however it ends, and nothing is written into the folder (a checkpoint
  folder holds exactly its checkpoints). `open()` creates the folder if missing; `close()`
  releases the lock and removes the folder again if `open()` created it and it is empty; a
  lock inside an `OutputFolder` this process holds is closed when that closes.

      with FolderLock(checkpoint_dir, flag="--checkpoint_dir"):
        ...                                  # no other process writes checkpoints here
  """

  def __init__(self, path: str, flag: str):
    self.path = os.path.abspath(path) if path else path
    self.flag = flag
    self._fd = None
    self._created: list[str] = []

  def open(self) -> "FolderLock":
    """Checks the folder can be written and locks it.

    Raises:
      ConfigError: the folder cannot be written, or another process holds it.
    """
    self._created = check_writable(self.path, self.flag)
    try:
      self._fd = _take_lock(self.path, self.flag, self.path, directory=True)
    except BaseException:
      remove_empty(self._created)
      raise
    _FOLDER_LOCKS.append(self)
    return self

  def close(self) -> None:
    """Releases the lock; removes the folder if `open()` created it and it is empty."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
      remove_empty(self._created)
      self._created = []
    if self in _FOLDER_LOCKS:
      _FOLDER_LOCKS.remove(self)

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> "FolderLock":
    return self.open()

  def __exit__(self, *exc) -> None:
    self.close()


def check_free(path: str, flag: str = "--out") -> None:
  """Raises `ConfigError` if another live run holds `path` (its `OutputFolder` lock).

  Takes the lock and releases it at once, creating nothing: a check before the work, for a
  script that holds the folder only at its end.
  """
  lock_path = os.path.join(os.path.abspath(path), LOCK_NAME)
  if os.path.exists(lock_path):
    os.close(_take_lock(lock_path, flag, os.path.abspath(path), record=False))


def _read_pid(path: str) -> str:
  try:
    with open(path) as f:
      text = f.read().strip()
  except OSError:
    return ""
  return text if text.isdigit() else ""


def _files_under(folder: str) -> list[str]:
  """Sorted relative paths of the files under `folder`, less lock files and commit markers."""
  out = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith(STAGING_PREFIX)]
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), folder)
      if name == LOCK_NAME or rel in (_COMPLETE, MANIFEST_NAME):
        continue
      out.append(rel)
  return sorted(out)


def _write_synced(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def _sigint_held():
  """Defers SIGINT (Ctrl-C) until the block ends, so a commit's renames are not cut short."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def sweep_identity(groups, grid, target: float | None, select: str,
                   prune: dict | None = None, score: str = "crossfit") -> dict:
  """What a sweep computes, as `SweepResult.config` records it (before anything runs).

  Args:
    groups: the planned groups (`engine.plan_sweep`).
    grid: the `Grid`.
    target: the metric value to reach, or None.
    select: the selection rule.
    prune: `RunOptions.prune_config()`: pruning changes results.
    score: which epoch's metric is a run's score (`results.SCORES`).
  """
  from lr_jax.results import sweep_config  # Late: checking a folder loads no JAX.
  return {"kind": "sweep", "config": sweep_config(groups, grid, target, select, prune, score)}


def write_outputs(result: "SweepResult", out_dir: str, overwrite: bool = False) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `out_dir` as one unit.

  The folder is locked while writing, the three files replace the previous three together or
  not at all, and a different result's files are only replaced with `overwrite`: another
  sweep's (another `result.config`: the manifest above), and also another result of the same
  configuration (e.g. of other in-memory data or another user model, which the configuration
  names but does not hold), told by its per-variant table or histories. The same result is
  written again without asking (its timings and estimate may be new).

  Args:
    result: from `run_sweep`.
    out_dir: the output folder; created if missing.
    overwrite: replace a different result's files.

  Returns:
    The paths written.

  Raises:
    TypeError: `result` is not a `SweepResult` (nothing is touched).
    ConfigError: `out_dir` cannot be written, another process is writing it, it holds a
      different result's files, or writing failed (then the previous files are unchanged).
  """
  from lr_jax.results import SweepResult, results_csv, write_files  # Late, as above.
  if not isinstance(result, SweepResult):
    raise TypeError(f"write_outputs takes a SweepResult (from lr_jax.run_sweep), got "
                    f"{type(result).__module__}.{type(result).__qualname__}")

  def differs_from(folder: str) -> str | None:
    """How the results in `folder` differ from `result`'s (None: the same, or none to compare).

    Compared to float32 rounding (the same sweep rerun on another CPU or JAX version is the
    same result, not another): `results.csv` field by field (numbers to rtol 1e-4, as printed
    to 6 digits), `history.npz`'s arrays to rtol 1e-5, NaN equal to NaN. A file that is missing
    or cannot be read holds nothing to keep.
    """
    def same_field(a: str, b: str) -> bool:
      try:
        return bool(np.isclose(float(a), float(b), rtol=1e-4, atol=1e-7, equal_nan=True))
      except ValueError:
        return a == b

    try:
      with open(os.path.join(folder, "results.csv"), encoding="utf-8") as f:
        old_rows = list(csv.reader(f))
      new_rows = list(csv.reader(io.StringIO(results_csv(result))))
      if len(old_rows) != len(new_rows) or any(
          len(o) != len(n) or not all(map(same_field, o, n)) for o, n in zip(old_rows, new_rows)):
        return "its results.csv differs"
    except (OSError, ValueError, csv.Error):
      pass
    try:
      with np.load(os.path.join(folder, "history.npz"), allow_pickle=False) as f:
        old = {k: f[k] for k in f.files if not k.startswith("variant_")}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
      return None
    new = {k: np.asarray(v) for k, v in result.history.items()}
    same = set(old) == set(new) and all(
        old[k].shape == new[k].shape
        and (np.allclose(old[k], new[k], rtol=1e-5, atol=1e-7, equal_nan=True)
             if old[k].dtype.kind in "fc" else np.array_equal(old[k], new[k]))
        for k in new)
    return None if same else "its history.npz differs"

  with OutputFolder(out_dir, identity={"kind": "sweep", "config": result.config},
                    overwrite=overwrite, flag="out_dir", overwrite_hint="overwrite=True") as folder:
    # open() refused another configuration; the same one may still be another result.
    differs = None if overwrite else differs_from(folder.path)
    if differs:
      raise ConfigError(
          f"out_dir {folder.path} holds a different result of the same sweep configuration "
          f"({differs}); pass overwrite=True to replace it, or give another out_dir")
    with folder.staging() as staging:
      names = [os.path.basename(p) for p in write_files(result, staging)]
  return [os.path.join(out_dir, name) for name in names]
