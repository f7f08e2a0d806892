"""A stream's keys and its minibatches: initial parameters, batching, epoch order, rows fetched."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lr_jax.models import Model
from lr_jax.train.state import DataArrays


def stream_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Independent init, data-order and minibatch keys of a stream; they depend only on the seed.

  The contract tests and users rely on: the init key of seed s is `fold_in(PRNGKey(s), 0)`.
  The minibatch key (dropout, augmentation) of step t is `fold_in` of the third key and t;
  `fold_in(PRNGKey(s), 3)` is the label noise's (`label_flips`).
  """
  key = jax.random.PRNGKey(seed)
  return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)


def initial_params(model: Model, seed: jax.Array):
  """A stream's initial parameters: the model's init with the seed's init key.

  Apart from `Trainer.init` because it depends only on the model: the engine compiles it once
  per model and calls it per seed, rather than compiling a vmapped copy of the initializers
  (threefry hashes, seconds of XLA compilation on a CPU) into every group's program.
  """
  init_key, _, _ = stream_keys(seed)
  return model.init(init_key)


def batching(batch_size: int, n_max: int) -> tuple[int, int]:
  """(batch, steps per epoch) for a configured batch size (0 = full batch) and n_max rows."""
  batch = n_max if batch_size == 0 else min(batch_size, n_max)
  return batch, math.ceil(n_max / batch)


def epoch_order(order_key: jax.Array, epoch: jax.Array, idx_N: jax.Array, mask_N: jax.Array,
                batch: int, steps_per_epoch: int) -> tuple[jax.Array, jax.Array]:
  """One epoch's minibatches of a fold: row indices `[M, B]` and weights `[M, B]`.

  Real rows are shuffled by `fold_in(order_key, epoch)`; padding sorts to the end, so it only
  fills the last batch (weight 0).
  """
  u_N = jax.random.uniform(jax.random.fold_in(order_key, epoch), idx_N.shape)
  order = jnp.argsort(jnp.where(mask_N, u_N, 2.0))
  return in_order(idx_N[order], mask_N[order], batch, steps_per_epoch)


def in_order(idx_N: jax.Array, mask_N: jax.Array, batch: int, steps_per_epoch: int
             ) -> tuple[jax.Array, jax.Array]:
  """A fold's rows in their order, as `epoch_order`'s `[M, B]` indices and weights (padding
  weighs 0): a pass over the training rows one minibatch at a time."""
  pad = steps_per_epoch * batch - idx_N.shape[0]
  idx_MxB = jnp.pad(idx_N, (0, pad)).reshape(steps_per_epoch, batch)
  w_MxB = jnp.pad(mask_N, (0, pad)).reshape(steps_per_epoch, batch).astype(jnp.float32)
  return idx_MxB, w_MxB


def fetch(data: DataArrays, fold, idx_B):
  """Standardized features and labels of rows `idx_B` of fold `fold`'s view of the data."""
  x_BxD = (data.x[idx_B] - data.mean[fold][None, :]) / data.std[fold][None, :]
  return x_BxD, data.y[idx_B]
