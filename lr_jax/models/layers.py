"""A model's layers, its head and its backbone: the groups fine-tuning gives learning rates.

Fine-tuning speaks of layers: the *head* learns at the variant's rate, the *backbone* (every
other layer) at a scale of it, and a layer-wise decay counts layers down from the head. The
layers are the params' top-level entries in the order the model's init makes them (`Conv_0`,
`Conv_1`, `Dense_0`): JAX's pytree functions sort dict keys, so the order is read inside
`init` as it returns, under `jax.eval_shape` (nothing computed). The head is the layers whose
names match `Model.head` (a regular expression; `with_head`), or the last layer, or the leaves
a function of their paths picks (`Model.head` callable, e.g. `lambda p: p.endswith("bias")`
or `lambda p: p.startswith("classifier/")`): then a layer may be part head, part backbone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import jax

from lr_jax.errors import ConfigError
from lr_jax.models.model import Model, Params, param_shapes


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
  `names`: the model's `layer_names`, where the caller has them already. With a function of
  leaf paths as the head: the layers it picks every leaf of."""
  names = layer_names(model) if names is None else names
  if not names:
    return ()
  if callable(model.head):
    picks = in_head(model)
    paths = leaf_paths(model)
    return tuple(n for n in names
                 if all(picks(p) for p in paths if p.split("/")[0] == n))
  return matching(names, model.head) if model.head is not None else names[-1:]


def leaf_paths(model: Model) -> tuple[str, ...]:
  """Every parameter leaf's path as text ("Dense_0/kernel"), from `model.init`'s shapes."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(param_shapes(model))
  return tuple(path_text(path) for path, _ in leaves)


def in_head(model: Model) -> Callable[[str], bool]:
  """Whether a leaf (by its path text) is in the model's head: `Model.head`'s function of the
  path, or the leaf's layer among `head_layers`."""
  if callable(model.head):
    return lambda path: bool(model.head(path))
  layers = set(head_layers(model))
  return lambda path: path.split("/")[0] in layers


def with_head(model: Model, head: str | Callable[[str], bool]) -> Model:
  """`model` whose head is the layers `head` (a regular expression) matches in full, e.g.
  `with_head(model, "classifier|Dense_2")`, or the leaves a function of their path text picks,
  e.g. `with_head(model, lambda p: p.startswith("Dense_1/"))`; the rest is the backbone.
  Checked now: a head of no parameter is refused in one line naming the leaves."""
  if not callable(head):
    matching(layer_names(model), head)
    return model._replace(head=head)
  paths = leaf_paths(model)
  if not any(head(p) for p in paths):
    raise ConfigError(f"head {getattr(head, '__name__', head)!r} picks no parameter; valid: a "
                      f"function true for some of {', '.join(paths[:6])}")
  return model._replace(head=head)


def layer_depths(model: Model) -> dict[str, int]:
  """Layer name -> its depth below the head: 0 for the head's layers; 1 for the backbone's last
  layer (the one nearest the head), 2 for the one before, ... A layer with any backbone leaf
  counts as a backbone layer (`leaf_depths` gives its head leaves 0)."""
  names = layer_names(model)
  picks = in_head(model) if names else None
  backbone = ({p.split("/")[0] for p in leaf_paths(model) if not picks(p)}
              if callable(model.head) else set(names) - set(head_layers(model, names)))
  depths, below = {}, 0
  for name in reversed(names):
    if name in backbone:
      below += 1
      depths[name] = below
    else:
      depths[name] = 0
  return depths


def leaf_depths(model: Model) -> Callable[[object], int]:
  """A leaf's depth below the head from its pytree path: 0 in the head (`in_head`), else its
  layer's `layer_depths`."""
  depths, picks = layer_depths(model), in_head(model)
  return lambda path: 0 if picks(path_text(path)) else depths[_top(path)]


def _key_text(entry) -> str:
  """A pytree path entry as text: a dict key, a sequence index or an attribute's name."""
  return str(getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry))))


def path_text(path) -> str:
  """A leaf's pytree path as text, e.g. "Dense_0/kernel" (how messages and files name it)."""
  return "/".join(_key_text(entry) for entry in path)


def _top(path) -> str:
  return _key_text(path[0])


def depth_of_leaves(depths: Mapping[str, int] | Callable[[object], int], params: Params
                    ) -> Params:
  """`params`' structure with each leaf replaced by its depth below the head.

  Args:
    depths: layer name -> depth (`layer_depths`), or a leaf's pytree path -> depth
      (`leaf_depths`, where the head is a function of leaf paths).
    params: the params (or their shapes).

  Returns:
    A pytree like `params` of Python ints.
  """
  of = depths if callable(depths) else (lambda path: depths[_top(path)])
  return jax.tree_util.tree_map_with_path(lambda path, _: of(path), params)
