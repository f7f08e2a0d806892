"""The ramp: the learning rate of each step, and the optimizer that grows it."""

from __future__ import annotations

import numpy as np

from lr_jax.config import OptimConfig


def finder_learning_rates(lr_min: float, lr_max: float, num_steps: int) -> np.ndarray:
  """[K] float64: the learning rate of each step, `lr_min * (lr_max / lr_min) ** (k / (K-1))`."""
  return lr_min * (lr_max / lr_min) ** (np.arange(num_steps) / (num_steps - 1))


def finder_optim(optim: OptimConfig) -> OptimConfig:
  """The optimizer the range test runs: the same family and clipping, the exponential schedule.

  The experiment's own schedule is not used: the range test looks for the peak learning rate
  of a schedule, and its ramp replaces the schedule. Every other field is reset, so that two
  experiments differing only in their schedule share one compiled finder.
  """
  return OptimConfig(name=optim.name, schedule="exponential", decay_steps=1,
                     clip_norm=optim.clip_norm)
