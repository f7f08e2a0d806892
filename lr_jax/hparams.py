"""The dynamic hyperparameters: every per-variant number, declared once by the registry owning it.

A number's name is SHORT and unique across namespaces (`learning_rate`, `dropout_rate`); the
qualified spelling `"<namespace>.<name>"` (`"model.dropout_rate"`) is accepted wherever a user
names one and `resolve`s to the short name. The host keeps a sweep's points as a table of
columns by short name (`Group.points`, results.csv's columns); the traced core is given them as
one namespaced tree, `nest(columns, axes)` = `{namespace: {name: [H]}}`.

Each registry entry declares its numbers as `{name: HParam}`:
  optim     `lr_jax.optim.OPTIMIZERS[family].hparams`, plus `learning_rate`, `clip_norm` and
            the fine-tuning numbers of every family (`GROUP_HPARAMS`);
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

from collections.abc import Mapping
from typing import NamedTuple, TypeVar

from lr_jax import models, optim
from lr_jax.config import Experiment, Interval, check_choice
from lr_jax.errors import ConfigError
# The vocabulary, spoken here too: `lr_jax.hparams.HParam` is how a user declares a number.
# The names `lr_jax.hparams` has always offered (the ranges, `HParam`, `from_config`) stay here.
from lr_jax.spec import (AT_LEAST_ONE, CLIP_NORM, COUNT, DATA_HPARAMS, FINITE,  # noqa: F401
                         FRACTION, GROUP_HPARAMS, LEARNING_RATE, LOSS_HPARAMS, MODEL_HPARAMS, MOMENTUM,
                         NAMESPACES, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, UNIT, DataHParam,
                         HParam, check_value, declared_outside_optim, from_config,
                         hparams_tree)


T = TypeVar("T")


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
  return optim.SCHEDULES[schedule].hparams


def _optim_specs(family: str) -> Mapping[str, HParam]:
  return {"learning_rate": LEARNING_RATE, **optim.OPTIMIZERS[family].hparams,
          "clip_norm": CLIP_NORM, **GROUP_HPARAMS}


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
      if entry.pixels:
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
  declared = [("optim", {"learning_rate": LEARNING_RATE}),
              *[("optim", family.hparams) for family in optim.OPTIMIZERS.values()],
              ("optim", {"clip_norm": CLIP_NORM, **GROUP_HPARAMS}),
              *[("schedule", schedule.hparams) for schedule in optim.SCHEDULES.values()],
              *declared_outside_optim()]
  out: dict[str, Axis] = {}
  for namespace, specs in declared:
    for name, spec in specs.items():
      if name not in out:
        out[name] = Axis(namespace, name, spec)
      elif out[name].namespace != namespace:
        raise ConfigError(f"hyperparameter {name!r} of {namespace} is also one of "
                          f"{out[name].namespace}; valid choices: a name of its own")
  return out


def nest(columns: Mapping[str, T], known: Mapping[str, Axis]) -> dict[str, dict[str, T]]:
  """The points' columns (short name -> values) as the tree the core reads (`train.Hparams`).

  Args:
    columns: short name -> a column (or a scalar: one variant), each a number of `known`.
    known: the experiment's numbers (`axes`), which say each one's namespace.

  Returns:
    `{namespace: {name: column}}` with every namespace of `NAMESPACES`, empty where none of its
    numbers is in `columns`: the optimizer reads `["optim"]`, the model gets `["model"]`.
  """
  tree: dict[str, dict[str, T]] = {namespace: {} for namespace in NAMESPACES}
  for name, column in columns.items():
    tree[known[name].namespace][name] = column
  return hparams_tree(**tree)


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


def hparam_specs(cfg) -> dict[str, HParam]:
  """The optimizer's and schedule's per-variant numbers of an `OptimConfig`, learning rate first.

  Each with the config's default (`axes` gives every namespace's).
  """
  return {k: a.spec for k, a in axes(Experiment(optim=cfg), task=None,
                                     feature_shape=None).items()
          if a.namespace in ("optim", "schedule")}


def dynamic_hparams(cfg) -> dict[str, float]:
  """The per-variant numbers of an `OptimConfig` that a default sweep traces, with defaults.

  Those whose default is their off value (adam's b1, no clipping) are left to the optimizer.
  """
  return {k: spec.default for k, spec in hparam_specs(cfg).items() if spec.default != spec.off}


def check_experiment(experiment: Experiment) -> None:
  """Checks an experiment's registry names and the per-variant defaults its fields give.

  The configs themselves know no registry (they stay a leaf every layer can import); planning
  (`engine.plan_sweep`) and the scripts' flags call this before anything loads or compiles.

  Raises:
    ConfigError: one line naming the bad name and the valid choices, or the field whose value
      is outside the range its registry declares.
  """
  check_choice("model", experiment.model.name, models.MODELS)
  check_choice("optimizer", experiment.optim.name, optim.OPTIMIZERS)
  check_choice("schedule", experiment.optim.schedule, optim.SCHEDULES)
  for axis in catalog().values():
    part, _, field = axis.spec.field.partition(".")
    value = getattr(getattr(experiment, part), field) if part else None
    if value is not None:
      check_value(field, axis.spec, value)
