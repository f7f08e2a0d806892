"""The `lr-jax` command of an installed lr_jax: one subcommand per script.

    lr-jax sweep --train_size=100 --out=runs/sweep    # = python -m experiments.lr_sweep ...
    lr-jax sweep --helpshort                           # its flags; --helpfull: all of them
    python -m lr_jax.commands sweep ...                # the same, without the console script

Each subcommand is a module of this package with the absl `main` and flags of one script
(`COMMANDS`); in a checkout, `python -m experiments.<module>` runs the same module. `main` imports
only the subcommand's module (the scripts' absl flags collide: `--out`, `--dataset`, ... mean
other things to each), then runs it as its program (`run`). A module that defines its flags when
it runs rather than on import (`predict`: its `--model` is lr_sweep's too) has a
`define_flags()`, which `run` calls first.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

COMMANDS = {  # subcommand -> (its module in this package, what it does)
    "sweep": ("lr_sweep", "a learning-rate sweep, every variant in one compiled program"),
    "find": ("lr_finder", "the LR range test, checked against a real sweep"),
    "study": ("small_data_study", "the small-data study: is a very small learning rate needed?"),
    "examples": ("seed_examples", "the article's three Keras configurations, each swept"),
    "finetune": ("fine_tune", "fine-tuning on very small data: is a small learning rate needed?"),
    "predict": ("predict", "predictions of a saved model (sweep --save_model) on a data file"),
}
_SUBCOMMAND = {module: name for name, (module, _) in COMMANDS.items()}

_invoked: str | None = None  # "lr-jax" (or "python -m lr_jax.commands") once `main` ran.


def program(module: str) -> str:
  """The command line prefix that runs the command `module` (e.g. "lr_sweep") the way this
  process was started: `lr-jax sweep` from `main`, `python -m lr_jax.commands.lr_sweep` run
  directly, else the checkout's `python -m experiments.lr_sweep`. For the commands a run prints
  (the report's, the one that resumes it)."""
  if _invoked is not None:
    return f"{_invoked} {_SUBCOMMAND[module]}"
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name == f"{__name__}.{module}":
    return f"python -m {spec.name}"
  return f"python -m experiments.{module}"


def _as_run(module: str, line: str) -> str:
  """`cli`'s "python -m <module> ..." line with `program(module)` in front instead."""
  return program(module) + line[len(f"python -m {module}"):]


def command_line(module: str, argv) -> str:
  """The command `argv` ran (`cli.command_line`), as `program(module)` runs it."""
  from lr_jax import cli
  return _as_run(module, cli.command_line(module, argv))


def resume_command(module: str, argv) -> str:
  """The command that continues the run `argv` started (`cli.resume_command`), as
  `program(module)` runs it."""
  from lr_jax import cli
  return _as_run(module, cli.resume_command(module, argv))


def help_text(module) -> str:
  """A command module's docstring with its examples written as this process runs them
  (`python -m experiments.lr_sweep` -> `lr-jax sweep` under `main`)."""
  lines = []
  for line in (module.__doc__ or "").splitlines():
    text = line
    for name in _SUBCOMMAND:
      text = text.replace(f"python -m experiments.{name}", program(name))
    comment = text.find("  #")  # An example's comment stays in its column.
    if comment > 0 and len(text) < len(line):
      text = text[:comment] + " " * (len(line) - len(text)) + text[comment:]
    lines.append(text)
  return "\n".join(lines) + ("\n" if (module.__doc__ or "").endswith("\n") else "")


def run(module) -> None:
  """Runs a command module as the program: `cli.run_app(module.main)`.

  First its run-time flags (`module.define_flags()`, if it has one); its flags are made key
  flags of the program (absl lists those of `sys.argv[0]` in `--helpshort`), and its docstring
  is the program's (absl prints `__main__`'s in `--help`).
  """
  from absl import flags

  from lr_jax import cli
  define = getattr(module, "define_flags", None)
  if define is not None:
    define()
  if module.__name__ != "__main__":  # Run as __main__, its flags are sys.argv[0]'s already.
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules.get("__main__")
  if main_module is not None:
    main_module.__doc__ = help_text(module)
  cli.run_app(module.main)


def usage(prog: str) -> str:
  """What `lr-jax --help` prints."""
  width = max(map(len, COMMANDS))
  lines = [f"usage: {prog} <command> [--flag=value ...]", "", "commands:"]
  lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
  text = (f"`{prog} <command> --helpshort` lists a command's flags, --helpfull all of them. In "
          "a checkout, `python -m experiments.<module>` runs the same command ("
          + ", ".join(f"{name}: {module}" for name, (module, _) in COMMANDS.items()) + ").")
  return "\n".join([*lines, "", textwrap.fill(text, 79)])


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
  """`lr-jax <command> [flags]`: runs the command's module with the flags (`run`).

  A missing or unknown command is one `error:` line naming the valid ones, exit 2; `--help`
  (or `-h`, `help`) alone prints the commands, exit 0.

  Args:
    argv: the command line; default `sys.argv`.
    prog: the program's name in messages; default the basename of `argv[0]`.
  """
  global _invoked
  argv = list(sys.argv if argv is None else argv)
  prog = prog or os.path.basename(argv[0] if argv else "") or "lr-jax"
  name = argv[1] if len(argv) > 1 else None
  if name in ("-h", "--help", "-?", "help"):
    print(usage(prog))
    sys.exit(0)
  if name not in COMMANDS:
    given = "no command given" if name is None else f"unknown command {name!r}"
    print(f"error: {given}; valid: {', '.join(COMMANDS)} ({prog} --help says what each does)",
          file=sys.stderr)
    sys.exit(2)
  _invoked = prog
  sys.argv = [f"{prog} {name}", *argv[2:]]  # absl's program name: usage lines, --helpshort.
  run(importlib.import_module(f"{__name__}.{COMMANDS[name][0]}"))
