"""The probe that a family uses the learning rate it is given: a few eager updates of a tiny
pytree at two rates. It runs at registration once JAX's backends have started; a family
registered before (at import) is probed at its first lookup in `OPTIMIZERS` (`_Registry`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_jax.config import Registry
from lr_jax.optim.optimizer import Optimizer

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
