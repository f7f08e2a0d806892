"""`flattened`, `Flat`: a model's parameters as one vector, and the ways back to its pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lr_jax.models.model import Model, Params


class Flat(NamedTuple):
  """A model whose parameters are one vector, and the ways back to its pytree.

  Attributes:
    model: the same model; its `init` returns `[P]` and its `apply` takes `[P]`.
    unravel: numpy `[..., P]` -> the original pytree, every leaf with the same leading axes.
    tree: the model on its own pytree (the one `flattened` was given).
    to_tree: traced `[P]` -> the pytree (slices and reshapes).
    to_flat: traced pytree -> `[P]` (one concatenation).
  """

  model: Model
  unravel: Callable[[np.ndarray], Params]
  tree: Model
  to_tree: Callable[[jax.Array], Params]
  to_flat: Callable[[Params], jax.Array]



def _identity(params: Params) -> Params:
  return params



def unflattened(model: Model) -> Flat:
  """A `Flat` whose "vector" is the pytree itself: every conversion is the identity."""
  return Flat(model, _identity, model, _identity, _identity)



def flattened(model: Model) -> Flat:
  """The model with its parameters raveled into one vector (`jax.flatten_util.ravel_pytree`).

  The trainer stores each variant's parameters (and best parameters) as one vector: the masks
  of stopped variants and the best-params copy are then one fused loop over one buffer instead
  of one per layer and bias. The optimizer still sees the pytree (`to_tree`/`to_flat` around
  its update), so per-layer transformations (LAMB's trust ratio, weight-decay masks, adafactor)
  are what they say; only the elementwise built-in families (`optim.ELEMENTWISE`) update the
  vector, the same numbers. A model whose parameters are not all of one float dtype is left as
  it is (raveling would cast them).
  """
  from jax.flatten_util import ravel_pytree
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  leaves, treedef = jax.tree_util.tree_flatten(shapes)
  dtypes = {leaf.dtype for leaf in leaves}
  if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
    return unflattened(model)
  _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))
  ends = np.cumsum([int(np.prod(leaf.shape)) for leaf in leaves])

  def unravel_host(flat: np.ndarray) -> Params:
    parts = np.split(np.asarray(flat), ends[:-1], axis=-1)
    return jax.tree_util.tree_unflatten(
        treedef, [p.reshape(p.shape[:-1] + leaf.shape) for p, leaf in zip(parts, leaves)])

  def to_flat(params: Params) -> jax.Array:
    return ravel_pytree(params)[0]

  return Flat(
      Model(init=lambda key: to_flat(model.init(key)),
            apply=lambda params, x_BxD, key, train, *hparams: model.apply(
                unravel(params), x_BxD, key, train, *hparams),
            hparams=model.hparams, head=model.head),
      unravel_host, model, unravel, to_flat)
