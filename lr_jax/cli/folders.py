"""The folders a run writes, checked before any work: `--out`, and the checkpoints it holds."""

from __future__ import annotations

import os

from lr_jax.errors import ConfigError


def checkpoint_files(checkpoint_dir: str | None) -> list[str]:
  """The sweep checkpoint files in `checkpoint_dir` (none if it is None or missing)."""
  if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
    return []
  return sorted(n for n in os.listdir(checkpoint_dir)
                if n.startswith("group") and n.endswith(".npz"))


def check_out(path: str | None, flag: str = "--out") -> str:
  """The early check of an output folder, for a script that writes it only at its end.

  Refuses, in one line and before any work: an empty path (it would be the working directory),
  an existing file, a folder that cannot be written, and one another live run holds (its
  `outputs.OutputFolder` lock). Leaves nothing behind. A different run's results in it are
  still only found when the results are written (`lr_jax.write_outputs`); a script that can
  describe its run first holds the folder for the whole run instead (`outputs.OutputFolder`,
  as `lr_jax/commands/lr_sweep.py`, `lr-jax sweep`, does).

  Returns:
    The folder's absolute path.
  """
  from lr_jax import outputs
  created = outputs.check_writable(path, flag)
  try:
    outputs.check_free(path, flag)
  finally:
    outputs.remove_empty(created)
  return os.path.abspath(path)


_HELD: list = []  # The `outputs.FolderLock`s `check_checkpoints` took, until `release_locks`.


def release_locks() -> None:
  """Releases the checkpoint folders `check_checkpoints` holds; `run_main` calls it when the
  script's work ends (a process that ends releases them anyway)."""
  while _HELD:
    _HELD.pop().close()


def check_checkpoints(options, overwrite: bool) -> None:
  """Checks and locks the checkpoint folder and refuses to start over a resumable one.

  The folder is held (`outputs.FolderLock`) until the run ends (`run_main`; the `OutputFolder`
  it lies in, if any): a second run pointed at a live run's checkpoints is refused, with
  `--overwrite` too. Starting afresh would overwrite, then delete, a checkpoint that `--resume`
  could continue: that needs `--overwrite`, which discards it here (so a stale file cannot be
  resumed later).

  Raises:
    ConfigError: the folder is not writable, another live run holds it, or it holds a
      checkpoint and neither `--resume` nor `--overwrite` was given.
  """
  from lr_jax import outputs
  directory = options.checkpoint_dir
  if not directory:
    return
  if not any(lock.held and lock.path == os.path.abspath(directory) for lock in _HELD):
    _HELD.append(outputs.FolderLock(directory, "--checkpoint_dir").open())
  found = checkpoint_files(directory)
  if not found or options.resume:
    return
  if not overwrite:
    raise ConfigError(
        f"{os.path.join(directory, found[0])} is the checkpoint of an interrupted sweep; "
        "continue it with --resume, or pass --overwrite to discard it and start afresh")
  from absl import logging
  logging.warning("--overwrite: discarding the checkpoint in %s", directory)
  for name in found:
    os.unlink(os.path.join(directory, name))
