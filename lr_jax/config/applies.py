"""Which fields of a config only some values of another field read (`APPLIES`), and why not."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import NamedTuple

# The built-in data sets that `noise` and `num_samples` make (`lr_jax.data.DATASETS`); the real
# ones and data files are fixed data.
SYNTHETIC_DATASETS = ("moons", "spirals", "blobs", "linear", "teacher")


@dataclasses.dataclass(frozen=True)
class ValuesWhere:
  """The values of a field that a test picks out, where they cannot be listed (any folder).

  Attributes:
    test: whether a value is one of them.
    words: how messages name them, e.g. "a folder of images".
  """

  test: Callable[[object], bool]
  words: str

  def __contains__(self, value) -> bool:
    return self.test(value)

  def __str__(self) -> str:
    return self.words


def _is_folder(value) -> bool:
  return isinstance(value, str) and os.path.isdir(value)


# The paths `lr_jax.data` reads as a folder of images (`Dataset.from_folder`): any folder.
IMAGE_FOLDERS = ValuesWhere(_is_folder, "a folder of images")
# A pretrained start's source (`ModelConfig.init_from`): any path given.
GIVEN = ValuesWhere(lambda value: value is not None, "a pretrained start")


class Applies(NamedTuple):
  """Fields of a config that only some values of another of its fields read.

  Attributes:
    fields: the fields read only then, e.g. ("decay_steps", "staircase").
    by: the field whose value decides, e.g. "schedule".
    values: the values of `by` that read `fields`; (None,) reads them only while `by` is unset;
      a `ValuesWhere` those its test picks out.
    note: why, for messages ("" for none beyond the values).
  """

  fields: tuple[str, ...]
  by: str
  values: tuple | ValuesWhere
  note: str = ""


# Which static fields of each config only some registry entries (or settings) read, by class
# name; the fields not listed apply to every configuration. The dynamic numbers are declared by
# the registries themselves (`lr_jax.hparams`), and a grid value of one that does not apply is
# refused when planned. `unused_fields` reads this table; the CLI refuses a flag given for a field
# it lists as unused (`lr_jax.cli`).
APPLIES: dict[str, tuple[Applies, ...]] = {
    "DataConfig": (
        Applies(("noise", "num_samples"), "dataset", SYNTHETIC_DATASETS,
                "the real data sets and data files are fixed data"),
        Applies(("val_fraction",), "val_dataset", (None,), "its rows are the validation split"),
        Applies(("val_fraction",), "folds", (None,),
                "k-fold cross-validation validates on each fold in turn and uses every "
                "non-test row"),
        Applies(("image_size", "color"), "dataset", IMAGE_FOLDERS),
    ),
    "ModelConfig": (Applies(("hidden", "activation"), "name", ("mlp", "cnn")),
                    Applies(("head",), "init_from", GIVEN)),
    "OptimConfig": (
        Applies(("decay_steps", "staircase"), "schedule", ("exponential",)),
        Applies(("boundaries", "scales"), "schedule", ("piecewise",)),
    ),
    "RunOptions": (Applies(("prune_rungs", "prune_eta"), "prune", ("halving",)),),
}


class Unused(NamedTuple):
  """Why a field of a config is not read: the rule and the deciding field's value."""

  rule: Applies
  value: object


def unused_fields(config) -> dict[str, Unused]:
  """The fields of a config that its other fields leave unread (`APPLIES`), field -> why.

  E.g. `unused_fields(OptimConfig(schedule="constant"))` has "decay_steps", "staircase",
  "boundaries" and "scales"; a field several rules leave unread has the first of them.
  """
  out: dict[str, Unused] = {}
  for rule in APPLIES.get(type(config).__name__, ()):
    value = getattr(config, rule.by)
    if value not in rule.values:  # A Dataset object compares by identity: not a name.
      for field in rule.fields:
        out.setdefault(field, Unused(rule, value))
  return out


def _listed(values: tuple | ValuesWhere, sep: str) -> str:
  return str(values) if isinstance(values, ValuesWhere) else sep.join(map(str, values))


def why_unused(why: Unused, name=lambda field: field) -> str:
  """'to schedule=constant (only to exponential)': how `Unused` reads in a message.

  Args:
    why: from `unused_fields`.
    name: how a field is named, e.g. its flag (`lambda f: f"--{f}"`).
  """
  rule, value = why
  by = name(rule.by)
  shown = getattr(value, "name", value)
  if rule.values == (None,):
    text = f"with {by}={shown}"
  elif value is None:
    text = f"without {by}={_listed(rule.values, '/')}"
  else:
    text = f"to {by}={shown} (only to {_listed(rule.values, ', ')})"
  return f"{text}: {rule.note}" if rule.note else text
