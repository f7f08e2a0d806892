"""Optimizer and schedule registries.

Every optimizer is `optax.inject_hyperparams`-wrapped, so its learning rate and its other
dynamic hyperparameters are traced arrays -- one value per variant in a vmapped sweep, and no
recompilation for a new value. A schedule is a shape (a function of the step with value 1 at its
peak) scaled by the variant's learning rate; its numbers (decay rate, warmup fraction, cosine
floor, one-cycle rise, plateau factor and patience) are traced too. Each entry declares its
numbers as `{name: HParam}` (`lr_jax.hparams`). Every transformation is applied to the parameters'
pytree (the model's layers), so per-layer ones -- LAMB's trust ratio, weight-decay masks,
adafactor's factored moments -- are what they say. `register_optimizer` adds a user family.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_jax.config import Interval, Registry
# HParam and the ranges are the vocabulary every registry speaks (`lr_jax.spec`).
from lr_jax.spec import (AT_LEAST_ONE, COUNT, FINITE, MOMENTUM, NON_NEGATIVE, OPEN_FRACTION,
                         POSITIVE, UNIT, HParam, declared_outside_optim, from_config)


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


def _optax(factory, name: str, valid: Interval, help: str, *, off: bool = True) -> HParam:
  """A family's number with optax's default, stated once: in the optax alias's signature.

  `off` (the default) makes that default the number's off value: a sweep that does not vary it
  leaves it to the alias (a Python constant, not traced), as before it was an axis.
  """
  default = float(inspect.signature(factory).parameters[name].default)
  return HParam(default, valid, off=default if off else None, help=help)


def _adam_like(factory, eps: bool = True) -> dict[str, HParam]:
  numbers = {"b1": _optax(factory, "b1", MOMENTUM, "decay of the first-moment average"),
             "b2": _optax(factory, "b2", MOMENTUM, "decay of the second-moment average")}
  if eps:
    numbers["eps"] = _optax(factory, "eps", POSITIVE, "added to the denominator")
  return numbers


def _weight_decay(factory) -> dict[str, HParam]:
  # Traced in every sweep (no off value): a column of every result, as before.
  return {"weight_decay": _optax(factory, "weight_decay", NON_NEGATIVE,
                                 "decoupled weight decay", off=False)}


# optax.sgd's momentum default is None (none); the momentum families' is Keras' 0.9.
_MOMENTUM = HParam(0.9, MOMENTUM, help="momentum of the velocity")


class _Registry(Registry):
  """`OPTIMIZERS`: a dict whose lookup of a user family not yet probed probes it first.

  A family registered before JAX's backends start (at import, before
  `jax.distributed.initialize`) is probed (`_check_uses_learning_rate`) at its first lookup --
  when a sweep is planned -- instead of at registration, which must not start a backend.
  """

  def __getitem__(self, name):
    entry = super().__getitem__(name)
    if name in _UNPROBED:
      try:
        _check_uses_learning_rate(name, entry)
      except Exception:
        del self[name]  # Refused: the name is free again for a factory that uses the rate.
        raise
      finally:
        _UNPROBED.discard(name)
    return entry


# User families registered but not yet probed (see `_Registry`).
_UNPROBED: set[str] = set()

OPTIMIZERS: dict[str, Optimizer] = _Registry("optimizer", {
    "sgd": Optimizer(optax.sgd, {}, {}),
    "momentum": Optimizer(optax.sgd, {"momentum": _MOMENTUM}, {}),
    "nesterov": Optimizer(optax.sgd, {"momentum": _MOMENTUM}, {"nesterov": True}),
    "adam": Optimizer(optax.adam, _adam_like(optax.adam), {}),
    "adamw": Optimizer(optax.adamw, {**_adam_like(optax.adamw), **_weight_decay(optax.adamw)}, {}),
    "rmsprop": Optimizer(optax.rmsprop, {
        "decay": _optax(optax.rmsprop, "decay", MOMENTUM, "decay of the squared-gradient "
                        "average (Keras' rho)"),
        "eps": _optax(optax.rmsprop, "eps", POSITIVE, "added to the denominator")}, {}),
    "adagrad": Optimizer(optax.adagrad, {
        "eps": _optax(optax.adagrad, "eps", POSITIVE, "added to the denominator")}, {}),
    "lion": Optimizer(optax.lion, {**_adam_like(optax.lion, eps=False),
                                   **_weight_decay(optax.lion)}, {}),
    "lamb": Optimizer(optax.lamb, {**_adam_like(optax.lamb), **_weight_decay(optax.lamb)}, {}),
})

# The families above: `register_optimizer` never replaces one.
_BUILT_IN = frozenset(OPTIMIZERS)


# Built-in families whose update on the raveled parameter vector is their update on the pytree,
# bit for bit: elementwise, with no mask and no per-layer norm (lamb has one). The trainer
# updates the raveled vector for them -- one loop over one buffer per state slot, measured
# faster on workload P (benchmarks/BENCHMARKS.md) -- and the pytree for every other family.
ELEMENTWISE = frozenset({"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad",
                         "lion"})


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


# The shapes below are optax's (cosine_decay_schedule, warmup_cosine_decay_schedule,
# cosine_onecycle_schedule, at peak 1) written in jnp, because optax's take Python ints for
# their boundaries and these boundaries are per-variant numbers times the horizon.

def _cosine_decay(count, decay_steps, alpha):
  """optax.cosine_decay_schedule(1, decay_steps, alpha) at `count`: all float arrays."""
  count = jnp.minimum(count, decay_steps)
  return (1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * count / decay_steps))) + alpha


def _cosine(cfg, total_steps: int):
  del cfg

  def shape(step, hparams):
    return _cosine_decay(step.astype(jnp.float32), float(total_steps), hparams["alpha"])

  return shape


def _whole(x):
  # int() of a fraction of the horizon, as optax takes it of the float64 product: float32 puts
  # 0.21 * 300 just below 63, so nudge up by far less than a step. Where float64 itself falls
  # just below a whole number (0.29 * 100), the boundary here is one step later than optax's.
  return jnp.floor(x * (1 + 1e-6))


def _warmup_cosine(cfg, total_steps: int):
  # optax.warmup_cosine_decay_schedule(0, 1, warmup, max(total, warmup + 1), end_value=alpha)
  # with warmup = max(1, round(warmup_fraction * total)): a linear rise, then cosine decay.
  del cfg

  def shape(step, hparams):
    t = step.astype(jnp.float32)
    # round() halves to even as Python's does; a product within float32 rounding of a half
    # (0.07 * 150) may round the other way: warmup one step shorter or longer than optax's.
    warmup = jnp.maximum(1.0, jnp.round(hparams["warmup_fraction"] * total_steps))
    decay_steps = jnp.maximum(float(total_steps), warmup + 1) - warmup
    rise = 1 - jnp.clip(t, 0, warmup) / warmup  # optax.linear_schedule's (1 - frac).
    return jnp.where(t < warmup, (0.0 - 1.0) * rise + 1.0,
                     _cosine_decay(t - warmup, decay_steps, hparams["alpha"]))

  return shape


def _onecycle(cfg, total_steps: int):
  # optax.cosine_onecycle_schedule(total, 1, pct_start): cosine from 1/25 up to 1 over
  # int(pct_start * total) steps, then cosine down to 1/(25 * 1e4) / 25 * 25 at `total`.
  del cfg
  div, final_div = 25.0, 1e4
  start, peak = 1.0 / div, 1.0
  end = peak / (div * final_div)

  def shape(step, hparams):
    t = step.astype(jnp.float32)
    top = _whole(hparams["pct_start"] * total_steps)
    total = float(total_steps)

    def interpolate(a, b, pct):  # optax's _cosine_interpolate.
      return b + (a - b) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)

    up = interpolate(start, peak, t / jnp.maximum(top, 1))
    down = interpolate(peak, end, (t - top) / jnp.maximum(total - top, 1))
    return jnp.where(t < top, up, jnp.where(t < total, down, end))

  return shape


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


def register_optimizer(name: str, factory: Callable[..., optax.GradientTransformation],
                       hparams: Mapping[str, float | HParam] | None = None, *,
                       fixed: Mapping[str, object] | None = None,
                       extra_args: Callable[[jax.Array], Mapping[str, jax.Array]] | None = None,
                       eval_params: Callable[[optax.OptState, object], object] | None = None,
                       overwrite: bool = False) -> str:
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

  The factory must use the `learning_rate` it is given (the results report it): one probe of
  a few updates of a tiny two-leaf pytree, eager, at learning rates 0.001 and 0.002, refuses a
  factory whose updates are the same at both. It runs here if JAX's backends have started,
  else at the family's first lookup in `OPTIMIZERS` (when a sweep is planned), so registering
  at import starts no backend (`jax.distributed.initialize` must come first). A factory the
  probe cannot run (an update that needs the model's own pytree) is left to training.

  Registering the same name again is accepted for the same factory (the same function
  object: re-running the cell that registers it), which replaces the entry's hyperparameters
  and hooks; a different factory under a registered name is refused unless
  `overwrite=True`. A built-in family is never replaced. A changed entry drops the compiled
  programs of this process (`engine`, `finder`), so none traced with the old one is reused.

  Args:
    name: the family's name in `OptimConfig(name=...)`.
    factory: `(learning_rate, **hparams, **fixed) -> optax.GradientTransformation`.
    hparams: its dynamic hyperparameters besides the learning rate: name -> default, or
      `HParam(default, valid)` to declare the values a grid may give it (a bare default allows
      any finite number). `HParam(..., off=x)` with `x` the factory's own default for it
      leaves it out of a sweep that does not vary it (not traced), as the built-in b1, b2, eps.
    fixed: static keyword arguments (e.g. `{"nesterov": True}`).
    extra_args: `loss -> {name: value}`, extra keyword arguments of `update` from the
      minibatch's mean loss: `lambda loss: {"value": loss}` for plateau-style transformations.
    eval_params: `(state, params) -> params`, the parameters validated, tracked as best and
      returned, computed from the factory's transformation's state and the trained parameters:
      `optax.contrib.schedule_free_eval_params` for `optax.contrib.schedule_free_*`.
    overwrite: replace a user family registered under `name` with another factory.

  Returns:
    `name`.

  Raises:
    ConfigError: a name registered to another factory without `overwrite` (so a compiled
      program is never reused for a different one), a built-in name, a factory that does not
      accept these arguments or ignores its learning rate, or a default that is not a finite
      number.
  """
  from lr_jax.errors import ConfigError
  if not isinstance(name, str) or not name:
    raise ConfigError(f"optimizer name must be a non-empty string, got {name!r}")
  if not isinstance(overwrite, bool):
    raise ConfigError(f"optimizer {name!r}: overwrite must be True or False, got {overwrite!r}")
  hparams, fixed = dict(hparams or {}), dict(fixed or {})
  for key, value in hparams.items():
    if key in _taken_names():
      raise ConfigError(f"optimizer {name!r}: hyperparameter {key!r} is taken by the learning "
                        f"rate, clipping, a schedule, loss, model or data; valid choices: "
                        f"other names")
    spec = value if isinstance(value, HParam) else HParam(value, FINITE)
    default = spec.default
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(
        default) or not isinstance(spec.valid, Interval) or default not in spec.valid:
      raise ConfigError(f"optimizer {name!r}: default of {key!r} must be a finite number in "
                        f"its valid range, got {value!r}")
    hparams[key] = spec._replace(default=float(default))
  if not callable(factory):
    raise ConfigError(f"optimizer {name!r}: factory must be callable, got {factory!r}")
  try:
    signature = inspect.signature(factory)
  except ValueError:  # No signature (a builtin): let the first trace tell.
    signature = None
  if signature is not None:
    try:
      signature.bind(learning_rate=1.0, **{k: v.default for k, v in hparams.items()}, **fixed)
    except TypeError as e:
      raise ConfigError(f"optimizer {name!r}: factory cannot be called with learning_rate, "
                        f"{', '.join([*hparams, *fixed]) or 'nothing else'}: {e}") from None
    for key, spec in hparams.items():
      # A sweep that leaves a number at `off` does not pass it: the factory's default applies.
      param = signature.parameters.get(key)
      own = param.default if param is not None else inspect.Parameter.empty
      if spec.off is not None and own != spec.off:
        own = "none" if own is inspect.Parameter.empty else repr(own)
        raise ConfigError(f"optimizer {name!r}: {key!r} is off at {spec.off!r} but the "
                          f"factory's default for it is {own}; valid choices: off=None or "
                          f"off equal to that default")
  entry = Optimizer(factory, hparams, fixed,
                    extra_args=extra_args, eval_params=eval_params)
  old = dict.get(OPTIMIZERS, name)
  if old is not None and old == entry:
    return name  # The same registration again (a notebook cell re-run): nothing changes.
  if name in _BUILT_IN:
    raise ConfigError(f"optimizer {name!r} is already registered: it is built in and cannot be "
                      f"replaced; choose a new name for your optimizer")
  if old is not None and old.factory is not factory and not overwrite:
    raise ConfigError(f"optimizer {name!r} is already registered to another factory "
                      f"({_callable_name(old.factory)}); pass overwrite=True to replace it, or "
                      f"choose a new name")
  if _backends_started():
    _check_uses_learning_rate(name, entry)
    _UNPROBED.discard(name)
  else:
    _UNPROBED.add(name)
  if old is not None:
    _forget_compiled()
  OPTIMIZERS[name] = entry
  return name


