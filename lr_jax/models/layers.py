"""A model's layers, its head and its backbone: the groups fine-tuning gives learning rates.

Fine-tuning speaks of layers: the *head* learns at the variant's rate, the *backbone* (every
other layer) at a scale of it, and a layer-wise decay counts layers down from the head. The
layers are the params' top-level entries in the order the model's init makes them (`Conv_0`,
`Conv_1`, `Dense_0`): JAX's pytree functions sort dict keys, so the order is read inside
`init` as it returns, under `jax.eval_shape` (nothing computed). The head is the layers whose
names match `Model.head` (a regular expression; `with_head`), or the last layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from lr_jax.errors import ConfigError
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


def matching(names: tuple[str, ...], pattern: str) -> tuple[str, ...]:
  """The layer names a regular expression matches in full; a pattern matching none, or not a
  regular expression, is refused in one line listing the names."""
  try:
    regex = re.compile(pattern)
  except re.error as e:
    raise ConfigError(f"head {pattern!r} is not a regular expression ({e}); valid: a layer's "
                      f"name or a pattern of names, e.g. {names[-1] if names else 'Dense_1'}")
  found = tuple(n for n in names if regex.fullmatch(n))
  if not found:
    raise ConfigError(f"head {pattern!r} matches no layer; valid choices: {', '.join(names)}, "
                      "or a pattern of them")
  return found


def no_layers(numbers: Sequence[str], model_name: str | None = None) -> ConfigError:
  """The one-line refusal of fine-tuning's numbers for a model without layers to scale."""
  verb = "needs" if len(numbers) == 1 else "need"
  which = f"; the model {model_name!r} has none" if model_name is not None else ""
  return ConfigError(f"{', '.join(numbers)} {verb} a model whose parameters are a mapping of "
                     f"layers (a Flax module's){which}; valid choices: leave them at their "
                     "defaults")


def head_layers(model: Model, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
  """The model's head: the layers `model.head` matches, or the last layer; () without layers.
  `names`: the model's `layer_names`, where the caller has them already."""
  names = layer_names(model) if names is None else names
  if not names:
    return ()
  return matching(names, model.head) if model.head is not None else names[-1:]


def with_head(model: Model, pattern: str) -> Model:
  """`model` whose head is the layers `pattern` (a regular expression) matches in full, e.g.
  `with_head(model, "classifier|Dense_2")`; the rest is the backbone. Checked now."""
  matching(layer_names(model), pattern)
  return model._replace(head=pattern)


def layer_depths(model: Model) -> dict[str, int]:
  """Layer name -> its depth below the head: 0 for the head's layers; 1 for the backbone's last
  layer (the one nearest the head), 2 for the one before, ..."""
  names = layer_names(model)
  head = set(head_layers(model, names))
  depths, below = {}, 0
  for name in reversed(names):
    if name in head:
      depths[name] = 0
    else:
      below += 1
      depths[name] = below
  return depths


def _key_text(entry) -> str:
  """A pytree path entry as text: a dict key, a sequence index or an attribute's name."""
  return str(getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry))))


def path_text(path) -> str:
  """A leaf's pytree path as text, e.g. "Dense_0/kernel" (how messages and files name it)."""
  return "/".join(_key_text(entry) for entry in path)


def _top(path) -> str:
  return _key_text(path[0])


def depth_of_leaves(depths: Mapping[str, int], params: Params) -> Params:
  """`params`' structure with each leaf replaced by its layer's depth.

  Args:
    depths: layer name -> depth (`layer_depths` of the params' model).
    params: the params (or their shapes).

  Returns:
    A pytree like `params` of Python ints.
  """
  return jax.tree_util.tree_map_with_path(lambda path, _: depths[_top(path)], params)


def depth_of_elements(depths: Mapping[str, int], params: Params) -> np.ndarray:
  """[P] int32: each element's layer depth, in the order `jax.flatten_util.ravel_pytree` lays
  the params out as one vector (`models.flattened`)."""
  depths = depth_of_leaves(depths, params)
  sizes = [int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(params)]
  return np.repeat(np.asarray(jax.tree_util.tree_leaves(depths), np.int32), sizes)
