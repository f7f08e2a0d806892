"""lr_jax's absl flags and what every absl script shares: one-line errors, the compilation cache.

Public, for scripts of your own (see `experiments/custom_model.py`):

    from absl import flags
    from lr_jax import cli

    cli.define_flags()                       # lr_jax's flags, listed in this script's --helpshort
    flags.DEFINE_integer("width", 64, "My model's width.")   # and the script's own
    flags.DEFINE_string("out", "runs/mine", "Output folder.")
    FLAGS = flags.FLAGS

    def main(argv):
      def run():
        cli.check_out(FLAGS.out)             # not empty, writable, not in use: before any work
        exp = cli.experiment_from_flags(FLAGS, user_model="Mine")  # --hidden etc. refused
        grid = cli.grid_from_flags(FLAGS)
        ...                                  # lr_jax.run_sweep(exp, grid, model=...)
      cli.run_main(run)                      # ConfigError: one `error:` line, exit 2

    if __name__ == "__main__":
      cli.run_app(main)                      # a flag error: one `error:` line, exit 2

The static flags are the config dataclasses' fields (`field_docs`: default and help from the
dataclass); every number of `lr_jax.hparams.catalog()` is a comma-list flag `--<name>`
(`define_hparam_flags`), grouped by namespace in `--helpfull`. A flag given on the command line
that the configuration does not read is refused, not ignored (`check_flags_apply`, from
`lr_jax.config.APPLIES`; a sweepable number's when the sweep is planned).

A flag of the script's own with the name of one of lr_jax's is refused when it is defined
(`flags.DuplicateFlagError` naming it), whichever is defined first: rename yours, or read
lr_jax's (`FLAGS.seeds`). lr_jax's own scripts may each call the `define_*` functions; a flag
lr_jax already defined is defined once.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence

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


def parse_floats(flag: str, values: Sequence[str] | None) -> tuple[float, ...] | None:
  """Parses a comma-list flag of numbers; a bad entry is a `ConfigError` naming it."""
  if values is None:
    return None
  out = []
  for text in values:
    try:
      x = float(text)
    except ValueError:
      raise ConfigError(f"--{flag}: {text!r} is not a number; give a comma list like 1e-3,1e-2") from None
    if not math.isfinite(x):
      raise ConfigError(f"--{flag}: {text!r} is not finite; give finite numbers")
    out.append(x)
  return tuple(out)


def parse_ints(flag: str, values: Sequence[str] | None) -> tuple[int, ...] | None:
  """Parses a comma-list flag of integers; a bad entry is a `ConfigError` naming it."""
  if values is None:
    return None
  out = []
  for text in values:
    try:
      out.append(int(text))
    except ValueError:
      raise ConfigError(f"--{flag}: {text!r} is not an integer; give a comma list like 64,128") from None
  return tuple(out)


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
  """`absl.app.run(main)` with `parse_flags`, so a flag error exits 2 as the README promises."""
  from absl import app
  app.run(main, flags_parser=parse_flags)


def command_line(module: str, argv: Sequence[str]) -> str:
  """'python -m module --flag=value ...': the command `argv` ran, quoted for a shell."""
  return f"python -m {module} {shlex.join(argv[1:])}".rstrip()


def resume_command(module: str, argv: Sequence[str]) -> str:
  """The command line that continues the run `argv` started: the same flags plus `--resume`."""
  kept = [a for a in argv[1:]
          if a.lstrip("-").split("=", 1)[0] not in ("resume", "noresume")]
  return f"python -m {module} " + shlex.join([*kept, "--resume"])


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


FLAG_GROUPS = ("sweep", "run", "output", "export")
"""The flag sets `define_flags` can define: the sweep's (data, model, optimizer, schedule,
training, selection), how it runs (chunks, checkpoints, processes), `--overwrite`, and a trained
model out (`--refit`, `--save_model`: `refit_from_flags`, `lr_jax.export`)."""


def define_flags(*groups: str, flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines lr_jax's flags for the calling script and lists them in its `--helpshort`.

  absl's `--helpshort` shows the key flags of the main module only; each flag defined here is
  registered as a key flag of the module that called this function (the script).

  Args:
    *groups: which of `FLAG_GROUPS` to define; default all of them.
    flag_values: the `absl.flags.FlagValues` to define them in; default `absl.flags.FLAGS`.

  Returns:
    The names of the flags, in the order defined.

  Raises:
    absl.flags.DuplicateFlagError: the script already defined a flag of the same name (absl
      itself raises it for one defined afterwards).
    ValueError: an unknown group.
  """
  defines = {"sweep": define_sweep_flags, "run": define_run_flags,
             "output": define_output_flags, "export": define_export_flags}
  for group in groups:
    if group not in defines:
      raise ValueError(f"unknown flag group {group!r}; valid choices: {', '.join(FLAG_GROUPS)}")
  names = []
  for group in groups or FLAG_GROUPS:
    names += defines[group](flag_values)
  return names


