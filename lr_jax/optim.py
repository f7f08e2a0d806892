"""Optimizer and schedule registries.

Every optimizer is `optax.inject_hyperparams`-wrapped, so its learning rate and its other
dynamic hyperparameters are traced arrays -- one value per variant in a vmapped sweep, and no
recompilation for a new value. A schedule is a shape (a function of the step with value 1 at its
peak) scaled by the variant's learning rate. Every transformation is applied to the parameters'
pytree (the model's layers), so per-layer ones -- LAMB's trust ratio, weight-decay masks,
adafactor's factored moments -- are what they say. `register_optimizer` adds a user family.
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
FINITE = Interval(-math.inf, math.inf, "()")  # A user's number whose range was not declared.


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
    extra_args: None, or `loss -> {name: value}`: keyword arguments of `update` beyond the
      gradient, state and params, computed from the minibatch's mean loss (e.g.
      `lambda loss: {"value": loss}` for `optax.contrib.reduce_on_plateau`).
    eval_params: None, or `(state, params) -> params`: the parameters to validate and keep,
      from the family's optimizer state (its own, inside the injection and clipping) and
      the trained parameters, both pytrees (e.g. `optax.contrib.schedule_free_eval_params`).
  """

  factory: Callable[..., optax.GradientTransformation]
  hparams: Mapping[str, HParam]
  fixed: Mapping[str, object]
  extra_args: Callable[[jax.Array], Mapping[str, jax.Array]] | None = None
  eval_params: Callable[[optax.OptState, object], object] | None = None


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


# Built-in families whose update on the raveled parameter vector is their update on the pytree,
# bit for bit: elementwise, with no mask and no per-layer norm (lamb has one). The trainer
# updates the raveled vector for them -- one loop over one buffer per state slot, measured
# faster on workload P (benchmarks/BENCHMARKS.md) -- and the pytree for every other family.
ELEMENTWISE = frozenset({"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad",
                         "lion"})


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


def register_optimizer(name: str, factory: Callable[..., optax.GradientTransformation],
                       hparams: Mapping[str, float | HParam] | None = None, *,
                       fixed: Mapping[str, object] | None = None,
                       extra_args: Callable[[jax.Array], Mapping[str, jax.Array]] | None = None,
                       eval_params: Callable[[optax.OptState, object], object] | None = None
                       ) -> str:
  """Adds a user optimizer family to `OPTIMIZERS`, so `OptimConfig(name=name)` trains with it.

      def my_adamw(learning_rate, weight_decay):
        return optax.adamw(learning_rate, weight_decay=weight_decay,
                           mask=lambda p: jax.tree.map(lambda a: a.ndim > 1, p))
      register_optimizer("my_adamw", my_adamw, {"weight_decay": 1e-4})
      run_sweep(Experiment(optim=OptimConfig(name="my_adamw")),
                Grid(learning_rates=(1e-3, 3e-3), hparams=(("weight_decay", (0.0, 1e-2)),)))

  The factory is called as `factory(learning_rate=schedule, **hparams, **fixed)` inside
  `optax.inject_hyperparams`, as the built-in families are: each of `hparams` is a traced
  number per variant (a `Grid` axis, no recompilation for a new value), `learning_rate` is the
  schedule of the variant's peak. The update sees the parameters' pytree (the model's layers).
  The config holds only the name, so one name means one optimizer for the whole process.

  Args:
    name: the family's name in `OptimConfig(name=...)`.
    factory: `(learning_rate, **hparams, **fixed) -> optax.GradientTransformation`.
    hparams: its dynamic hyperparameters besides the learning rate: name -> default, or
      `HParam(default, valid)` to declare the values a grid may give it (a bare default allows
      any finite number).
    fixed: static keyword arguments (e.g. `{"nesterov": True}`).
    extra_args: `loss -> {name: value}`, extra keyword arguments of `update` from the
      minibatch's mean loss: `lambda loss: {"value": loss}` for plateau-style transformations.
    eval_params: `(state, params) -> params`, the parameters validated, tracked as best and
      returned, computed from the factory's transformation's state and the trained parameters:
      `optax.contrib.schedule_free_eval_params` for `optax.contrib.schedule_free_*`.

  Returns:
    `name`.

  Raises:
    ConfigError: a name already registered to another optimizer (so a compiled program is
      never reused for a different one), a factory that does not accept these arguments, or
      a default that is not a finite number.
  """
  import inspect
  import math
  from lr_jax.errors import ConfigError
  if not isinstance(name, str) or not name:
    raise ConfigError(f"optimizer name must be a non-empty string, got {name!r}")
  hparams, fixed = dict(hparams or {}), dict(fixed or {})
  for key, value in hparams.items():
    if key in ("learning_rate", *_schedule_hparams()):
      raise ConfigError(f"optimizer {name!r}: hyperparameter {key!r} is taken by the learning "
                        f"rate or a schedule; valid choices: other names")
    spec = value if isinstance(value, HParam) else HParam(value, FINITE)
    default = spec.default
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(
        default) or not isinstance(spec.valid, Interval) or default not in spec.valid:
      raise ConfigError(f"optimizer {name!r}: default of {key!r} must be a finite number in "
                        f"its valid range, got {value!r}")
    hparams[key] = HParam(float(default), spec.valid)
  if not callable(factory):
    raise ConfigError(f"optimizer {name!r}: factory must be callable, got {factory!r}")
  try:
    inspect.signature(factory).bind(learning_rate=1.0, **{k: v.default for k, v in hparams.items()},
                                    **fixed)
  except TypeError as e:
    raise ConfigError(f"optimizer {name!r}: factory cannot be called with learning_rate, "
                      f"{', '.join([*hparams, *fixed]) or 'nothing else'}: {e}") from None
  except ValueError:  # No signature (a builtin): let the first trace tell.
    pass
  entry = Optimizer(factory, hparams, fixed,
                    extra_args=extra_args, eval_params=eval_params)
  if name in OPTIMIZERS and OPTIMIZERS[name] != entry:
    raise ConfigError(f"optimizer {name!r} is already registered to another optimizer; "
                      f"valid choices: a new name (taken: {', '.join(OPTIMIZERS)})")
  OPTIMIZERS[name] = entry
  return name