def _callable_name(f) -> str:
  return getattr(f, "__qualname__", None) or type(f).__name__


def _backends_started() -> bool:
  """Whether JAX's backends have started (so an eager probe starts nothing new)."""
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # A JAX without it: probe at the first lookup, which is after any start.
    return False


# Caches of compiled programs that key a family by its name (the engine's, the finder's): they
# register here, so a name that now means another optimizer drops its programs, and this
# module need not import the layers above it.
_ON_REREGISTER: list[Callable[[], None]] = []


def on_reregister(forget: Callable[[], None]) -> None:
  """Calls `forget` whenever a registered name is given another optimizer."""
  _ON_REREGISTER.append(forget)


def _forget_compiled() -> None:
  """Drops the programs compiled in this process: they key a family by its name, and a name
  now means another optimizer."""
  for forget in _ON_REREGISTER:
    forget()


# The probe of `_check_uses_learning_rate`: two learning rates, a tiny pytree of two leaves
# (a matrix, for per-layer and factored transformations, and a vector) and a fixed gradient.
_PROBE_RATES = (1e-3, 2e-3)
_PROBE_STEPS = 8  # A factory that warms up from 0 (or accumulates) differs after a few steps.


def _probe_trees():
  params = {"b": np.array([0.5, -1.0, 0.25], np.float32),
            "w": np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)}
  grads = {"b": np.array([0.1, -0.2, 0.3], np.float32),
           "w": np.linspace(0.3, -0.25, 12, dtype=np.float32).reshape(4, 3)}
  return params, grads


