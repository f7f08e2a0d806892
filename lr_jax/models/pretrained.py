"""`pretrained`: a model that starts from given parameters, its head new where asked.

Fine-tuning is training from a start that is not a seed's fresh init. That is a property of the
model's `init` alone, so it is one more model: its `init(key)` returns the given parameters,
except the head's, which the key initializes (so the seed still decides the new head, as it
decides the minibatch order and dropout). The engine, the optimizer and the statistics see an
ordinary model.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging

from lr_jax.errors import ConfigError
from lr_jax.models.layers import in_head, layer_names, matching, path_text, with_head
from lr_jax.models.model import Model, Params


def _by_path(tree) -> dict[str, object]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_text(path): leaf for path, leaf in leaves}


def _replaced(model: Model, fresh: dict, given: dict, head) -> set[str]:
  """The leaf paths the seed initializes: the head's where `head` says so."""
  if head is None:
    return set()
  if head in ("last", "auto"):
    picks = in_head(model)
    leaves = {p for p in fresh if picks(p)}
    if head == "auto":  # New where the given ones do not fit (another number of classes).
      differs = any(np.shape(given.get(p)) != tuple(fresh[p].shape) for p in leaves
                    if p in given)
      return leaves if differs else set()
    return leaves
  if callable(head):
    return {p for p in fresh if head(p)}
  layers = set(matching(layer_names(model), head))
  return {p for p in fresh if p.split("/")[0] in layers}


def pretrained(model: Model, params: Params, *, head: str | None = "auto") -> Model:
  """`model`, starting from `params` instead of a fresh init (fine-tuning).

  Args:
    model: the model (built-in, `from_linen` or `from_nnx`), whose `init` gives the structure.
    params: its parameters, e.g. another sweep's (`SweepResult.params_of`), a saved model's
      (`lr_jax.read_params`), or any pytree with the same leaf paths (a plain dict of an
      `nnx.State` included).
    head: the parameters the seed initializes anew: "last", the model's head (`Model.head`,
      or its last layer: a new task's head); "auto", the head if and only if its shapes
      differ from `params`' (another number of classes); a regular expression of layer names
      (e.g. "Dense_1") or a function of a leaf's path text, either of which also becomes the
      model's head (`with_head`); None: none.

  Returns:
    A `Model` whose `init(key)` is `params` (cast to the model's dtypes), the replaced head
    from `model.init(key)`.

  Raises:
    ConfigError: a leaf missing or extra, or a shape that differs outside the replaced head,
      naming the path and both shapes; an unknown head.
  """
  fresh = _by_path(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
  given = {p: np.asarray(leaf) for p, leaf in _by_path(params).items()}
  if head not in (None, "last", "auto"):
    model = with_head(model, head)  # Checked here: a head of no parameter is refused.
  replaced = _replaced(model, fresh, given, head)
  keep = set(fresh) - replaced
  layers = {p.split("/")[0] for p in replaced}
  missing = sorted(keep - set(given))
  extra = sorted(p for p in set(given) - set(fresh) if p.split("/")[0] not in layers)
  if missing or extra:
    raise ConfigError(
        f"the pretrained parameters do not fit model {model.name!r}: "
        + "; ".join(filter(None, [missing and f"missing {', '.join(missing[:4])}",
                                  extra and f"unexpected {', '.join(extra[:4])}"]))
        + f"; valid: the leaves {', '.join(sorted(fresh)[:6])}")
  for p in sorted(keep):
    if given[p].shape != tuple(fresh[p].shape):
      raise ConfigError(
          f"pretrained {p} has shape {given[p].shape}, model {model.name!r} has "
          f"{tuple(fresh[p].shape)}; valid: the same shape, or head={p.split('/')[0]!r} to "
          "initialize that layer anew")
  start = {p: given[p].astype(fresh[p].dtype) for p in keep}
  if replaced:
    logging.info("pretrained start of %s: %s initialized anew per seed", model.name,
                 ", ".join(sorted(replaced)))
  fresh_init = model.init

  def init(key: jax.Array) -> Params:
    new = fresh_init(key)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf if path_text(path) in replaced else start[path_text(path)], new)

  return model._replace(init=init)
