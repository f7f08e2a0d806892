"""Runs many command lines of one script in one process, each as `python -m <module> ...` would.

    python tests/script_driver.py experiments.seed_examples < cases.json

stdin: a JSON list of argument lists (without the program name). stdout: a JSON list, one
{"code", "stderr", "stdout", "compiles", "seconds"} per case, in order. Run it from the
repository root, as the tests run the scripts.

A script's import (Python, JAX, Flax: seconds) is paid once instead of once per case. The
scripts define absl flags of the same names, so each script needs a process of its own; within
it, every case runs what the script's `if __name__ == "__main__":` block runs (`cli.run_app`:
flag parsing, then `main`), with the flags reset to their defaults before it and `sys.argv` the
case's. Per case:

- code: the exit status the process would have had: `SystemExit`'s, as Python turns it into
  one (None 0, a non-integer printed and 1), 1 after printing the traceback of any other
  exception, or "timeout" (the case ran past --case_timeout seconds).
- stderr, stdout: everything written to file descriptors 2 and 1 while it ran (redirected
  with `os.dup2`, so absl logging, warnings, JAX's compile log and C-level writes are all in
  them), after what importing the script wrote (which every real run prints too).
- compiles: the XLA compilations while it ran (JAX's backend-compile events; a persistent-cache
  hit counts too), plus the import's. JAX's in-memory caches are cleared between cases, so a
  program an earlier case compiled is compiled again, and counted, in a later one.
"""

import ast
import contextlib
import importlib
import json
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings

CASE_TIMEOUT_S = 60


class _CaseTimeout(BaseException):
  """Raised by SIGALRM in a case that runs too long (BaseException: no `except Exception`
  in the script swallows it)."""


@contextlib.contextmanager
def _captured(into: dict):
  """Redirects file descriptors 1 and 2 into temporary files; their text lands in `into`."""
  sys.stdout.flush()
  sys.stderr.flush()
  files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
  saved = {fd: os.dup(fd) for fd in files}
  for fd, f in files.items():
    os.dup2(f.fileno(), fd)
  try:
    yield
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, name in ((1, "stdout"), (2, "stderr")):
      os.dup2(saved[fd], fd)
      os.close(saved[fd])
      files[fd].seek(0)
      into[name] = files[fd].read().decode("utf-8", errors="replace")
      files[fd].close()


def _main_block(module):
  """The code of the module's `if __name__ == "__main__":` block, compiled."""
  with open(module.__file__) as f:
    tree = ast.parse(f.read(), module.__file__)
  for node in tree.body:
    if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
        and len(node.test.comparators) == 1
        and isinstance(node.test.comparators[0], ast.Constant)
        and node.test.comparators[0].value == "__main__"):
      return compile(ast.Module(body=node.body, type_ignores=[]), module.__file__, "exec")
  raise SystemExit(f"{module.__name__} has no `if __name__ == \"__main__\":` block")


def _exit_code(e: SystemExit) -> int:
  """The status Python exits with for an uncaught `SystemExit` (printing a message one)."""
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code
  print(e.code, file=sys.stderr)
  return 1


def main() -> None:
  name = sys.argv[1]
  cases = json.load(sys.stdin)
  sys.path[0] = os.getcwd()  # As `python -m`: the working directory, not tests/.
  root = os.getcwd()

  from jax import monitoring
  compiles = [0]

  def on_duration(event, seconds, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles[0] += 1

  monitoring.register_event_duration_secs_listener(on_duration)

  # What every real run prints and compiles while importing the script, before its main.
  imported: dict = {}
  with _captured(imported):
    module = importlib.import_module(name)
  import_compiles = compiles[0]
  block = _main_block(module)
  sys.argv[0] = module.__file__  # As `python -m` sets it.

  import jax
  from absl import flags
  saved_filters = list(warnings.filters)

  def on_alarm(signum, frame):
    raise _CaseTimeout(f"the case ran past {CASE_TIMEOUT_S} s")

  signal.signal(signal.SIGALRM, on_alarm)
  results = []
  for args in cases:
    # A fresh start as far as one process allows: flags at their defaults, no compiled
    # programs in memory, warnings shown again (a new process shows each one once).
    flags.FLAGS.unparse_flags()
    jax.clear_caches()
    warnings.resetwarnings()  # Bumps the filters' version: every `__warningregistry__` resets.
    warnings.filters[:] = saved_filters
    warnings.onceregistry.clear()
    os.chdir(root)
    sys.argv[1:] = list(args)
    compiles[0] = 0
    result: dict = {}
    start = time.perf_counter()
    with _captured(result):
      signal.alarm(CASE_TIMEOUT_S)
      try:
        exec(block, vars(module))
        code = 0
      except SystemExit as e:
        code = _exit_code(e)
      except _CaseTimeout:
        traceback.print_exc()
        code = "timeout"
      except BaseException:  # What Python prints for an uncaught exception, and its status.
        traceback.print_exc()
        code = 1
      finally:
        signal.alarm(0)
    result.update(code=code, compiles=import_compiles + compiles[0],
                  stderr=imported["stderr"] + result["stderr"],
                  stdout=imported["stdout"] + result["stdout"],
                  seconds=round(time.perf_counter() - start, 3))
    results.append(result)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