def _check_uses_learning_rate(name: str, entry: Optimizer) -> None:
  """Refuses a family whose updates do not depend on its learning rate, in one line.

  Eager (no jit), built as `make_optimizer` builds it (`inject_hyperparams`, the traced
  numbers at their defaults, the rest left to the factory). Up to `_PROBE_STEPS` updates at
  each rate, each applied to its own copy of the parameters; refused if every pair of updates
  is the same and some is not zero. Updates that are all zero, or not finite, tell nothing,
  and a probe that fails (an update needing the model's own pytree or other arguments) is
  left to the trace of the training program, as before.
  """
  from lr_jax.errors import ConfigError
  numbers = {k: spec.default for k, spec in entry.hparams.items() if spec.default != spec.off}
  with jax.ensure_compile_time_eval():  # Values, even where called inside a trace.
    try:
      injected = optax.inject_hyperparams(entry.factory, static_args=tuple(entry.fixed))
      params, grads = _probe_trees()
      params = [jax.tree_util.tree_map(jnp.asarray, params) for _ in _PROBE_RATES]
      grads = jax.tree_util.tree_map(jnp.asarray, grads)
      extra = {} if entry.extra_args is None else dict(entry.extra_args(jnp.float32(1.0)))
      txs = [injected(learning_rate=lr, **numbers, **entry.fixed) for lr in _PROBE_RATES]
      states = [tx.init(p) for tx, p in zip(txs, params)]
      ignored = False
      for _ in range(_PROBE_STEPS):
        updates = []
        for i, tx in enumerate(txs):
          update, states[i] = tx.update(grads, states[i], params[i], **extra)
          params[i] = optax.apply_updates(params[i], update)
          updates.append([np.asarray(u) for u in jax.tree_util.tree_leaves(update)])
        if any(not np.isfinite(u).all() for u in updates[0] + updates[1]):
          return
        if any(u.shape != v.shape or not np.array_equal(u, v) for u, v in zip(*updates)):
          return  # It uses the learning rate.
        # The same, and not zero: ignored so far. Zero (a warmup from 0, an accumulation)
        # tells nothing. Either way the next step may differ (a warmup's first rate is 0).
        ignored = ignored or any(np.any(u != 0) for u in updates[0])
    except ConfigError:
      raise
    except Exception:  # The factory cannot run on the probe: its training trace will tell.
      return
  if ignored:
    raise ConfigError(
        f"optimizer {name!r} ignores its learning_rate: its update is the same at "
        f"{_PROBE_RATES[0]} and {_PROBE_RATES[1]}; the factory must use the learning_rate it "
        f"is given (e.g. optax.adam(learning_rate), not a constant)")