def _schedule_hparams() -> set[str]:
  return {k for schedule in SCHEDULES.values() for k in schedule.hparams}


def make_optimizer(cfg, total_steps: int) -> Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]:
  """Returns `hparams -> optax transformation` for an `OptimConfig`.

  Args:
    cfg: the static `OptimConfig`.
    total_steps: optimizer steps in the whole run (the horizon of cosine/onecycle schedules).

  Returns:
    A pure function of one variant's hparams (`learning_rate` and the family's extras, scalar
    arrays); call it inside the traced code, the same way for `init` and `update`. Apply the
    transformation to the parameters' pytree, not a raveled vector: per-layer families (lamb,
    a weight-decay mask, adafactor) need the layers.
  """
  family = OPTIMIZERS[cfg.name]
  shape = SCHEDULES[cfg.schedule].factory(cfg, total_steps)
  # `fixed` stays static: a number there (a plateau factor) is checked in Python by its factory.
  injected = optax.inject_hyperparams(family.factory, static_args=tuple(family.fixed))

  def make(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    peak = hparams["learning_rate"]
    extras = {k: hparams[k] for k in family.hparams}
    tx = injected(learning_rate=lambda step: peak * shape(step, hparams), **extras, **family.fixed)
    if cfg.clip_norm is not None:
      tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), tx)
    return tx

  return make


def _injected(opt_state) -> optax.InjectStatefulHyperparamsState:
  for state in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.InjectStatefulHyperparamsState)):
    if isinstance(state, optax.InjectStatefulHyperparamsState):
      return state
  raise ValueError("no injected hyperparameters in this optimizer state")


def current_learning_rate(opt_state) -> jax.Array:
  """The learning rate the last update used (read from the injected hyperparameters)."""
  return _injected(opt_state).hyperparams["learning_rate"]


def family_state(opt_state) -> optax.OptState:
  """The state of the family's own transformation: inside the injection and the clipping."""
  return _injected(opt_state).inner_state
