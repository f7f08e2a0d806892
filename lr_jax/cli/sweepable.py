"""The sweepable numbers' flags: names, help, defaults, the README's table, values parsed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lr_jax.errors import ConfigError


_HPARAM_MODULE = "lr_jax.hparams"  # --helpfull groups a namespace's flags under its module name.


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
    if data.image:
      return ("image-shaped data (rank >= 2)"
              + (", up to the smaller side - 1" if data.pixels else ""))
    return "classification" if data.classification else "any data"
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