def _taken_names() -> set[str]:
  """The numbers no optimizer family may declare: every other registry's, and the optim ones
  that are not a family's."""
  return {"learning_rate", "clip_norm",
          *(k for schedule in SCHEDULES.values() for k in schedule.hparams),
          *(k for _, specs in declared_outside_optim() for k in specs)}


def make_optimizer(cfg, total_steps: int) -> Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]:
  """Returns `hparams -> optax transformation` for an `OptimConfig`.

  Args:
    cfg: the static `OptimConfig`.
    total_steps: optimizer steps in the whole run (the horizon of cosine/onecycle schedules).

  Returns:
    A pure function of one variant's hparams (`learning_rate`, the schedule's numbers, and
    those of the family's numbers and `clip_norm` that the sweep traces: scalar arrays);
    call it inside the traced code, the same way for `init` and `update`. Apply the
    transformation to the parameters' pytree, not a raveled vector: per-layer families (lamb,
    a weight-decay mask, adafactor) need the layers.
  """
  family = OPTIMIZERS[cfg.name]
  shape = SCHEDULES[cfg.schedule].factory(cfg, total_steps)
  # `fixed` stays static: a number there (a plateau factor) is checked in Python by its factory.
  injected = optax.inject_hyperparams(family.factory, static_args=tuple(family.fixed))

  def make(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    peak = hparams["learning_rate"]
    # A family number absent from the points is at its off value: the alias's own default.
    extras = {k: hparams[k] for k in family.hparams if k in hparams}
    tx = injected(learning_rate=lambda step: peak * shape(step, hparams), **extras, **family.fixed)
    if "clip_norm" in hparams:
      tx = optax.chain(optax.clip_by_global_norm(hparams["clip_norm"]), tx)
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
