"""An application's flags derived from its config dataclass: one flag a field, parsed back.

The small-data study (`StudyConfig`) and the article's examples (`ExamplesConfig`) are
configured by a frozen dataclass, as a sweep is; their scripts' flags come from it the way the
sweep's come from `DataConfig` and the rest (`flags._define_fields`): a flag's name is the
field's (or a rename), its type the field's annotation, its help the docstring's line, and its
default the dataclass's -- or, with `--quick`, the config's `quick()` version's. A default is
stated once, in the dataclass; a new field is a new flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from lr_jax.cli.build import parse_list
from lr_jax.cli.flags import _flag_help, _flag_kind, _Once, field_docs


def _fields(cls, names: Mapping[str, str], skip: Sequence[str]) -> list[tuple[str, str, object]]:
  """(flag, field, annotation) of every field of `cls` but those in `skip`."""
  from lr_jax.config.fields import _field_types  # pylint: disable=protected-access
  kinds = _field_types(cls)
  return [(names.get(f.name, f.name), f.name, kinds[f.name]) for f in dataclasses.fields(cls)
          if f.name not in skip]


def _text(value) -> str:
  if value is None:
    return "none"
  if isinstance(value, tuple):
    return ",".join("all" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)
                    for x in value) or "(none)"
  return f"{value:g}" if isinstance(value, float) else str(value)


def define_config_flags(cls, *, names: Mapping[str, str] = {}, skip: Sequence[str] = (),
                        flag_values=None) -> list[str]:
  """Defines a flag for each field of the config dataclass `cls`, and `--quick` if it has one.

  Each flag's default is None: unset, the field keeps the config's default (or `quick()`'s);
  its help is the field's docstring line with both defaults. A tuple field is a comma list
  (`all` for a None element, as `train_sizes`' whole pool).

  Args:
    cls: a frozen config dataclass; a classmethod `quick(**changes)` adds `--quick`.
    names: field -> flag name where they differ (`learning_rates` -> `lrs`).
    skip: fields with no flag of their own (the script derives them otherwise).
    flag_values: absl's `FlagValues`; default `absl.flags.FLAGS`.

  Returns:
    The flags' names, key flags of the calling script (`flags._Once`).
  """
  d = _Once(flag_values)
  docs = field_docs(cls)
  full = cls()
  quick = cls.quick() if hasattr(cls, "quick") else None
  if quick is not None:
    d.DEFINE_bool("quick", False, "A small version for a first look (the defaults marked "
                  "--quick below).", module_name=cls.__module__)
  for flag, field, kind in _fields(cls, names, skip):
    suffix, _ = _flag_kind(kind)
    default = f"Default {_text(getattr(full, field))}"
    if quick is not None and getattr(quick, field) != getattr(full, field):
      default += f"; --quick: {_text(getattr(quick, field))}"
    note = ("Comma list. " if suffix == "list" else "") + default
    getattr(d, f"DEFINE_{suffix}")(flag, None, _flag_help(docs.get(field, ""), note),
                                   module_name=cls.__module__)
  return d.names


def config_from_flags(cls, f, *, names: Mapping[str, str] = {}, skip: Sequence[str] = (),
                      **given):
  """The config the flags describe: `cls()` (or `cls.quick()` with `--quick`), with every flag
  given on the command line and `given` (the skipped fields' values) replacing its field.

  Raises:
    ConfigError: a list entry that is not of its field's type (`parse_list`), or the config's
      own check of a value, naming it.
  """
  changes = {}
  for flag, field, kind in _fields(cls, names, skip):
    value = getattr(f, flag)
    if value is None:
      continue
    suffix, element = _flag_kind(kind)
    changes[field] = parse_list(flag, value, element) if suffix == "list" else value
  changes.update({k: v for k, v in given.items() if v is not None})
  return cls.quick(**changes) if getattr(f, "quick", False) else cls(**changes)