def _calling_module() -> str:
  """The name absl gives the first module on the stack outside this one (the script).

  absl names the main module by its path, `sys.argv[0]`, as its `--helpshort` looks it up.
  """
  frame = sys._getframe(1)
  while frame is not None and frame.f_globals.get("__name__") == __name__:
    frame = frame.f_back
  name = frame.f_globals.get("__name__") if frame is not None else None
  return sys.argv[0] if name in (None, "__main__") else name


class _Once:
  """absl's `flags` module whose DEFINE_* define each of lr_jax's flags once per `FlagValues`.

  A flag of that name defined by lr_jax already (another of lr_jax's scripts, or a second
  call) is kept; one defined by anyone else is a `flags.DuplicateFlagError`: silently taking
  over a script's own flag of the same name (say `--seeds`, with another meaning) is how a run
  goes wrong without a word. Every flag is made a key flag of the calling script, so that its
  `--helpshort` lists it. A flag is defined in this module unless `module_name=` says another
  of lr_jax's (the hyperparameter flags' namespaces, `--helpfull`'s groups).
  """

  def __init__(self, flag_values: "flags.FlagValues | None" = None):
    from absl import flags
    self.flag_values = flag_values if flag_values is not None else flags.FLAGS
    self.key_module = _calling_module()
    self.names: list[str] = []

  def __getattr__(self, name):
    from absl import flags
    define = getattr(flags, name)
    fv = self.flag_values

    def once(flag_name, *args, module_name=__name__, **kwargs):
      if flag_name not in fv:
        define(flag_name, *args, flag_values=fv, module_name=module_name, **kwargs)
      else:
        owner = fv.find_module_defining_flag(flag_name, default="an unknown module")
        if owner != __name__ and not owner.startswith(_HPARAM_MODULE + "."):
          raise flags.DuplicateFlagError(
              f"--{flag_name} is defined by {owner} and by lr_jax ({__name__}); lr_jax's "
              f"flags come with lr_jax.cli.define_flags: read FLAGS.{flag_name} instead of "
              "defining it, or rename yours")
      fv.register_key_flag_for_module(self.key_module, fv[flag_name])
      self.names.append(flag_name)

    return once


# Static configuration: one flag per field of the config dataclasses, its default the field's
# and its help the docstring's line, so a default is stated once, in the dataclass. A field that
# only gives the default of a dynamic number (`HParam.field`, e.g. `ModelConfig.dropout`) is
# that number's flag instead (below).
_FLAG_NAMES = {("ModelConfig", "name"): "model", ("OptimConfig", "name"): "optimizer"}
# Where a flag means other than its field does, its help.
_FLAG_HELP = {
    "checkpoint_dir": "Checkpoint folder; default <out>/checkpoints with --checkpoint_every or "
                      "--resume.",
    "dataset": "Built-in data set name, or a .npz (arrays x, y) or .csv file path."}
_HPARAM_MODULE = "lr_jax.hparams"  # --helpfull groups a namespace's flags under its module name.


def field_docs(cls) -> dict[str, str]:
  """A dataclass's `Attributes:` docstring section as field -> its text on one line."""
  docs: dict[str, str] = {}
  lines = (cls.__doc__ or "").splitlines()
  inside, current = False, None
  for line in lines:
    text = line.strip()
    if text == "Attributes:":
      inside = True
      continue
    if not inside:
      continue
    if not text:
      if docs:
        break
      continue
    name, colon, rest = text.partition(":")
    indent = len(line) - len(line.lstrip())
    if colon and name.isidentifier() and (current is None or indent <= field_indent):
      current, field_indent = name, indent
      docs[name] = rest.strip()
    elif current is not None:
      docs[current] += " " + text
  return docs


