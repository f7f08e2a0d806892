"""Compile time apart from run time (`_CompileClock`), from JAX's monitoring events, and
programs built ahead in a background thread (`Ahead`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import jax
from absl import logging


# JAX's monitoring events of building a program: Python tracing to a jaxpr, lowering it to
# StableHLO, and XLA's compile (or loading it from the persistent cache).
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


_LOWER_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


_clocks = threading.local()  # `.running`: this thread's clocks, innermost last


_listening = []  # [True] once the listeners are registered (once per process)


_listening_lock = threading.Lock()


def _on_time_span(event: str, start: float, end: float, **kwargs) -> None:
  del kwargs
  if event in (_TRACE_EVENT, _LOWER_EVENT, _COMPILE_EVENT):
    for clock in getattr(_clocks, "running", ()):
      clock.spans.append((start, end))
      clock.programs += event == _COMPILE_EVENT


def _on_event(event: str, **kwargs) -> None:
  del kwargs
  if event == _CACHE_HIT_EVENT:
    for clock in getattr(_clocks, "running", ()):
      clock.cache_hits += 1


class _CompileClock:
  """Times what this thread spends building programs while it is entered, apart from running
  them: the union of JAX's trace, lower and compile spans (a nested jit's tracing lies within
  its caller's, so spans are merged, not summed).

  Attributes:
    seconds: that time.
    programs: programs compiled (or loaded from the persistent cache); 0: every program came
      from this process's own cache.
    cache_hits: of those, the ones loaded from the persistent cache.
  """

  def __init__(self):
    self.spans: list[tuple[float, float]] = []
    self.programs = 0
    self.cache_hits = 0

  @property
  def seconds(self) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(self.spans):
      if b > end:
        total += b - max(a, end)
        end = b
    return total

  def __enter__(self) -> "_CompileClock":
    with _listening_lock:
      if not _listening:
        jax.monitoring.register_event_time_span_listener(_on_time_span)
        jax.monitoring.register_event_listener(_on_event)
        _listening.append(True)
    _clocks.running = getattr(_clocks, "running", ()) + (self,)
    return self

  def __exit__(self, *exc) -> None:
    _clocks.running = tuple(c for c in _clocks.running if c is not self)

  def add_ahead(self, ahead: "Ahead") -> None:
    """Counts a program built ahead: its programs, and the time this thread waited for it
    (the compile left on the critical path), not the time it took in its own thread."""
    ahead.wait()
    self.programs += ahead.clock.programs
    self.cache_hits += ahead.clock.cache_hits
    if ahead.waited is not None:
      self.spans.append(ahead.waited)


class Ahead:
  """A program built in a background thread while this one does other work (e.g.
  `jit(f).lower(*shapes).compile()`, which a later call of `jit(f)` with that signature finds
  in JAX's caches instead of building it again).

  `wait()` before the first call that may need it: JAX does not share a build in flight, so a
  call made meanwhile would build the program a second time. An error in `build` is logged (at
  debug level) and dropped, its result None: the caller then does the work itself and raises
  the error where it belongs.

  JAX's configuration contexts are per thread: a build under `with jax.enable_x64()` or
  `jax.default_matmul_precision(...)` in the caller builds another program than the call's
  (which then builds its own: the same results, the time lost).

  Attributes:
    clock: the build's own `_CompileClock` (in its thread).
    result: what `build` returned, once finished; None if it raised.
    waited: (start, end) of the `wait()` that found the build unfinished; None if none did.
  """

  def __init__(self, build: Callable[[], object]):
    self.clock = _CompileClock()
    self.result = None
    self.waited: tuple[float, float] | None = None
    self._finished = threading.Event()

    def target():
      try:
        with self.clock:
          self.result = build()
      except Exception:  # pylint: disable=broad-except  # The caller raises it again.
        logging.debug("building ahead failed; the caller builds on demand", exc_info=True)
      finally:
        self._finished.set()

    threading.Thread(target=target, name="lr_jax-build-ahead", daemon=True).start()

  def wait(self) -> None:
    """Blocks until the build has finished (at once if it has)."""
    if not self._finished.is_set():
      start = time.perf_counter()
      self._finished.wait()
      self.waited = (start, time.perf_counter())
