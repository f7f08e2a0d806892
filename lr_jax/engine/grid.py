"""The grid (`Grid`): a sweep's dynamic axes, their counts, and the points they make."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lr_jax import hparams as hparams_lib
from lr_jax.config import (Experiment, check_distinct, check_fields, check_learning_rates,
                           check_positive)
from lr_jax.engine.placement import _host_memory_bytes, _size
from lr_jax.errors import ConfigError
from lr_jax.models import Model


@dataclasses.dataclass(frozen=True)
class Grid:
  """The dynamic axes of a sweep; their product is the variant axis of every compile group.

  Attributes:
    learning_rates: peak learning rates, distinct.
    seeds: training seeds, distinct (init and minibatch order; the data split has its own
      `data_seed`).
    hparams: other per-variant numbers, e.g. `{"model.dropout_rate": (0, .2), "weight_decay":
      (0, 1e-4)}` or its `(name, values)` pairs: any of `lr_jax.hparams.catalog()`, named
      short or qualified by its namespace (stored short), or "model.<name>" of a user
      model's declared number; values distinct. A name the experiment does not have, or a
      value outside its range, is refused when planned: before data is loaded, or before
      compiling where it depends on the data (shift's image size, classification-only
      numbers). One it has but not listed takes the experiment's default.

  Numbers may be numpy or JAX numbers and sequences 1-D arrays; they are stored as Python
  tuples of Python numbers.
  """

  learning_rates: tuple[float, ...] = (1e-3,)
  seeds: tuple[int, ...] = (0,)
  hparams: tuple[tuple[str, tuple[float, ...]], ...] = ()

  def __post_init__(self):
    if isinstance(self.hparams, Mapping):
      object.__setattr__(self, "hparams", tuple(self.hparams.items()))
    # Before any per-value check: those walk every value, and a grid of 1e9 variants would hang
    # there (or in planning) rather than be refused.
    check_variant_count(_grid_counts(self))
    check_fields(self)
    object.__setattr__(self, "learning_rates", check_learning_rates(self.learning_rates))
    # A repeated point would narrow the interval: n counts runs, not distinct points.
    twice = " (a repeated one would be trained twice and counted as more runs)"
    check_distinct("learning rates", self.learning_rates, twice)
    if not self.seeds:
      raise ConfigError("the seed list is empty; give at least one seed")
    for s in self.seeds:
      check_positive("seed", s, integer=True, allow_zero=True)
    check_distinct("seeds", self.seeds, twice)
    object.__setattr__(self, "hparams", tuple(
        (_grid_name(name), values) for name, values in self.hparams))
    check_distinct("hyperparameter names", [name for name, _ in self.hparams])
    for name, values in self.hparams:
      if not values:
        raise ConfigError(f"hyperparameter {name!r} has an empty list of values")
      for x in values:  # The experiment's range is checked when planned (`_points`).
        if not math.isfinite(x):
          raise ConfigError(f"hyperparameter {name!r} must be finite, got {x!r}")
      check_distinct(f"{name} values", values, twice)


# A variant's result row: some 20 columns of 8 bytes (`SweepResult.rows`). The least host memory
# any variant takes, whatever its model; planning counts the rest (`_check_memory`).
_ROW_BYTES = 160


def _grid_counts(grid) -> list[tuple[str, int]]:
  """The grid's axes as `(description, length)`, from `len()` alone (nothing iterated); an
  axis whose length cannot be read is left out (`check_fields` then names its type)."""
  axes = [("learning rate", grid.learning_rates), ("seed", grid.seeds)]
  hparams = grid.hparams if isinstance(grid.hparams, (tuple, list)) else ()
  for pair in hparams:
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str):
      axes.append((f"{pair[0]} value", pair[1]))
  counts = []
  for what, values in axes:
    if isinstance(values, (str, bytes)):
      continue
    try:
      n = len(values)
    except TypeError:
      continue
    counts.append((f"{n:,} {what}{'s' * (n != 1)}", n))
  return counts


def check_variant_count(counts: Sequence[tuple[str, int]]) -> None:
  """Refuses a grid whose variants' result rows alone would not fit in this machine's memory.

  Cheap: it multiplies counts, so a caller can check a grid before building it (a script before
  expanding `--num_lrs` into learning rates or `--seeds` into a tuple:
  `check_variant_count([("--num_lrs=16", 16), ("--seeds=3", 3)])`). Planning refuses tighter,
  once the model and epochs are known (`plan_sweep`).

  Args:
    counts: `(description, length)` of each axis, e.g. `("--seeds=3", 3)`.

  Raises:
    ConfigError: one line naming the counts, the memory they need and this machine's.
  """
  total = math.prod(n for _, n in counts)
  memory = _host_memory_bytes()
  if memory is None or total * _ROW_BYTES <= memory:
    return
  product = " x ".join(what for what, _ in counts)
  raise ConfigError(
      f"{product} = {total:,} variants: their result rows alone need "
      f"~{_size(total * _ROW_BYTES)} of host memory ({_ROW_BYTES} bytes each), more than this "
      f"machine's {_size(memory)}; valid: at most {memory // _ROW_BYTES:,} variants (fewer "
      "learning rates, seeds or hyperparameter values), and fewer still once the model's "
      "state is counted")


def _grid_name(name: str) -> str:
  """A grid's name of a number, short; "model.<name>" kept for a user model's own numbers,
  which only the model declares (checked when planned)."""
  if not isinstance(name, str):
    raise ConfigError(f"Grid.hparams names must be strings, got {name!r}")
  known = hparams_lib.catalog()
  namespace, dot, short = name.rpartition(".")
  if namespace == "model" and short.isidentifier() and short not in known:
    return name
  name = hparams_lib.resolve(name, known)
  if name == "learning_rate":
    raise ConfigError("Grid.hparams may not list learning_rate; valid choice: give them as "
                      "Grid(learning_rates=...)")
  return name


def _points(experiment: Experiment, grid: Grid, *, task: str | None = None,
            feature_shape: tuple[int, ...] | None = None,
            model: Model | None = None) -> dict[str, np.ndarray]:
  """The grid points of an experiment: name -> [H] values, every value in its declared range.

  The product of `_point_columns` (see there).
  """
  return _product(_point_columns(experiment, grid, task=task, feature_shape=feature_shape,
                                 model=model))


def _product(columns: dict[str, tuple]) -> dict[str, np.ndarray]:
  """Every combination of the columns' values, as [H] float64 columns (the first varies slowest)."""
  combos = list(itertools.product(*columns.values()))
  # float64 on the host, so results report the values as given; float32 on the device.
  return {k: np.array([c[i] for c in combos], np.float64) for i, k in enumerate(columns)}


