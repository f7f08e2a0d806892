"""The dynamic hyperparameters: every per-variant number, declared once by the registry owning it.

A sweep's points are a flat dict `name -> [H]` of SHORT names, unique across namespaces
(`learning_rate`, `dropout_rate`); the qualified spelling `"<namespace>.<name>"`
(`"model.dropout_rate"`) is accepted wherever a user names one and `resolve`s to the short name.

Each registry entry declares its numbers as `{name: HParam}`:
  optim     `lr_jax.optim.OPTIMIZERS[family].hparams`, plus `learning_rate` and `clip_norm`;
  schedule  `lr_jax.optim.SCHEDULES[shape].hparams`;
  loss      `LOSS_HPARAMS[task]`;
  model     `MODEL_HPARAMS[name]` for the built-in models, a user `Model.hparams` otherwise;
  data      `DATA_HPARAMS` (augmentation and label noise), each with the data it applies to.
Where an `Experiment` field gives a number's default (`OptimConfig.decay_rate`,
`ModelConfig.dropout`), its `HParam.field` names that field once; `axes` reads it.

An `off` value is one at which the number changes nothing: a grid whose values of such an
axis are all `off` leaves it out of the points, so its code is not in the compiled program.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple, TypeVar

from lr_jax.config import Interval, ModelConfig, OptimConfig
from lr_jax.errors import ConfigError

# The valid values of the dynamic hyperparameters: the planner refuses a grid value outside.
POSITIVE = Interval(0.0, math.inf, "()")
NON_NEGATIVE = Interval(0.0, math.inf, "[)")
FRACTION = Interval(0.0, 1.0, "[)")  # A rate where 1 leaves nothing (dropout, smoothing).
OPEN_FRACTION = Interval(0.0, 1.0, "()")
UNIT = Interval(0.0, 1.0, "[]")
MOMENTUM = Interval(0.0, 1.0, "[)")  # 1 never forgets a gradient: the updates grow without bound.
FINITE = Interval(-math.inf, math.inf, "()")  # A user's number whose range was not declared.
COUNT = Interval(0.0, math.inf, "[)")  # With `integer=True`: 0, 1, 2, ...
AT_LEAST_ONE = Interval(1.0, math.inf, "[)")

NAMESPACES = ("optim", "schedule", "loss", "model", "data")

_CONFIGS = {"optim": OptimConfig, "model": ModelConfig}


class HParam(NamedTuple):
  """A dynamic hyperparameter: its default, the values it may take, and where it is off.

  Attributes:
    default: the value a sweep uses where its grid does not list this hyperparameter.
    valid: the values a grid may give it.
    off: None, or the value at which the number changes nothing; an axis whose values are all
      `off` is left out of the sweep's points (its code is not compiled).
    integer: its values must be whole numbers (a patience, a pixel shift).
    help: one line, for the flags and the README's table.
    field: "" or the `Experiment` field ("optim.decay_rate", "model.dropout") whose value is
      this number's default in an experiment; `default` is that field's default (None, as
      `OptimConfig.clip_norm`'s, reads as `off`).
  """

  default: float
  valid: Interval
  off: float | None = None
  integer: bool = False
  help: str = ""
  field: str = ""


def from_config(field: str, valid: Interval, *, off: float | None = None, integer: bool = False,
                help: str = "") -> HParam:
  """An `HParam` whose default is an `Experiment` field's: stated once, in the dataclass.

  Args:
    field: "optim.<OptimConfig field>" or "model.<ModelConfig field>".
    valid, off, integer, help: as `HParam`'s.

  Returns:
    The `HParam`, its `default` the field's dataclass default (`off` where that is None).
  """
  part, _, name = field.partition(".")
  default = {f.name: f.default for f in dataclasses.fields(_CONFIGS[part])}[name]
  return HParam(off if default is None else float(default), valid, off, integer, help, field)


LEARNING_RATE = HParam(1e-3, POSITIVE, help="peak learning rate (Grid.learning_rates)")
# No clipping is a norm of infinity: absent from the points unless the config or grid sets one.
CLIP_NORM = from_config("optim.clip_norm", POSITIVE, off=math.inf,
                        help="clip gradients to this global norm first")

LOSS_HPARAMS: dict[str, dict[str, HParam]] = {
    "classification": {"label_smoothing": HParam(
        0.0, FRACTION, off=0.0,
        help="training targets mixed with the uniform distribution (optax.smooth_labels)")},
    "regression": {},
}

_DROPOUT = from_config("model.dropout", FRACTION, off=0.0,
                       help="dropout rate after each hidden layer (training only)")
MODEL_HPARAMS: dict[str, dict[str, HParam]] = {
    "mlp": {"dropout_rate": _DROPOUT},
    "cnn": {"dropout_rate": _DROPOUT},
    "linear": {},
}


class DataHParam(NamedTuple):
  """A data number and the data it applies to.

  Attributes:
    spec: its default and range.
    classification: it applies to classification data only.
    image: it applies to image-shaped data only (`feature_shape` of rank >= 2), and its
      largest value is one less than the image's smaller side.
  """

  spec: HParam
  classification: bool = False
  image: bool = False


DATA_HPARAMS: dict[str, DataHParam] = {
    "input_noise": DataHParam(HParam(
        0.0, NON_NEGATIVE, off=0.0,
        help="std of Gaussian noise added to standardized training features")),
    "shift": DataHParam(HParam(
        0.0, COUNT, off=0.0, integer=True,
        help="random shifts of training images by up to this many pixels (zero padded)"),
        image=True),
    "label_noise": DataHParam(HParam(
        0.0, FRACTION, off=0.0,
        help="fraction of training labels replaced by a random other class"),
        classification=True),
}


class Axis(NamedTuple):
  """One dynamic number of an experiment.

  Attributes:
    namespace: one of `NAMESPACES`.
    name: its short name, unique across namespaces.
    spec: its default (the experiment's), range and off value.
  """

  namespace: str
  name: str
  spec: HParam


def _schedule_specs(schedule: str) -> Mapping[str, HParam]:
  from lr_jax import optim  # Late: optim imports this module.
  return optim.SCHEDULES[schedule].hparams


def _optim_specs(family: str) -> Mapping[str, HParam]:
  from lr_jax import optim
  return {"learning_rate": LEARNING_RATE, **optim.OPTIMIZERS[family].hparams,
          "clip_norm": CLIP_NORM}


def _with_config(spec: HParam, experiment) -> HParam:
  """The spec with the experiment's value of its config field as the default."""
  if not spec.field:
    return spec
  part, _, name = spec.field.partition(".")
  value = getattr(getattr(experiment, part), name)
  return spec._replace(default=spec.off if value is None else float(value))


def _image_sides(feature_shape: tuple[int, ...]) -> int | None:
  return min(feature_shape[0], feature_shape[1]) if len(feature_shape) >= 2 else None


def axes(experiment, *, task: str | None, feature_shape: tuple[int, ...] | None,
         model=None) -> dict[str, Axis]:
  """Every number this experiment has, learning_rate first, then by namespace order.

  Args:
    experiment: the `Experiment`; its config fields give the defaults they name.
    task: "classification" or "regression"; None when the data is not loaded yet: every
      number that could apply is listed.
    feature_shape: one example's shape; None when not known yet (then `shift` keeps its
      registry range).
    model: a user `Model` (its declared `hparams`), or None for the built-in `ModelConfig`'s.

  Returns:
    short name -> `Axis`, its spec's default the experiment's.
  """
  declared: list[tuple[str, Mapping[str, HParam]]] = [
      ("optim", _optim_specs(experiment.optim.name)),
      ("schedule", _schedule_specs(experiment.optim.schedule))]
  if task is None:
    declared.append(("loss", {k: s for specs in LOSS_HPARAMS.values() for k, s in specs.items()}))
  else:
    declared.append(("loss", LOSS_HPARAMS[task]))
  declared.append(("model", MODEL_HPARAMS.get(experiment.model.name, {}) if model is None
                   else getattr(model, "hparams", {})))
  data = {}
  for name, entry in DATA_HPARAMS.items():
    if entry.classification and task not in (None, "classification"):
      continue
    spec = entry.spec
    if entry.image and feature_shape is not None:
      sides = _image_sides(feature_shape)
      if sides is None:
        continue
      spec = spec._replace(valid=Interval(spec.valid.low, sides - 1.0, "[]"))
    data[name] = spec
  declared.append(("data", data))
  out: dict[str, Axis] = {}
  for namespace, specs in declared:
    for name, spec in specs.items():
      if name in out:
        raise ConfigError(f"hyperparameter {name!r} of {namespace} is also one of "
                          f"{out[name].namespace}; valid choices: a name of its own")
      out[name] = Axis(namespace, name, _with_config(spec, experiment))
  return out


def catalog() -> dict[str, Axis]:
  """Every number any registry declares (all families, schedules, built-in models).

  For the CLI, the finder and error messages. A number several entries declare (`b1` of adam
  and lion) is listed once, with the first declaration's spec: they share a namespace and a
  range (their defaults may differ: `axes` gives an experiment's).

  Returns:
    short name -> `Axis`, in namespace order.
  """
  from lr_jax import optim
  declared = [("optim", {"learning_rate": LEARNING_RATE}),
              *[("optim", family.hparams) for family in optim.OPTIMIZERS.values()],
              ("optim", {"clip_norm": CLIP_NORM}),
              *[("schedule", schedule.hparams) for schedule in optim.SCHEDULES.values()],
              *[("loss", specs) for specs in LOSS_HPARAMS.values()],
              *[("model", specs) for specs in MODEL_HPARAMS.values()],
              ("data", {k: entry.spec for k, entry in DATA_HPARAMS.items()})]
  out: dict[str, Axis] = {}
  for namespace, specs in declared:
    for name, spec in specs.items():
      if name not in out:
        out[name] = Axis(namespace, name, spec)
      elif out[name].namespace != namespace:
        raise ConfigError(f"hyperparameter {name!r} of {namespace} is also one of "
                          f"{out[name].namespace}; valid choices: a name of its own")
  return out


def resolve(name: str, known: Mapping[str, Axis]) -> str:
  """'model.dropout_rate' or 'dropout_rate' -> 'dropout_rate', if `known` has it.

  Raises:
    ConfigError: a name (or namespace) `known` does not have, listing the valid qualified
      names.
  """
  namespace, dot, short = name.rpartition(".")
  if short in known and (not dot or known[short].namespace == namespace):
    return short
  valid = ", ".join(f"{a.namespace}.{a.name}" for a in known.values())
  raise ConfigError(f"no hyperparameter {name!r} here; valid choices: {valid}")


def not_here(name: str, experiment, *, task: str | None,
             feature_shape: tuple[int, ...] | None, model=None) -> str:
  """Why a catalog number is not one of this experiment's, e.g. "optimizer 'sgd'"."""
  axis = catalog()[name]
  if axis.namespace == "optim":
    return f"optimizer {experiment.optim.name!r}"
  if axis.namespace == "schedule":
    return f"schedule {experiment.optim.schedule!r}"
  if axis.namespace == "model":
    return f"model {experiment.model.name!r}" if model is None else f"the user model {model.name!r}"
  entry = DATA_HPARAMS.get(name)
  if entry is not None and entry.image:
    return f"data of feature shape {feature_shape} (image-shaped data only: rank >= 2)"
  return f"{task} data (classification only)"


X = TypeVar("X")


def split(hp: Mapping[str, X], namespaces: Mapping[str, str]) -> dict[str, dict[str, X]]:
  """A flat name -> value mapping as the namespaced tree {'optim': {...}, 'model': {...}, ...}.

  Args:
    hp: short name -> value (a point's numbers, or their [H] arrays).
    namespaces: short name -> namespace (`{k: a.namespace for k, a in axes(...).items()}`).

  Returns:
    namespace -> {short name: value}, every one of `NAMESPACES` present (empty where none).
  """
  tree: dict[str, dict[str, X]] = {ns: {} for ns in NAMESPACES}
  for name, value in hp.items():
    tree[namespaces[name]][name] = value
  return tree


def check_value(name: str, spec: HParam, x: float) -> None:
  """Raises `ConfigError` unless `x` is a valid value of this number (whole, if integer)."""
  if isinstance(x, bool) or not isinstance(x, (int, float)) or x not in spec.valid:
    raise ConfigError(f"{name} {x!r} is outside its valid range {spec.valid}")
  if spec.integer and x != math.floor(x):
    raise ConfigError(f"{name} {x!r} is not a whole number; valid choices: integers in "
                      f"{spec.valid}")
