"""`OptimConfig`: optimizer family, schedule shape and clipping."""

from __future__ import annotations

import dataclasses

from lr_jax.config.checks import check_positive
from lr_jax.config.fields import check_fields
from lr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimizer family, schedule shape and clipping.

  The learning rate, and weight decay and momentum where the optimizer has them, are not here:
  they are per-variant numbers (`lr_jax.optim.OPTIMIZERS` lists each family's). The schedule's
  peak is the variant's learning rate; the fields below give its shape.

  Attributes:
    name: optimizer family (see `lr_jax.optim.OPTIMIZERS`).
    schedule: schedule shape (see `lr_jax.optim.SCHEDULES`).
    decay_steps: exponential decay: steps per factor of `decay_rate` (Keras ExponentialDecay).
    decay_rate: exponential decay: multiplier per `decay_steps` steps.
    staircase: exponential decay: decay in whole steps of `decay_steps`.
    warmup_fraction: warmup_cosine: fraction of all steps spent warming up from 0.
    alpha: cosine, warmup_cosine: final learning rate as a fraction of the peak.
    pct_start: onecycle: fraction of steps spent rising to the peak.
    boundaries: piecewise: step boundaries, increasing.
    scales: piecewise: multiplier applied at each boundary.
    clip_norm: clip gradients to this global norm first; None disables clipping.
    plateau_factor: plateau: multiply the learning rate by this when `monitor` stops improving
      (Keras ReduceLROnPlateau).
    plateau_patience: plateau: epochs without improvement before a reduction.
    plateau_cooldown: plateau: epochs after a reduction before counting again.
    plateau_min_lr: plateau: the learning rate is never reduced below this.
    plateau_min_delta: plateau: an improvement smaller than this does not count.

  Every number here but `decay_steps`, `staircase`, `boundaries` and `scales` is only the
  default of a per-variant number (`lr_jax.hparams.catalog()`), which a grid may sweep.
  """

  name: str = "adam"
  schedule: str = "constant"
  decay_steps: int = 1000
  decay_rate: float = 0.9
  staircase: bool = False
  warmup_fraction: float = 0.1
  alpha: float = 0.0
  pct_start: float = 0.3
  boundaries: tuple[int, ...] = ()
  scales: tuple[float, ...] = ()
  clip_norm: float | None = None
  plateau_factor: float = 0.1
  plateau_patience: int = 10
  plateau_cooldown: int = 0
  plateau_min_lr: float = 0.0
  plateau_min_delta: float = 1e-4

  def __post_init__(self):
    check_fields(self)
    check_positive("decay_steps", self.decay_steps, integer=True)
    for b in self.boundaries:  # Step counts: compared with the int32 step in the schedule.
      if b > 0:
        check_positive("piecewise boundary", b, integer=True)
    if self.schedule == "piecewise":
      if not self.boundaries or len(self.boundaries) != len(self.scales):
        raise ConfigError(
            "schedule 'piecewise' needs boundaries and scales of equal, non-zero length, got "
            f"boundaries={self.boundaries} scales={self.scales}")
      if list(self.boundaries) != sorted(set(self.boundaries)) or self.boundaries[0] <= 0:
        raise ConfigError(
            f"piecewise boundaries must be positive and increasing, got {self.boundaries}")
      for s in self.scales:
        check_positive("piecewise scale", s)
