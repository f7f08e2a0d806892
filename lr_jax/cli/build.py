"""Configs from the parsed flags (`Experiment`, `Grid`, `RunOptions`, refit): misfits refused."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from lr_jax.cli.flags import _config_fields, _flag_kind
from lr_jax.cli.sweepable import hparam_flag_names, parse_hparam
from lr_jax.errors import ConfigError


# A list element's type -> (its parser, what it is, an example list), for the refusal.
_ELEMENTS = {float: (float, "a number", "1e-3,1e-2"), int: (int, "an integer", "64,128"),
             str: (str, "a name", "a,b")}


def parse_list(flag: str, values: Sequence[str] | None, element=float) -> tuple | None:
  """Parses a comma-list flag's entries as `element`s; a bad entry is a `ConfigError` naming it.

  Args:
    flag: the flag's name, for the message.
    values: absl's list (None: the flag was not given).
    element: `float` (finite), `int`, `str`, or one of them `| None`, whose None is the word
      `all` (`train_sizes`: the whole pool).

  Returns:
    The tuple of values, or None for None.
  """
  if values is None:
    return None
  import types
  import typing
  optional = typing.get_origin(element) in (typing.Union, types.UnionType)
  if optional:
    element = next(a for a in typing.get_args(element) if a is not type(None))
  convert, what, example = _ELEMENTS[element]
  out = []
  for text in values:
    if optional and text.strip().lower() == "all":
      out.append(None)
      continue
    try:
      x = convert(text.strip())
    except ValueError:
      alternative = " or 'all'" if optional else ""
      raise ConfigError(f"--{flag}: {text!r} is not {what}{alternative}; give a comma list like "
                        f"{example}{',all' if optional else ''}") from None
    if element is float and not math.isfinite(x):
      raise ConfigError(f"--{flag}: {text!r} is not finite; give finite numbers")
    out.append(x)
  return tuple(out)


def parse_floats(flag: str, values: Sequence[str] | None) -> tuple[float, ...] | None:
  """Parses a comma-list flag of numbers (`parse_list`)."""
  return parse_list(flag, values, float)


def parse_ints(flag: str, values: Sequence[str] | None) -> tuple[int, ...] | None:
  """Parses a comma-list flag of integers (`parse_list`)."""
  return parse_list(flag, values, int)


def _from_fields(cls, f, **given):
  """Builds a config dataclass from its fields' flags (`given` replaces some, the rest of the
  fields keep their defaults)."""
  values = {}
  for flag, field, kind in _config_fields(cls):
    suffix, element = _flag_kind(kind)
    value = getattr(f, flag)
    if suffix == "list":
      value = parse_list(flag, value, element)
    values[field] = value
  return cls(**{**values, **given})


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
