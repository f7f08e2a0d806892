"""`on_reregister`: the compile caches that key a family by its name drop their programs when
the name is given another optimizer."""

from __future__ import annotations

from collections.abc import Callable

# Caches of compiled programs that key a family by its name (the engine's, the finder's): they
# register here, so a name that now means another optimizer drops its programs, and this
# module need not import the layers above it.
_ON_REREGISTER: list[Callable[[], None]] = []


def on_reregister(forget: Callable[[], None]) -> None:
  """Calls `forget` whenever a registered name is given another optimizer."""
  _ON_REREGISTER.append(forget)


def _forget_compiled() -> None:
  """Drops the programs compiled in this process: they key a family by its name, and a name
  now means another optimizer."""
  for forget in _ON_REREGISTER:
    forget()
