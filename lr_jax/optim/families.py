"""The built-in families: `OPTIMIZERS` (name -> `Optimizer`), each number with the optax
alias's own default and range."""

from __future__ import annotations

import inspect

import optax

from lr_jax.config import Interval
from lr_jax.optim.optimizer import Optimizer
from lr_jax.optim.probe import _Registry
from lr_jax.spec import MOMENTUM, NON_NEGATIVE, POSITIVE, HParam


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
