"""`register_optimizer`: a user's family checked (its numbers, its factory's signature, the name
it takes), probed now or at its first lookup, and added to `OPTIMIZERS`."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping

import jax
import optax

from lr_jax.config import Interval
from lr_jax.optim.families import _BUILT_IN, OPTIMIZERS
from lr_jax.optim.optimizer import Optimizer
from lr_jax.optim.probe import _UNPROBED, _check_uses_learning_rate
from lr_jax.optim.reregister import _forget_compiled
from lr_jax.optim.schedules import SCHEDULES
from lr_jax.spec import FINITE, GROUP_HPARAMS, HParam, declared_outside_optim


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
  _check_numbers(name, hparams)  # Each is now an `HParam` with a float default.
  _check_factory(name, factory, hparams, fixed)
  entry = Optimizer(factory, hparams, fixed,
                    extra_args=extra_args, eval_params=eval_params)
  old = dict.get(OPTIMIZERS, name)
  if old is not None and old == entry:
    return name  # The same registration again (a notebook cell re-run): nothing changes.
  _check_replaceable(name, old, factory, overwrite)
  _probe_now_or_at_first_lookup(name, entry)
  if old is not None:
    _forget_compiled()
  OPTIMIZERS[name] = entry
  return name


def _check_numbers(name: str, hparams: dict[str, float | HParam]) -> None:
  """Refuses a number another registry declares or a default that is not a finite number in
  its valid range; makes each number an `HParam` with a float default, in place."""
  from lr_jax.errors import ConfigError
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


def _check_factory(name: str, factory, hparams: Mapping[str, HParam],
                   fixed: Mapping[str, object]) -> None:
  """Refuses a factory that is not callable, cannot be called with the learning rate, the
  numbers and `fixed`, or whose own default for a number is not the number's off value."""
  from lr_jax.errors import ConfigError
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


def _check_replaceable(name: str, old: Optimizer | None, factory, overwrite: bool) -> None:
  """Refuses to replace a built-in family, or a user family's factory without `overwrite`."""
  from lr_jax.errors import ConfigError
  if name in _BUILT_IN:
    raise ConfigError(f"optimizer {name!r} is already registered: it is built in and cannot be "
                      f"replaced; choose a new name for your optimizer")
  if old is not None and old.factory is not factory and not overwrite:
    raise ConfigError(f"optimizer {name!r} is already registered to another factory "
                      f"({_callable_name(old.factory)}); pass overwrite=True to replace it, or "
                      f"choose a new name")


def _probe_now_or_at_first_lookup(name: str, entry: Optimizer) -> None:
  """Probes the family now if JAX's backends have started, else at its first lookup in
  `OPTIMIZERS` (`_Registry`): registering at import starts no backend."""
  if _backends_started():
    _check_uses_learning_rate(name, entry)
    _UNPROBED.discard(name)
  else:
    _UNPROBED.add(name)


def _callable_name(f) -> str:
  return getattr(f, "__qualname__", None) or type(f).__name__


def _backends_started() -> bool:
  """Whether JAX's backends have started (so an eager probe starts nothing new)."""
  try:
    from jax._src import xla_bridge
    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # A JAX without it: probe at the first lookup, which is after any start.
    return False


def _taken_names() -> set[str]:
  """The numbers no optimizer family may declare: every other registry's, and the optim ones
  that are not a family's."""
  return {"learning_rate", "clip_norm", *GROUP_HPARAMS,
          *(k for schedule in SCHEDULES.values() for k in schedule.hparams),
          *(k for _, specs in declared_outside_optim() for k in specs)}
