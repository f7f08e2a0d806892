"""Optimizer and schedule registries.

Every optimizer is `optax.inject_hyperparams`-wrapped, so its learning rate and its other
dynamic hyperparameters are traced arrays -- one value per variant in a vmapped sweep, and no
recompilation for a new value. A schedule is a shape (a function of the step with value 1 at its
peak) scaled by the variant's learning rate; its numbers (decay rate, warmup fraction, cosine
floor, one-cycle rise, plateau factor and patience) are traced too. Each entry declares its
numbers as `{name: HParam}` (`lr_jax.hparams`). Every transformation is applied to the parameters'
pytree (the model's layers), so per-layer ones -- LAMB's trust ratio, weight-decay masks,
adafactor's factored moments -- are what they say. `register_optimizer` adds a user family.

The package's modules, one idea each (each imports only those above it):

    optimizer   `Optimizer`: a family's entry (factory, numbers, fixed arguments, hooks)
    probe       `_check_uses_learning_rate`, the probe that a family uses its learning rate;
                `_Registry`, which probes a family registered before JAX started at its lookup
    families    the built-in families, their numbers at optax's defaults: `OPTIMIZERS`
    shapes      the schedule shapes in jnp, 1.0 at the peak, their numbers traced
    schedules   `Schedule`, `SCHEDULES`, `PLATEAU` (reduce-on-plateau's numbers)
    reregister  `on_reregister`: compile caches dropped when a name means another optimizer
    register    `register_optimizer`: the checks, the probe now or at first lookup, the entry
    transform   `make_optimizer`; `current_learning_rate`, `family_state` read from its state

This face re-exports the names the rest of the repository uses; the submodules never import it.
The registries and `on_reregister`'s list are one object each, in the module that defines them;
a patch goes where a name is read (`optim.register._backends_started`), as in `lr_jax.engine`.
"""

from lr_jax.optim.optimizer import Optimizer
from lr_jax.optim.families import OPTIMIZERS
from lr_jax.optim.schedules import PLATEAU, SCHEDULES, Schedule
from lr_jax.optim.reregister import on_reregister
from lr_jax.optim.register import register_optimizer
from lr_jax.optim.transform import current_learning_rate, family_state, make_optimizer
# HParam and the ranges are the vocabulary every registry speaks (`lr_jax.spec`): a user's
# `register_optimizer(..., {"weight_decay": optim.HParam(1e-4, optim.NON_NEGATIVE)})`.
from lr_jax.spec import (AT_LEAST_ONE, COUNT, FINITE, MOMENTUM, NON_NEGATIVE, OPEN_FRACTION,
                         POSITIVE, UNIT, HParam)
# Private, for `optim_test` and `library_safety_test` (a patch goes where the name is read:
# `optim.register._backends_started`, `optim.reregister._ON_REREGISTER`).
from lr_jax.optim.families import _BUILT_IN
from lr_jax.optim.probe import _check_uses_learning_rate
from lr_jax.optim.transform import _injected
from lr_jax.optim.register import _backends_started
from lr_jax.optim.reregister import _ON_REREGISTER

__all__ = [
    "AT_LEAST_ONE", "COUNT", "FINITE", "MOMENTUM", "NON_NEGATIVE", "OPEN_FRACTION",
    "OPTIMIZERS", "PLATEAU", "POSITIVE", "SCHEDULES", "UNIT", "HParam", "Optimizer", "Schedule",
    "current_learning_rate", "family_state", "make_optimizer", "on_reregister",
    "register_optimizer",
]