def _flag_help(text: str, note: str = "") -> str:
  text = text[:1].upper() + text[1:]
  return " ".join(t if t.endswith(".") else t + "." for t in (text, note) if t)


def _flag_kind(kind) -> tuple[str, object]:
  """A field's annotation -> (absl DEFINE_ suffix, element type of a list or None)."""
  import types
  import typing
  if typing.get_origin(kind) in (typing.Union, types.UnionType):
    options = [a for a in typing.get_args(kind) if a is not type(None)]
    if len(options) > 1:  # str | int, str | PathLike | Dataset: given as text on a command line.
      return "string", None
    kind = options[0]
  if typing.get_origin(kind) is tuple:
    return "list", typing.get_args(kind)[0]
  kinds = {bool: "bool", int: "integer", float: "float", str: "string"}
  if kind not in kinds:
    raise TypeError(f"no flag type for a field of type {kind}")
  return kinds[kind], None


def _config_fields(cls) -> list[tuple[str, str, object]]:
  """The (flag name, field name, annotation) of every static field of a config dataclass."""
  import dataclasses
  from lr_jax import config, hparams
  parts = {type(f.default): f.name for f in dataclasses.fields(config.Experiment)}
  dynamic = {a.spec.field for a in hparams.catalog().values() if a.spec.field}
  types_ = config._field_types(cls)  # pylint: disable=protected-access
  return [(_FLAG_NAMES.get((cls.__name__, f.name), f.name), f.name, types_[f.name])
          for f in dataclasses.fields(cls) if f"{parts.get(cls)}.{f.name}" not in dynamic]


def _define_fields(d: _Once, cls) -> None:
  """Defines one flag per static field of `cls`: its default, type and docstring help."""
  import dataclasses
  defaults = {f.name: f.default for f in dataclasses.fields(cls)}
  docs = field_docs(cls)
  for flag, field, kind in _config_fields(cls):
    suffix, _ = _flag_kind(kind)
    default = defaults[field]
    if suffix == "list":
      default = [str(x) for x in default]
    text = _FLAG_HELP.get(flag) or _flag_help(docs.get(field, ""),
                                              "Comma list." if suffix == "list" else "")
    getattr(d, f"DEFINE_{suffix}")(flag, default, text)


def _from_fields(cls, f, **given):
  """Builds a config dataclass from its fields' flags (`given` replaces some, the rest of the
  fields keep their defaults)."""
  values = {}
  for flag, field, kind in _config_fields(cls):
    suffix, element = _flag_kind(kind)
    value = getattr(f, flag)
    if suffix == "list":
      value = (parse_ints if element is int else parse_floats)(flag, value)
    values[field] = value
  return cls(**{**values, **given})


def _number_text(x: float) -> str:
  return "off" if x is None or math.isinf(x) else f"{x:g}"


def hparam_defaults(name: str) -> str:
  """A dynamic number's default as text: one value, or each registry entry's where they differ.

  E.g. "0.9", or "0.999 (adam, adamw, lamb); 0.99 (lion)"; "off" where none is (clipping).
  """
  from lr_jax import hparams
  axis = hparams.catalog()[name]
  by_value: dict[str, list[str]] = {}
  for entry, spec in _declarations(name):
    by_value.setdefault(_number_text(spec.default), []).append(entry)
  if len(by_value) <= 1:
    return _number_text(axis.spec.default)
  return "; ".join(f"{v} ({', '.join(entries)})" for v, entries in by_value.items())


def _declarations(name: str) -> list[tuple[str, "HParam"]]:
  """(registry entry, spec) of every declaration of a dynamic number, in registry order."""
  from lr_jax import hparams, optim
  entries = [*optim.OPTIMIZERS.items(), *optim.SCHEDULES.items()]
  out = [(k, e.hparams[name]) for k, e in entries if name in e.hparams]
  out += [(k, specs[name]) for k, specs in hparams.LOSS_HPARAMS.items() if name in specs]
  out += [(k, specs[name]) for k, specs in hparams.MODEL_HPARAMS.items() if name in specs]
  return out