def _point_columns(experiment: Experiment, grid: Grid, *, task: str | None = None,
                   feature_shape: tuple[int, ...] | None = None,
                   model: Model | None = None) -> dict[str, tuple]:
  """The axes of an experiment's grid points: name -> values, every value checked; the points
  are their product (`_points`), which this does not build.

  Every number the experiment has (`lr_jax.hparams.axes`) is an axis: the grid's values or the
  experiment's default. An axis whose values are all its `off` value is left out (its code is
  not compiled), so a grid that does not sweep dropout is the program without dropout.

  Args:
    experiment: the static configuration.
    grid: the dynamic axes.
    task, feature_shape: the data's; None before it is loaded (then only what holds for any
      data is checked).
    model: a user model (its declared numbers), or None.
  """
  known = hparams_lib.axes(experiment, task=task, feature_shape=feature_shape, model=model)
  catalog = hparams_lib.catalog()
  listed = []
  for name, values in grid.hparams:
    short = name.rpartition(".")[2]
    if short not in known and short in catalog:
      if all(x == catalog[short].spec.off for x in values):
        continue  # Off: it changes nothing here either (--dropout=0 with a linear model).
      valid = ", ".join(f"{a.namespace}.{a.name}" for a in known.values())
      why = hparams_lib.not_here(short, experiment, task=task, feature_shape=feature_shape,
                                 model=model)
      raise ConfigError(f"hyperparameter {short!r} does not apply to {why}; valid choices: "
                        f"{valid}")
    listed.append((name, values))
  given = {hparams_lib.resolve(name, known): values for name, values in listed}
  columns = {"learning_rate": grid.learning_rates}
  for name, axis in known.items():
    if name == "learning_rate":
      continue
    values = given.get(name, (axis.spec.default,))
    for x in given.get(name, ()):  # Defaults are the config's, checked when it was built.
      hparams_lib.check_value(name, axis.spec, x)
    if all(x == axis.spec.off for x in values):
      continue
    columns[name] = values
  for x in grid.learning_rates:
    hparams_lib.check_value("learning_rate", known["learning_rate"].spec, x)
  return columns
