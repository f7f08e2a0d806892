"""A folder path checked before anything runs: given, writable (a probe file); the folders a
refused run created, removed again."""

from __future__ import annotations

import os
import tempfile

from lr_jax.errors import ConfigError


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
