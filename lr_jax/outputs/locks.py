"""A run's exclusive hold on a folder: the `flock` (`_take_lock`, its holder named when
refused), `FolderLock` for a folder it writes besides its output folder (its checkpoints),
`held_here`, and `check_free` (another live run's `OutputFolder` lock, tested and let go)."""

from __future__ import annotations

from absl import logging
import errno
import fcntl
import os

from lr_jax.errors import ConfigError
from lr_jax.outputs.paths import _problem, check_writable, remove_empty

LOCK_NAME = ".lr_jax.lock"


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
