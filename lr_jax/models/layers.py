"""A model's layers: its parameters' top-level entries in the order its init makes them.

Fine-tuning speaks of layers: the *head* is the last, the *backbone* the rest; a layer-wise
learning-rate decay counts layers down from the head. A Flax module's params are a dict of its
submodules in the order `__call__` creates them (`Conv_0`, `Conv_1`, `Dense_0`); JAX's pytree
functions sort dict keys, so the order is read inside `init` as it returns, under
`jax.eval_shape` (nothing computed).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from lr_jax.models.model import Model, Params


def layer_names(model: Model) -> tuple[str, ...]:
  """The top-level entries of `model.init`'s params in creation order; () if not a mapping."""
  seen: list[tuple[str, ...]] = []

  def init(key):
    params = model.init(key)
    if isinstance(params, Mapping):
      seen.append(tuple(str(k) for k in params.keys()))
    return params

  jax.eval_shape(init, jax.random.PRNGKey(0))
  return seen[0] if seen else ()


def head_name(model: Model) -> str | None:
  """The model's head: its last layer, or None for params that are not a mapping of layers."""
  names = layer_names(model)
  return names[-1] if names else None


def _top(path) -> str:
  entry = path[0]
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def layer_of_leaves(model: Model, params: Params) -> Params:
  """`params`' structure with each leaf replaced by its layer's index (0 = first, L-1 = head).

  Args:
    model: the model; its `init` gives the order of the layers.
    params: its params (or their shapes).

  Returns:
    A pytree like `params` of Python ints.
  """
  index = {name: i for i, name in enumerate(layer_names(model))}
  return jax.tree_util.tree_map_with_path(lambda path, _: index[_top(path)], params)


def layer_of_elements(model: Model, params: Params) -> np.ndarray:
  """[P] int32: each element's layer index, in the order `jax.flatten_util.ravel_pytree` lays
  the params out as one vector (`models.flattened`)."""
  layers = layer_of_leaves(model, params)
  sizes = [int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params)]
  return np.repeat(np.asarray(jax.tree_util.tree_leaves(layers), np.int32), sizes)
