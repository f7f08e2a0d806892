"""`OutputFolder`: one run's hold on its output folder, checked, locked, compared with the
results it holds, and committed as one unit (the package's docstring says how)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid

from lr_jax.errors import ConfigError
from lr_jax.io import atomic_write, json_differences
from lr_jax.outputs.commit import (MANIFEST_NAME, STAGING_PREFIX, _COMPLETE, _files_under,
                                   _read_json, _sigint_held, _write_synced)
from lr_jax.outputs.identity import _canonical
from lr_jax.outputs.locks import LOCK_NAME, _FOLDER_LOCKS, _take_lock
from lr_jax.outputs.paths import _problem, check_given, check_writable, remove_empty

# Files whose presence means a folder holds some run's results (checked when there is no
# manifest, i.e. for folders written before manifests existed).
RESULT_NAMES = ("results.csv", "history.npz", "summary.json", "report.md", "finder.json")


class OutputFolder:
  """One run's hold on its output folder (see the package docstring, `lr_jax.outputs`).

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
      fields = [f.removeprefix("config.") for f in (
          path or "(all)" for path, _, _ in json_differences(old, self.identity))]
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
