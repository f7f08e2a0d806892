"""Optimizer and schedule registries.

Every optimizer is `optax.inject_hyperparams`-wrapped, so its learning rate and its other
dynamic hyperparameters are traced arrays -- one value per variant in a vmapped sweep, and no
recompilation for a new value. A schedule is a shape (a function of the step with value 1 at its
peak) scaled by the variant's learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lr_jax.config import Interval

# The valid values of the dynamic hyperparameters: the planner refuses a grid value outside.
POSITIVE = Interval(0.0, math.inf, "()")
NON_NEGATIVE = Interval(0.0, math.inf, "[)")
MOMENTUM = Interval(0.0, 1.0, "[)")  # 1 never forgets a gradient: the updates grow without bound.


class HParam(NamedTuple):
  """A dynamic hyperparameter: its default and the values it may take.

  Attributes:
    default: the value a sweep uses where its grid does not list this hyperparameter.
    valid: the values a grid may give it.
  """

  default: float
  valid: Interval


LEARNING_RATE = HParam(1e-3, POSITIVE)  # A grid lists its learning rates; 1e-3 is Grid's default.


class Optimizer(NamedTuple):
  """An optax optimizer family and its dynamic hyperparameters.

  Attributes:
    factory: the optax alias; called with `learning_rate` plus `hparams`.
    hparams: the per-variant numbers besides the learning rate: name -> default and range.
    fixed: keyword arguments that select the family's variant (e.g. `nesterov=True`).
  """

  factory: Callable[..., optax.GradientTransformation]
  hparams: Mapping[str, HParam]
  fixed: Mapping[str, object]


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(optax.sgd, {}, {}),
    "momentum": Optimizer(optax.sgd, {"momentum": HParam(0.9, MOMENTUM)}, {}),
    "nesterov": Optimizer(optax.sgd, {"momentum": HParam(0.9, MOMENTUM)}, {"nesterov": True}),
    "adam": Optimizer(optax.adam, {}, {}),
    "adamw": Optimizer(optax.adamw, {"weight_decay": HParam(1e-4, NON_NEGATIVE)}, {}),
    "rmsprop": Optimizer(optax.rmsprop, {}, {}),
    "adagrad": Optimizer(optax.adagrad, {}, {}),
    "lion": Optimizer(optax.lion, {"weight_decay": HParam(1e-3, NON_NEGATIVE)}, {}),
    "lamb": Optimizer(optax.lamb, {"weight_decay": HParam(0.0, NON_NEGATIVE)}, {}),
}


class Schedule(NamedTuple):
  """A schedule shape and its dynamic hyperparameters.

  Attributes:
    factory: `(OptimConfig, total_steps) -> shape(step, hparams)`, 1.0 at the peak.
    hparams: names of its per-variant numbers -> the `OptimConfig` field giving the default.
    valid: names of its per-variant numbers -> the values they may take.
  """

  factory: Callable[..., Callable[[jax.Array, Mapping[str, jax.Array]], jax.Array]]
  hparams: Mapping[str, str]
  valid: Mapping[str, Interval] = {}


def _fixed(schedule: optax.Schedule):
  return lambda step, hparams: schedule(step)


def _exponential(cfg, total_steps: int):
  # Keras ExponentialDecay: lr * decay_rate ** (step / decay_steps). Written here rather than
  # with optax.exponential_decay, whose Python checks of decay_rate cannot take a traced value.
  del total_steps

  def shape(step, hparams):
    p = step.astype(jnp.float32) / cfg.decay_steps
    if cfg.staircase:
      p = jnp.floor(p)
    return jnp.power(hparams["decay_rate"], p)

  return shape


def _warmup_cosine(cfg, total_steps: int):
  warmup = max(1, round(cfg.warmup_fraction * total_steps))
  return _fixed(optax.warmup_cosine_decay_schedule(
      0.0, 1.0, warmup, max(total_steps, warmup + 1), end_value=cfg.alpha))


# name -> Schedule; every shape is 1.0 at its peak and is scaled by the variant's learning rate.
SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(lambda cfg, total: _fixed(optax.constant_schedule(1.0)), {}),
    "exponential": Schedule(_exponential, {"decay_rate": "decay_rate"},
                            {"decay_rate": POSITIVE}),
    "cosine": Schedule(
        lambda cfg, total: _fixed(optax.cosine_decay_schedule(1.0, total, alpha=cfg.alpha)), {}),
    "warmup_cosine": Schedule(_warmup_cosine, {}),
    "onecycle": Schedule(
        lambda cfg, total: _fixed(optax.cosine_onecycle_schedule(total, 1.0, pct_start=cfg.pct_start)),
        {}),
    "piecewise": Schedule(
        lambda cfg, total: _fixed(
            optax.piecewise_constant_schedule(1.0, dict(zip(cfg.boundaries, cfg.scales)))), {}),
}


def hparam_specs(cfg) -> dict[str, HParam]:
  """The per-variant numbers of an `OptimConfig`, their defaults and ranges, learning rate first.

  The optimizer family's (weight decay, momentum) and the schedule's (exponential decay rate)
  are all dynamic: sweeping them costs no recompilation.
  """
  schedule = SCHEDULES[cfg.schedule]
  return {"learning_rate": LEARNING_RATE, **OPTIMIZERS[cfg.name].hparams,
          **{k: HParam(float(getattr(cfg, field)), schedule.valid[k])
             for k, field in schedule.hparams.items()}}


def dynamic_hparams(cfg) -> dict[str, float]:
  """The per-variant numbers of an `OptimConfig` with their defaults, learning rate first."""
  return {k: spec.default for k, spec in hparam_specs(cfg).items()}


def make_optimizer(cfg, total_steps: int) -> Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]:
  """Returns `hparams -> optax transformation` for an `OptimConfig`.

  Args:
    cfg: the static `OptimConfig`.
    total_steps: optimizer steps in the whole run (the horizon of cosine/onecycle schedules).

  Returns:
    A pure function of one variant's hparams (`learning_rate` and the family's extras, scalar
    arrays); call it inside the traced code, the same way for `init` and `update`.
  """
  family = OPTIMIZERS[cfg.name]
  shape = SCHEDULES[cfg.schedule].factory(cfg, total_steps)
  injected = optax.inject_hyperparams(family.factory)

  def make(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    peak = hparams["learning_rate"]
    extras = {k: hparams[k] for k in family.hparams}
    tx = injected(learning_rate=lambda step: peak * shape(step, hparams), **extras, **family.fixed)
    if cfg.clip_norm is not None:
      tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx

  return make


def current_learning_rate(opt_state) -> jax.Array:
  """The learning rate the last update used (read from the injected hyperparameters)."""
  for state in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.InjectStatefulHyperparamsState)):
    if isinstance(state, optax.InjectStatefulHyperparamsState):
      return state.hyperparams["learning_rate"]
  raise ValueError("no injected hyperparameters in this optimizer state")

