"""The learning-rate grid: `log_spaced`, `check_learning_rates`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from lr_jax.config.checks import check_positive
from lr_jax.config.fields import check_type
from lr_jax.errors import ConfigError


def log_spaced(lr_min: float, lr_max: float, num: int) -> tuple[float, ...]:
  """`num` learning rates log-spaced from `lr_min` to `lr_max` inclusive, to 12 digits."""
  lr_min, lr_max = check_learning_rates((lr_min, lr_max))
  if lr_min >= lr_max:
    raise ConfigError(f"lr_min must be < lr_max, got lr_min={lr_min!r} lr_max={lr_max!r}")
  check_positive("num_lrs", num, integer=True)
  num = int(num)
  if num == 1:
    return (lr_min,)
  ratio = math.log(lr_max / lr_min) / (num - 1)
  # 12 significant digits: the grid prints as given (0.01, not 0.010000000000000005) and is
  # still distinct at any spacing a sweep would use.
  return tuple(float(f"{lr_min * math.exp(ratio * i):.12g}") for i in range(num))


def check_learning_rates(lrs: Sequence[float]) -> tuple[float, ...]:
  """Validates a learning-rate grid: non-empty, finite, positive."""
  lrs = tuple(lrs)
  if not lrs:
    raise ConfigError("the learning-rate grid is empty; give at least one learning rate")
  for lr in lrs:
    if (isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real)
        or not math.isfinite(lr) or lr <= 0):
      raise ConfigError(f"learning rate must be a finite number > 0, got {lr!r}")
  return tuple(check_type(lr, float, "learning rate") for lr in lrs)