def hparam_where(name: str) -> str:
  """Which optimizers, schedules, tasks, models or data a dynamic number applies to."""
  from lr_jax import hparams
  entries = [k for k, _ in _declarations(name)]
  data = hparams.DATA_HPARAMS.get(name)
  if data is not None:
    return ("image-shaped data (rank >= 2), up to the smaller side - 1" if data.image else
            "classification" if data.classification else "any data")
  if not entries:  # Declared by the namespace itself (the learning rate, clipping).
    return {"optim": "every optimizer"}.get(hparams.catalog()[name].namespace, "every experiment")
  return ", ".join(entries)


def _hparam_help(axis) -> str:
  spec = axis.spec
  kind = "integers" if spec.integer else "numbers"
  return (f"{axis.namespace}.{axis.name} ({hparam_where(axis.name)}): {spec.help}. Comma list "
          f"of {kind} in {spec.valid} to sweep; default {hparam_defaults(axis.name)}.")


def _hparam_flags(axis) -> list[str]:
  """A dynamic number's flag and its aliases: `--lrs` for the learning rate (the grid's), and
  `--<field>` where a config field under another name gives its default (`--dropout`)."""
  from lr_jax import hparams
  if axis.spec is hparams.LEARNING_RATE:
    return ["lrs", axis.name]
  field = axis.spec.field.partition(".")[2]
  return [axis.name] + ([field] if field and field != axis.name else [])


def sweepable_table() -> str:
  """The README's table of every sweepable number, from `lr_jax.hparams.catalog()`.

  A markdown table, by namespace: the number's qualified name, its flags, what it applies to,
  its valid range, default and meaning. README.md holds it between `<!-- sweepable:begin -->`
  and `<!-- sweepable:end -->`, checked equal by tests/cli_test.py.
  """
  from lr_jax import hparams
  rows = ["| number | flag | applies to | valid | default | meaning |",
          "| --- | --- | --- | --- | --- | --- |"]
  for name, axis in hparams.catalog().items():
    spec = axis.spec
    valid = f"{spec.valid}" + (", integer" if spec.integer else "")
    flag, *aliases = _hparam_flags(axis)
    flags_text = f"`--{flag}`" + "".join(f" (`--{a}`)" for a in aliases)
    default = ("Grid's list" if spec is hparams.LEARNING_RATE else hparam_defaults(name))
    rows.append(f"| `{axis.namespace}.{name}` | {flags_text} | {hparam_where(name)} | {valid} | "
                f"{default} | {spec.help} |")
  return "\n".join(rows) + "\n"


def define_hparam_flags(d: _Once) -> None:
  """Defines `--<name>`, a comma list, for every number of `lr_jax.hparams.catalog()`.

  Each is defined in the module `lr_jax.hparams.<namespace>`, so `--helpfull` groups them by
  namespace. The learning rate's is `--lrs` (with the log-spaced `--lr_min`, `--lr_max`,
  `--num_lrs`), `--learning_rate` its alias; a config field that gives a number's default under
  another name (`ModelConfig.dropout`) is an alias of the number's flag (`--dropout`).
  """
  from lr_jax import hparams
  for axis in hparams.catalog().values():
    module = f"{_HPARAM_MODULE}.{axis.namespace}"
    flag, *aliases = _hparam_flags(axis)
    if axis.spec is hparams.LEARNING_RATE:  # Grid.learning_rates: the grid's own flags.
      d.DEFINE_list(flag, None, "Learning rates, comma list; overrides --lr_min/--lr_max/"
                    "--num_lrs.", module_name=module)
    else:
      d.DEFINE_list(flag, None, _hparam_help(axis), module_name=module)
    for alias in aliases:
      d.DEFINE_alias(alias, flag, module_name=module)


def hparam_flag_names() -> list[str]:
  """The flags of the dynamic numbers besides the learning rate's, in catalog order."""
  from lr_jax import hparams
  return [n for n, a in hparams.catalog().items() if a.spec is not hparams.LEARNING_RATE]


