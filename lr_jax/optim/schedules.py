"""`SCHEDULES` (name -> `Schedule`: a shape and its numbers) and `PLATEAU`, the numbers of
reduce-on-plateau; each number's default is an `OptimConfig` field's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import optax

from lr_jax.config import Interval, Registry
from lr_jax.optim.shapes import _cosine, _exponential, _fixed, _onecycle, _warmup_cosine
from lr_jax.spec import (AT_LEAST_ONE, COUNT, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, UNIT, HParam,
                         from_config)


class Schedule(NamedTuple):
  """A schedule shape and its dynamic hyperparameters.

  Attributes:
    factory: `(OptimConfig, total_steps) -> shape(step, hparams)`, 1.0 at the peak; `hparams`
      holds its numbers as traced scalars.
    hparams: its per-variant numbers: name -> `HParam` (each default an `OptimConfig` field's).
    horizon: its shape depends on the run's total steps (`factory`'s second argument), so runs
      of different lengths compile apart; the others share one program whatever their length.
  """

  factory: Callable[..., Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]]
  hparams: Mapping[str, HParam] = {}
  horizon: bool = False


def _schedule_number(field: str, valid: Interval, help: str, integer: bool = False) -> HParam:
  return from_config(f"optim.{field}", valid, integer=integer, help=help)


_ALPHA = _schedule_number("alpha", UNIT, "final learning rate as a fraction of the peak")

# Keras' ReduceLROnPlateau, per variant in the trainer (lr_jax.train): its shape is constant;
# the trainer scales the peak by its state, which these numbers drive.
PLATEAU = {
    "plateau_factor": _schedule_number(
        "plateau_factor", OPEN_FRACTION, "multiply the learning rate by this on a plateau"),
    "plateau_patience": _schedule_number(
        "plateau_patience", AT_LEAST_ONE, "epochs without improvement before reducing",
        integer=True),
    "plateau_cooldown": _schedule_number(
        "plateau_cooldown", COUNT, "epochs to wait after a reduction before counting again",
        integer=True),
    "plateau_min_lr": _schedule_number(
        "plateau_min_lr", NON_NEGATIVE, "lower bound of the reduced learning rate"),
    "plateau_min_delta": _schedule_number(
        "plateau_min_delta", NON_NEGATIVE, "an improvement smaller than this does not count"),
}

# name -> Schedule; every shape is 1.0 at its peak and is scaled by the variant's learning rate.
SCHEDULES: dict[str, Schedule] = Registry("schedule", {
    "constant": Schedule(lambda cfg, total: _fixed(optax.constant_schedule(1.0))),
    "exponential": Schedule(_exponential, {"decay_rate": _schedule_number(
        "decay_rate", POSITIVE, "exponential decay: multiplier per decay_steps steps")}),
    "cosine": Schedule(_cosine, {"alpha": _ALPHA}, horizon=True),
    "warmup_cosine": Schedule(_warmup_cosine, {
        "warmup_fraction": _schedule_number(
            "warmup_fraction", OPEN_FRACTION, "fraction of all steps spent warming up from 0"),
        "alpha": _ALPHA}, horizon=True),
    "onecycle": Schedule(_onecycle, {"pct_start": _schedule_number(
        "pct_start", OPEN_FRACTION, "one-cycle: fraction of steps spent rising to the peak")},
        horizon=True),
    "piecewise": Schedule(
        lambda cfg, total: _fixed(
            optax.piecewise_constant_schedule(1.0, dict(zip(cfg.boundaries, cfg.scales))))),
    "plateau": Schedule(lambda cfg, total: _fixed(optax.constant_schedule(1.0)), PLATEAU),
})
