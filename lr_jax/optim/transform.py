"""`make_optimizer`: an `OptimConfig` as `hparams -> optax transformation`, the family's factory
`optax.inject_hyperparams`-wrapped with the schedule's shape times the variant's peak; and the
learning rate and the family's own state read back from the transformation's state."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import optax

from lr_jax.optim.families import OPTIMIZERS
from lr_jax.optim.schedules import SCHEDULES


def make_optimizer(cfg, total_steps: int
                   ) -> Callable[[Mapping[str, Mapping[str, jax.Array]]], optax.GradientTransformation]:
  """Returns `hparams -> optax transformation` for an `OptimConfig`.

  Args:
    cfg: the static `OptimConfig`.
    total_steps: optimizer steps in the whole run (the horizon of cosine/onecycle schedules).

  Returns:
    A pure function of one variant's namespaced numbers (`train.Hparams`, scalar arrays):
    `hp["optim"]` holds `learning_rate` and those of the family's numbers and `clip_norm`
    that the sweep traces, `hp["schedule"]` the schedule's; call it inside the traced code,
    the same way for `init` and `update`. Apply the
    transformation to the parameters' pytree, not a raveled vector: per-layer families (lamb,
    a weight-decay mask, adafactor) need the layers.
  """
  family = OPTIMIZERS[cfg.name]
  shape = SCHEDULES[cfg.schedule].factory(cfg, total_steps)
  # `fixed` stays static: a number there (a plateau factor) is checked in Python by its factory.
  injected = optax.inject_hyperparams(family.factory, static_args=tuple(family.fixed))

  def make(hp: Mapping[str, Mapping[str, jax.Array]]) -> optax.GradientTransformation:
    numbers, schedule = hp["optim"], hp["schedule"]
    peak = numbers["learning_rate"]
    # A family number absent from the points is at its off value: the alias's own default.
    extras = {k: numbers[k] for k in family.hparams if k in numbers}
    tx = injected(learning_rate=lambda step: peak * shape(step, schedule), **extras,
                  **family.fixed)
    if "clip_norm" in numbers:
      tx = optax.chain(optax.clip_by_global_norm(numbers["clip_norm"]), tx)
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
