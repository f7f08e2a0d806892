"""What training minimizes and validation reports: the loss (`Loss`, built-in ones), `Metric`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lr_jax.errors import ConfigError
from lr_jax.models import Model, apply_model


# A per-example loss: `(outputs_BxK, y_B) -> loss_B`, replacing softmax cross-entropy / MSE.
Loss = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Metric:
  """A validation metric of one's own, computed on a fold's WHOLE validation set every epoch.

  Attributes:
    fn: `(outputs_VxK, y_V, w_V) -> []`: the model's outputs on every validation row, their
      labels or targets, and their weights (1 for a real row, 0 for padding, which `fn` must
      ignore). Traced and jitted: jnp only, no Python control flow on values.
    higher_is_better: its direction, for early stopping (`TrainConfig.monitor`) and the
      selection (`run_sweep(select_by=...)`).
    bounds: the values it can take, `(low, high)`, e.g. (0, 1) for an AUC: its intervals are
      clipped to them. None: unbounded.

  Hashed and compared by `fn`'s identity, like a user model: another function compiles
  another program.
  """

  fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
  higher_is_better: bool = True
  bounds: tuple[float, float] | None = None

  def __post_init__(self):
    if self.bounds is not None and not (
        isinstance(self.bounds, tuple) and len(self.bounds) == 2
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in self.bounds)
        and self.bounds[0] < self.bounds[1]):
      raise ConfigError(f"Metric.bounds must be None or (low, high) numbers with low < high, got "
                        f"{self.bounds!r}")
    if not callable(self.fn):
      raise ConfigError(f"Metric.fn must be a function (outputs_VxK, y_V, w_V) -> scalar, got "
                        f"{type(self.fn).__name__}")
    if not isinstance(self.higher_is_better, (bool, np.bool_)):
      raise ConfigError(f"Metric.higher_is_better must be True or False, got "
                        f"{self.higher_is_better!r}")


# Metrics of a trainer: ((name, Metric), ...) -- a tuple, so it can key a compile cache.
Metrics = tuple[tuple[str, Metric], ...]


def builtin_loss(classification: bool) -> Loss:
  """The built-in per-example loss: softmax cross-entropy (integer labels) or squared error."""
  if classification:
    return optax.softmax_cross_entropy_with_integer_labels
  return lambda out_BxK, y_B: jnp.square(out_BxK[:, 0] - y_B)


def example_losses(model: Model, classification: bool, params, x_BxD, y_B, key, train: bool,
                   loss: Loss | None = None, with_outputs: bool = False,
                   hparams: Mapping[str, jax.Array] | None = None):
  """Per-example loss and correctness `([B], [B])`, and with `with_outputs` the outputs.

  Args:
    model: pure `init`/`apply` functions.
    classification: correctness is argmax == label; NaN for regression.
    params, x_BxD, y_B, key, train: the model's inputs.
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]`; None is the built-in one
      (`builtin_loss`).
    with_outputs: also return the outputs `[B, K]` (for metrics on them).
    hparams: the model namespace's numbers of this variant (`Model.apply`'s fifth argument);
      None or {} calls the model without it.
  """
  out = apply_model(model, params, x_BxD, key, train, hparams)
  loss_B = (builtin_loss(classification) if loss is None else loss)(out, y_B)
  if jnp.shape(loss_B) != jnp.shape(y_B):  # A [B, 1] or scalar loss would broadcast silently.
    raise ConfigError(f"the loss must return one value per example, shape {jnp.shape(y_B)}, "
                      f"got shape {jnp.shape(loss_B)}")
  if classification:
    correct_B = (jnp.argmax(out, axis=-1) == y_B).astype(jnp.float32)
  else:
    correct_B = jnp.full_like(loss_B, jnp.nan)
  return (loss_B, correct_B, out) if with_outputs else (loss_B, correct_B)


def weighted_mean(v_B: jax.Array, w_B: jax.Array) -> jax.Array:
  """Mean of `v_B` over the rows with weight 1 (padding has weight 0); 0 for no rows."""
  return jnp.sum(v_B * w_B) / jnp.maximum(jnp.sum(w_B), 1.0)