def parse_hparam(name: str, values: Sequence[str] | None) -> tuple[float, ...] | None:
  """Parses a dynamic number's comma-list flag, each value checked against its range.

  Raises:
    ConfigError: one line naming `--<name>`, the value and the valid range.
  """
  from lr_jax import hparams
  if values is None:
    return None
  spec = hparams.catalog()[name].spec
  kind = "integers" if spec.integer else "numbers"
  if not values:
    raise ConfigError(f"--{name} is empty; valid: a comma list of {kind} in {spec.valid}")
  out = []
  for text in values:
    try:
      x = float(text)
    except ValueError:
      raise ConfigError(f"--{name}: {text!r} is not a number; valid: a comma list of {kind} in "
                        f"{spec.valid}") from None
    if x not in spec.valid or (spec.integer and x != math.floor(x)):
      raise ConfigError(f"--{name}: {text} is outside its valid range; valid: {kind} in "
                        f"{spec.valid}")
    out.append(x)
  return tuple(out)


def define_sweep_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines the flags of a learning-rate sweep (data, model, optimizer, schedule, training).

  The static ones come from the fields of `DataConfig`, `ModelConfig`, `OptimConfig` and
  `TrainConfig` (default and help from the dataclass); every dynamic number of
  `lr_jax.hparams.catalog()` is a comma-list flag (`define_hparam_flags`).

  Returns their names; see `define_flags` (key flags of the caller, clashes refused).
  """
  from lr_jax.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
  d = _Once(flag_values)
  for cls in (DataConfig, ModelConfig, OptimConfig):
    _define_fields(d, cls)
  d.DEFINE_float("lr_min", 1e-5, "Smallest learning rate of the log-spaced grid.")
  d.DEFINE_float("lr_max", 1.0, "Largest learning rate of the log-spaced grid.")
  d.DEFINE_integer("num_lrs", 16, "Number of log-spaced learning rates.")
  define_hparam_flags(d)
  d.DEFINE_integer("seeds", 3, "Number of training seeds (0..seeds-1).")
  _define_fields(d, TrainConfig)
  d.DEFINE_float("target", None, "Validation accuracy (loss for regression) to reach.")
  d.DEFINE_string("select", "best", "How the learning rate is chosen: best (highest mean) or "
                  "one_se (largest LR within one standard error of the best).")
  return d.names


def experiment_from_flags(f, *, user_model: str | None = None) -> "Experiment":
  """Builds the `Experiment` the sweep flags describe; bad values raise `ConfigError`.

  A flag given on the command line (absl's `.present`, even at its default value) for a field
  the experiment does not read is refused (`check_flags_apply`).

  Args:
    f: the parsed flags.
    user_model: the name of the script's own model, which replaces the built-in `ModelConfig`
      (then `--model`, `--hidden` and `--activation` do not apply); None for the built-in one.
  """
  from lr_jax.config import DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig
  experiment = Experiment(data=_from_fields(DataConfig, f), model=_from_fields(ModelConfig, f),
                          optim=_from_fields(OptimConfig, f), train=_from_fields(TrainConfig, f))
  from lr_jax.hparams import check_experiment
  check_experiment(experiment)  # The registry names and defaults, as planning checks them.
  for part in (experiment.data, experiment.optim, experiment.train):
    check_flags_apply(f, part)
  if user_model is None:
    check_flags_apply(f, experiment.model)
  else:
    for flag, _, _ in _config_fields(ModelConfig):
      if _given(f, flag):
        raise ConfigError(f"--{flag} does not apply to the user model {user_model!r}, which "
                          f"builds its own layers; drop --{flag}")
  return experiment


def _given(f, flag: str) -> bool:
  """Whether `flag` was given on the command line (even at its default value)."""
  return flag in f and f[flag].present


def check_flags_apply(f, config) -> None:
  """Refuses a flag given on the command line for a field `config` does not read.

  Which fields a config reads is declared once, in `lr_jax.config.APPLIES` (e.g. `decay_steps`
  by the exponential schedule only); `lr_jax.config.unused_fields` lists those a config leaves
  unread. The sweepable numbers are the registries' (`lr_jax.hparams`): a grid value of one the
  experiment does not have is refused when the sweep is planned.

  Raises:
    ConfigError: one line naming the flag and why it does not apply.
  """
  from lr_jax.config import unused_fields, why_unused
  unused = unused_fields(config)
  flags_of = {field: flag for flag, field, _ in _config_fields(type(config))}
  for field, why in unused.items():
    flag = flags_of.get(field)
    if flag is not None and _given(f, flag):
      text = why_unused(why, lambda name: f"--{flags_of.get(name, name)}")
      raise ConfigError(f"--{flag} does not apply {text}; drop --{flag}")


def hparams_from_flags(f) -> dict[str, tuple[float, ...]]:
  """The dynamic numbers the flags list: name -> values (the unlisted keep their defaults)."""
  return {name: values for name in hparam_flag_names()
          if (values := parse_hparam(name, getattr(f, name))) is not None}


def parse_learning_rates(flag: str, values: Sequence[str] | None) -> tuple[float, ...] | None:
  """Parses a comma list of learning rates: each a finite number > 0, none repeated.

  Raises:
    ConfigError: one line naming `--<flag>` and the bad or repeated value.
  """
  from lr_jax.config import check_distinct, check_learning_rates
  lrs = parse_floats(flag, values)
  if lrs is None:
    return None
  try:
    lrs = check_learning_rates(lrs)
    check_distinct("learning rates", lrs, " (a repeated one would be trained twice and counted "
                   "as more runs)")
  except ConfigError as e:
    raise ConfigError(f"--{flag}: {e}") from None
  return lrs


def grid_from_flags(f) -> "Grid":
  """Builds the `Grid` (learning rates, seeds, other dynamic numbers) the sweep flags describe.

  `--lrs` replaces the log-spaced grid: `--lr_min`, `--lr_max` or `--num_lrs` given with it
  are refused, as flags that do not apply.
  """
  from lr_jax.config import check_positive, log_spaced
  from lr_jax.engine import Grid
  lrs = parse_learning_rates("lrs", f.lrs)
  if lrs is not None:
    for flag in ("lr_min", "lr_max", "num_lrs"):
      if _given(f, flag):
        raise ConfigError(f"--{flag} does not apply with --lrs, which lists the learning rates "
                          f"itself; drop --{flag} (or --lrs for the log-spaced grid)")
  from lr_jax.engine import check_variant_count
  check_positive("seeds", f.seeds, integer=True)
  # Before expanding the counts into arrays: a billion learning rates would take minutes to list.
  check_variant_count([(f"--num_lrs={f.num_lrs}" if lrs is None else f"{len(lrs)} learning rates",
                        f.num_lrs if lrs is None else len(lrs)), (f"--seeds={f.seeds}", f.seeds)])
  if lrs is None:
    lrs = log_spaced(f.lr_min, f.lr_max, f.num_lrs)
  return Grid(learning_rates=lrs, seeds=tuple(range(f.seeds)), hparams=hparams_from_flags(f))


def define_export_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--refit` and `--save_model`: a trained model out of the sweep (`lr_jax.export`).

  Returns their names; see `define_flags`.
  """
  d = _Once(flag_values)
  d.DEFINE_bool("refit", None, "Retrain the chosen configuration on all the sweep's rows (an "
                "ensemble of --seeds); default on with --test_fraction or --save_model.")
  d.DEFINE_string("save_model", None, "Folder to save the refit model in (params.msgpack, "
                  "model.json); load it with lr_jax.load_model or lr-jax predict.")
  return d.names


def refit_from_flags(f) -> bool:
  """Whether to refit: `--refit`, else on with --test_fraction, --test_dataset or --save_model."""
  if f.save_model is not None:
    from lr_jax import outputs
    outputs.check_given(f.save_model, "--save_model")
  given = [f"--{k}" for k in ("test_fraction", "test_dataset", "save_model")
           if getattr(f, k, None) is not None]
  wanted = bool(given)
  if f.refit is False and wanted:
    raise ConfigError(f"{given[0]} needs the refit model; drop --norefit")
  out = getattr(f, "out", None)
  if f.save_model is not None and out and os.path.abspath(f.save_model) == os.path.abspath(out):
    raise ConfigError(f"--save_model={f.save_model} is --out; give the model its own folder, "
                      f"e.g. --save_model={os.path.join(out, 'model')}")
  return bool(f.refit) or wanted


def define_output_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--overwrite`, which every script with an `--out` takes; returns its name."""
  d = _Once(flag_values)
  d.DEFINE_bool(
      "overwrite", False, "Replace a different run's results in --out (and discard a checkpoint "
      "that --resume could continue); the same run's results are replaced without it.")
  return d.names


def define_run_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines the flags of how a sweep runs: `RunOptions`' fields (chunks, checkpoints, resume,
  compaction, pruning) and the processes'.

  Returns their names; see `define_flags`.
  """
  from lr_jax.engine import RunOptions
  d = _Once(flag_values)
  _define_fields(d, RunOptions)
  d.DEFINE_bool("distributed", False, "Run on several processes (jax.distributed.initialize).")
  d.DEFINE_string("coordinator_address", None, "host:port of process 0 (or JAX_COORDINATOR_ADDRESS).")
  d.DEFINE_integer("num_processes", None, "Number of processes (or JAX_NUM_PROCESSES).")
  d.DEFINE_integer("process_id", None, "This process's index (or JAX_PROCESS_ID).")
  return d.names


def options_from_flags(f, out: str):
  """The `RunOptions` the run flags describe; checkpoints default to `<out>/checkpoints`.

  A flag given for a setting that does not apply is refused (`check_flags_apply`: the pruning
  settings without `--prune`), and so are pruning rungs at or past `--epochs`, where halving
  never decides.
  """
  from lr_jax import outputs
  from lr_jax.engine import RunOptions
  if f.checkpoint_dir is not None:
    outputs.check_given(f.checkpoint_dir, "--checkpoint_dir")
  wants = f.checkpoint_every > 0 or f.resume
  ckpt = f.checkpoint_dir or (os.path.join(out, "checkpoints") if wants else None)
  options = _from_fields(RunOptions, f, checkpoint_dir=ckpt)
  check_flags_apply(f, options)
  if options.prune and "epochs" in f:
    _check_rungs(options, f.epochs, given=_given(f, "prune_rungs"))
  return options


def _check_rungs(options, epochs: int, given: bool) -> None:
  """Refuses rungs that halving never reaches: given ones at or past the epochs, or all."""
  late = [r for r in options.prune_rungs if r >= epochs]
  valid = f"rungs in 1..{epochs - 1}" if epochs > 1 else "none: halving needs --epochs >= 2"
  if given and late:
    raise ConfigError(f"--prune_rungs: rung {late[0]} is not below --epochs={epochs}, so halving "
                      f"never decides there; valid: {valid}")
  if len(late) == len(options.prune_rungs):
    rungs = ",".join(map(str, options.prune_rungs))
    raise ConfigError(f"--prune={options.prune} does not apply with --epochs={epochs}: every rung "
                      f"({rungs}) is at or past the last epoch; valid: --prune_rungs with {valid}, "
                      "or drop --prune")


def initialize_distributed(f) -> None:
  """Joins the process group when `--distributed`; flags override the JAX_* variables.

  Afterwards `jax.devices()` lists every process's devices, the engine's mesh spans them all,
  and only process 0 should write files.
  """
  names = ("coordinator_address", "num_processes", "process_id")
  if not f.distributed:
    for name in names:
      if _given(f, name):
        raise ConfigError(f"--{name} does not apply without --distributed; add --distributed, "
                          f"or drop --{name}")
    return
  address = f.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = _process_number(f.num_processes, "num_processes", "JAX_NUM_PROCESSES")
  pid = _process_number(f.process_id, "process_id", "JAX_PROCESS_ID")
  if address is None or num is None or pid is None:
    raise ConfigError("--distributed needs --coordinator_address, --num_processes and "
                      "--process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
  if num < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {num}")
  if not 0 <= pid < num:
    raise ConfigError(f"--process_id must be in 0..{num - 1}, got {pid}")
  import jax
  jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)


def _process_number(value: int | None, flag: str, variable: str) -> int | None:
  """A process count or index: the flag's, else the environment variable's, as an integer."""
  if value is not None:
    return value
  text = os.environ.get(variable)
  if text is None:
    return None
  try:
    return int(text)
  except ValueError:
    raise ConfigError(f"{variable}={text!r} is not an integer; valid: a whole number, as "
                      f"--{flag} takes (which overrides it)") from None
