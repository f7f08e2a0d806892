"""The parts of a commit: the staging folder and its completion mark, the manifest's name, the
files a staging folder holds, a synced write, JSON read back, SIGINT held during the renames."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading

from lr_jax.outputs.locks import LOCK_NAME

MANIFEST_NAME = ".lr_jax-run.json"
STAGING_PREFIX = ".staging-"
_COMPLETE = ".complete"


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


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
