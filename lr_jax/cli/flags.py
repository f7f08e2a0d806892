"""lr_jax's flags defined, each once, from the config dataclasses: key flags of the script."""

from __future__ import annotations

import sys

from lr_jax.cli.sweepable import _HPARAM_MODULE, _hparam_flags, _hparam_help

_MODULE = "lr_jax.cli"  # The module absl says defines lr_jax's flags: --helpfull's group for them.


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
  """The name absl gives the first module on the stack outside `lr_jax.cli` (the script).

  absl names the main module by its path, `sys.argv[0]`, as its `--helpshort` looks it up.
  """
  frame = sys._getframe(1)
  while frame is not None and frame.f_globals.get("__name__", "").startswith("lr_jax.cli"):
    frame = frame.f_back
  name = frame.f_globals.get("__name__") if frame is not None else None
  return sys.argv[0] if name in (None, "__main__") else name


class _Once:
  """absl's `flags` module whose DEFINE_* define each of lr_jax's flags once per `FlagValues`.

  A flag of that name defined by lr_jax already (another of lr_jax's scripts, or a second
  call) is kept; one defined by anyone else is a `flags.DuplicateFlagError`: silently taking
  over a script's own flag of the same name (say `--seeds`, with another meaning) is how a run
  goes wrong without a word. Every flag is made a key flag of the calling script, so that its
  `--helpshort` lists it. A flag is defined in the module `_MODULE` (lr_jax.cli) unless
  `module_name=` says another of lr_jax's (the hyperparameter flags' namespaces, `--helpfull`'s
  groups).
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

    def once(flag_name, *args, module_name=_MODULE, **kwargs):
      if flag_name not in fv:
        define(flag_name, *args, flag_values=fv, module_name=module_name, **kwargs)
      else:
        owner = fv.find_module_defining_flag(flag_name, default="an unknown module")
        if owner != _MODULE and not owner.startswith(_HPARAM_MODULE + "."):
          raise flags.DuplicateFlagError(
              f"--{flag_name} is defined by {owner} and by lr_jax ({_MODULE}); lr_jax's "
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
    "dataset": "Built-in data set name, a .npz (arrays x, y) or .csv file path, or a folder of "
               "images (DIR/<class>/*.png)."}


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
  d.DEFINE_string("score", "crossfit", "Which epoch's validation metric is a run's score: "
                  "best_epoch (the epoch early stopping monitors, whose parameters "
                  "--restore_best keeps), last_epoch (the last epoch trained) or crossfit "
                  "(each half of the validation rows at the epoch the other half monitors "
                  "best: no row scores the epoch it chose).")
  return d.names


def define_export_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--refit` and `--save_model`: a trained model out of the sweep (`lr_jax.export`).

  Returns their names; see `define_flags`.
  """
  d = _Once(flag_values)
  d.DEFINE_bool("refit", None, "Retrain the chosen configuration on every row the sweep saw "
                "(every non-test row, unless --train_size drew fewer; the line and model.json "
                "say which) as an ensemble of --seeds; default on with --test_fraction or "
                "--save_model.")
  d.DEFINE_string("save_model", None, "Folder to save the refit model in (params.msgpack, "
                  "model.json); load it with lr_jax.load_model or lr-jax predict.")
  return d.names


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
  return d.names + define_distributed_flags(flag_values)


def define_distributed_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--distributed` and the process group's flags (`initialize_distributed`); returns
  their names. Part of the run flags; the study, which has no other run flag, takes these."""
  d = _Once(flag_values)
  d.DEFINE_bool("distributed", False, "Run on several processes (jax.distributed.initialize).")
  d.DEFINE_string("coordinator_address", None, "host:port of process 0 (or JAX_COORDINATOR_ADDRESS).")
  d.DEFINE_integer("num_processes", None, "Number of processes (or JAX_NUM_PROCESSES).")
  d.DEFINE_integer("process_id", None, "This process's index (or JAX_PROCESS_ID).")
  return d.names
