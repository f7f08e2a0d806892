"""The vocabulary of per-variant numbers: `HParam`, the ranges, and the numbers each non-optimizer
registry declares (loss, model, data), and the tree the core reads them in (`hparams_tree`).
A leaf: `optim`, `models` and the catalog (`hparams`)
all speak it, and it imports only the configs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

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


def hparams_tree(**namespaces: Mapping) -> dict[str, dict]:
  """A variant's (or the points') numbers as the tree the core reads (`train.Hparams`).

  E.g. `hparams_tree(optim={"learning_rate": lrs_H}, model={"dropout_rate": rates_H})`.

  Args:
    **namespaces: namespace -> {name: value}, each one of `NAMESPACES`.

  Returns:
    `{namespace: {name: value}}` with every namespace, empty where not given.
  """
  unknown = sorted(set(namespaces) - set(NAMESPACES))
  if unknown:
    raise ConfigError(f"no namespace {unknown[0]!r} of hyperparameters; valid choices: "
                      f"{', '.join(NAMESPACES)}")
  return {namespace: dict(namespaces.get(namespace, {})) for namespace in NAMESPACES}


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

# Fine-tuning: the parameters' layers are the model's top-level entries in the order its init
# makes them; the last is the head, the others the backbone (`models.layers`). Every optimizer
# takes these numbers (the update of a layer scaled: its learning rate is the peak times its
# scale), and each is off at its default, so a sweep without them compiles none of their code.
GROUP_HPARAMS: dict[str, HParam] = {
    "backbone_lr_scale": HParam(
        1.0, NON_NEGATIVE, off=1.0,
        help="the backbone's learning rate as a multiple of the head's (0: frozen, a linear "
             "probe; 1: full fine-tuning)"),
    "layer_lr_decay": HParam(
        1.0, Interval(0.0, 1.0, "(]"), off=1.0,
        help="layer-wise decay: the k-th layer below the head learns at this power k of its "
             "rate"),
    "l2sp": HParam(
        0.0, NON_NEGATIVE, off=0.0,
        help="L2-SP: the backbone's loss gains l2sp / 2 x its squared distance from its start "
             "(the pretrained weights; Li et al. 2018)"),
}

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
    image: it applies to image-shaped data only (`feature_shape` of rank >= 2).
    pixels: its value is a number of pixels: the largest is one less than the image's
      smaller side.
  """

  spec: HParam
  classification: bool = False
  image: bool = False
  pixels: bool = False


DATA_HPARAMS: dict[str, DataHParam] = {
    "input_noise": DataHParam(HParam(
        0.0, NON_NEGATIVE, off=0.0,
        help="std of Gaussian noise added to standardized training features")),
    "shift": DataHParam(HParam(
        0.0, COUNT, off=0.0, integer=True,
        help="random shifts of training images by up to this many pixels (zero padded)"),
        image=True, pixels=True),
    "rotate": DataHParam(HParam(
        0.0, Interval(0, 180, "[]"), off=0.0,
        help="random rotations of training images by up to this many degrees either way "
             "(bilinear; corners zero padded)"),
        image=True),
    "crop": DataHParam(HParam(
        0.0, FRACTION, off=0.0,
        help="random crops of training images, resized back (bilinear): each side cut to "
             "between 1 - crop and 1 of the image's, at a random position"),
        image=True),
    "flip": DataHParam(HParam(
        0.0, UNIT, off=0.0,
        help="probability that a training image is mirrored left to right (where a mirror "
             "image is the same class: not for digits or text)"),
        image=True),
    "label_noise": DataHParam(HParam(
        0.0, FRACTION, off=0.0,
        help="fraction of training labels replaced by a random other class"),
        classification=True),
}


def declared_outside_optim() -> list[tuple[str, dict[str, HParam]]]:
  """(namespace, {name: HParam}) of every number the loss, the built-in models and the data
  declare: the catalog lists them, and no optimizer family may take their names."""
  return [*[("loss", specs) for specs in LOSS_HPARAMS.values()],
          *[("model", specs) for specs in MODEL_HPARAMS.values()],
          ("data", {k: entry.spec for k, entry in DATA_HPARAMS.items()})]


def check_value(name: str, spec: HParam, x: float) -> None:
  """Raises `ConfigError` unless `x` is a valid value of this number (whole, if integer)."""
  if isinstance(x, bool) or not isinstance(x, (int, float)) or x not in spec.valid:
    raise ConfigError(f"{name} {x!r} is outside its valid range {spec.valid}")
  if spec.integer and x != math.floor(x):
    raise ConfigError(f"{name} {x!r} is not a whole number; valid choices: integers in "
                      f"{spec.valid}")
