"""An application's flags come from its config dataclass (`cli.define_config_flags`)."""

from __future__ import annotations

import dataclasses

import pytest
from absl import flags

import lr_jax
from lr_jax import cli


@dataclasses.dataclass(frozen=True)
class Toy:
  """A config of every kind of field.

  Attributes:
    sizes: training sizes; None = all rows.
    names: optimizer names.
    rate: a number.
    count: a count.
    label: a word.
    on: a switch.
  """

  sizes: tuple[int | None, ...] = (25, None)
  names: tuple[str, ...] = ("adam",)
  rate: float = 0.1
  count: int = 3
  label: str = "x"
  on: bool = False

  @classmethod
  def quick(cls, **changes):
    return cls(**{"count": 1, **changes})


def _parsed(*args):
  fv = flags.FlagValues()
  names = cli.define_config_flags(Toy, names={"rate": "lr"}, flag_values=fv)
  fv(["prog", *args])
  return fv, names


def test_each_field_is_a_flag_of_its_type_with_both_defaults_in_its_help():
  fv, names = _parsed()
  assert names == ["quick", "sizes", "names", "lr", "count", "label", "on"]
  assert fv["sizes"].help == "Training sizes; None = all rows. Comma list. Default 25,all."
  assert fv["count"].help == "A count. Default 3; --quick: 1."
  assert cli.config_from_flags(Toy, fv, names={"rate": "lr"}) == Toy()  # Nothing given.


def test_given_flags_replace_their_fields_over_quick_or_the_defaults():
  fv, _ = _parsed("--sizes=5,all", "--names=sgd,adam", "--lr=0.5", "--label=y", "--on")
  assert cli.config_from_flags(Toy, fv, names={"rate": "lr"}) == Toy(
      sizes=(5, None), names=("sgd", "adam"), rate=0.5, label="y", on=True)
  fv, _ = _parsed("--quick", "--label=z")
  assert cli.config_from_flags(Toy, fv, names={"rate": "lr"}) == Toy(count=1, label="z")


def test_a_bad_list_entry_is_one_line_naming_it():
  fv, _ = _parsed("--sizes=5,lots")
  with pytest.raises(lr_jax.ConfigError) as e:
    cli.config_from_flags(Toy, fv, names={"rate": "lr"})
  assert str(e.value) == ("--sizes: 'lots' is not an integer or 'all'; give a comma list like "
                          "64,128,all")


def test_the_study_and_the_examples_have_a_flag_for_every_field():
  # Their scripts' flags are these (the study's regularisation pairs are the sweep's
  # --dropout_rate and --weight_decay): a field added to a config is a flag, with no other edit.
  from lr_jax.article import ExamplesConfig
  from lr_jax.study import StudyConfig
  for cls, names, skip in ((StudyConfig, {"learning_rates": "lrs"}, ("regularisation",)),
                           (ExamplesConfig, {}, ())):
    fv = flags.FlagValues()
    defined = cli.define_config_flags(cls, names=names, skip=skip, flag_values=fv)
    fields = [names.get(f.name, f.name) for f in dataclasses.fields(cls) if f.name not in skip]
    assert defined == ["quick", *fields]
    fv(["prog", "--quick"])
    assert cli.config_from_flags(cls, fv, names=names, skip=skip) == cls.quick()
