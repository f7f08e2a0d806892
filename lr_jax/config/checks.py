"""The checks of a value: a choice, distinct values, a positive number, an `Interval`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.errors import ConfigError

# JAX computes in 32 bits (x64 off): a count or seed past this overflows where it meets JAX
# (`train.Budget`'s int32 epochs, patience and step cap; the engine's int32 seeds).
INT32_MAX = 2**31 - 1


def check_choice(what: str, value: object, choices: Iterable[str]) -> None:
  """Raises `ConfigError` unless `value` is one of `choices`."""
  choices = tuple(choices)
  if value not in choices:
    raise ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


class Interval(NamedTuple):
  """The valid values of a number: `low` to `high`, each end included or not.

  Attributes:
    low: the lower end.
    high: the upper end (`math.inf` for none).
    ends: "[]", "[)", "(]" or "()": which ends are included, as written in mathematics.
  """

  low: float
  high: float
  ends: str = "[]"

  def __contains__(self, x: float) -> bool:
    above = x >= self.low if self.ends[0] == "[" else x > self.low
    below = x <= self.high if self.ends[1] == "]" else x < self.high
    return math.isfinite(x) and above and below

  def __str__(self) -> str:
    return f"{self.ends[0]}{self.low:g}, {self.high:g}{self.ends[1]}"


def check_distinct(what: str, values: Sequence, why: str = "") -> None:
  """Raises `ConfigError` naming the first value that repeats in `values`."""
  seen = set()
  for x in values:
    if x in seen:
      count = list(values).count(x)
      times = "twice" if count == 2 else f"{count} times"
      raise ConfigError(f"{what} must be distinct{why}, got {x!r} {times} in {tuple(values)}")
    seen.add(x)


def tuple_fields(config, names: Sequence[str]) -> None:
  """Sets each named field of a frozen dataclass to a tuple of its values, refusing an empty
  or a repeated one in one line (an application config's axes: sizes, widths, grids)."""
  for name in names:
    value = tuple(getattr(config, name))
    if not value:
      raise ConfigError(f"{name} is empty; give at least one")
    if len(set(value)) != len(value):
      raise ConfigError(f"{name} has duplicates: {value}")
    object.__setattr__(config, name, value)


def check_positive(what: str, value: float, *, integer: bool = False, allow_zero: bool = False) -> None:
  """Raises `ConfigError` unless `value` is a finite positive (or zero) number.

  An integer must also fit in 32 bits (at most `INT32_MAX`): every count and seed of lr_jax
  reaches JAX, which holds it as an int32, and a larger one would overflow only after compiling.
  """
  ok_type = isinstance(value, numbers.Integral if integer else numbers.Real)
  if isinstance(value, (bool, np.bool_)) or not ok_type or not math.isfinite(value):
    kind = "an integer" if integer else "a finite number"
    raise ConfigError(f"{what} must be {kind}, got {value!r}")
  if value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ConfigError(f"{what} must be {bound}, got {value!r}")
  if integer and value > INT32_MAX:
    raise ConfigError(f"{what} must be at most {INT32_MAX} (2**31 - 1: JAX holds it as a 32-bit "
                      f"integer), got {value!r}; valid: {0 if allow_zero else 1}..{INT32_MAX}")
