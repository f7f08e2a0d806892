"""Running an absl script: a `ConfigError` or bad flag one `error:` line, Ctrl-C, the XLA cache."""

from __future__ import annotations

import gc
import os
import shlex
import sys
from collections.abc import Callable, Sequence

from lr_jax.cli.folders import release_locks
from lr_jax.errors import ConfigError


def enable_compilation_cache(path: str | None = None) -> str:
  """Turns on JAX's persistent compilation cache, so a second run skips XLA compilation.

  Args:
    path: cache folder; default `$JAX_COMPILATION_CACHE_DIR` or `~/.cache/lr_jax/xla`.

  Returns:
    The folder used.
  """
  import jax
  path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "lr_jax", "xla")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  # Our programs compile in about a second: cache them all, not only the slow ones.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def run_main(main: Callable[[], object], on_interrupt: Callable[[], str | None] | None = None
             ) -> None:
  """Runs `main`: a `ConfigError` is one `error:` line and exit 2, Ctrl-C one line and exit 130.

  Args:
    main: the script's work.
    on_interrupt: returns what to say after "interrupted; " (e.g. the command that resumes),
      or None.
  """
  try:
    main()
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    hint = on_interrupt() if on_interrupt is not None else None
    print("interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
    sys.exit(130)  # 128 + SIGINT, as a shell reports a process Ctrl-C ended.
  finally:
    release_locks()  # The run is over: its checkpoint folder is free again.


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parser, with a bad flag or a stray argument one `error:` line and exit 2."""
  from absl import flags
  try:
    rest = flags.FLAGS(list(argv))
  except (flags.Error, ValueError) as e:  # absl: `--nobool=x` "does not take an argument".
    message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
    arg = message.split(" ", 1)[0]
    if isinstance(e, ValueError) and arg.startswith("--no") and "=" in arg:
      name = arg[len("--no"):].split("=", 1)[0]
      message += f"; valid: --{name}, --no{name} or --{name}=true/false"
    print(f"error: {message} (--helpfull lists the flags)", file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f"error: unexpected arguments {' '.join(rest[1:])!r}; flags are written "
          "--name=value", file=sys.stderr)
    sys.exit(2)
  return rest


def run_app(main: Callable[[list[str]], object]) -> None:
  """`absl.app.run(main)` with `parse_flags`, so a flag error exits 2 as the README promises.

  The program ends with it. On the way out the objects it made are frozen (`gc.freeze`): the
  interpreter's exit then skips the full garbage collections it runs over them, 0.6-0.7 s
  after a sweep (millions of JAX, Flax and matplotlib objects) for memory the process is
  about to return anyway. Every file is closed and every exit handler still runs.
  """
  from absl import app
  try:
    app.run(main, flags_parser=parse_flags)
  finally:
    gc.freeze()


def command_line(module: str, argv: Sequence[str]) -> str:
  """'python -m module --flag=value ...': the command `argv` ran, quoted for a shell."""
  return f"python -m {module} {shlex.join(argv[1:])}".rstrip()


def resume_command(module: str, argv: Sequence[str]) -> str:
  """The command line that continues the run `argv` started: the same flags plus `--resume`."""
  kept = [a for a in argv[1:]
          if a.lstrip("-").split("=", 1)[0] not in ("resume", "noresume")]
  return f"python -m {module} " + shlex.join([*kept, "--resume"])
