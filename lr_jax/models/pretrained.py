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
from lr_jax.models.layers import _top, head_layers, layer_names, matching, path_text
from lr_jax.models.model import Model, Params


def _by_path(tree) -> dict[str, object]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {path_text(path): leaf for path, leaf in leaves}


def _replaced_layers(model: Model, fresh: dict, given: dict, head: str | None) -> set[str]:
  """The layers whose parameters the seed initializes: the head where `head` says so."""
  if head is None:
    return set()
  if head in ("last", "auto"):
    layers = set(head_layers(model))
    if head == "auto":  # New where the given ones do not fit (another number of classes).
      differs = any(np.shape(given.get(p)) != tuple(s.shape) for p, s in fresh.items()
                    if p.split("/")[0] in layers and p in given)
      return layers if differs else set()
    return layers
  return set(matching(layer_names(model), head))


def pretrained(model: Model, params: Params, *, head: str | None = "auto") -> Model:
  """`model`, starting from `params` instead of a fresh init (fine-tuning).

  Args:
    model: the model (built-in, `from_linen` or `from_nnx`), whose `init` gives the structure.
    params: its parameters, e.g. another sweep's (`SweepResult.params_of`), a saved model's
      (`lr_jax.read_params`), or any pytree with the same leaf paths (a plain dict of an
      `nnx.State` included).
    head: the layers the seed initializes anew: "last", the model's head (`Model.head`, or its
      last layer: a new task's head); "auto", the head if and only if its shapes differ from
      `params`' (another number of classes); a regular expression of layer names (e.g.
      "Dense_1"), which also becomes the model's head; None: none.

  Returns:
    A `Model` whose `init(key)` is `params` (cast to the model's dtypes), the replaced head
    from `model.init(key)`.

  Raises:
    ConfigError: a leaf missing or extra, or a shape that differs outside the replaced head,
      naming the path and both shapes; an unknown head.
  """
  fresh = _by_path(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
  given = {p: np.asarray(leaf) for p, leaf in _by_path(params).items()}
  replaced = _replaced_layers(model, fresh, given, head)
  keep = {p for p in fresh if p.split("/")[0] not in replaced}
  missing = sorted(keep - set(given))
  extra = sorted(p for p in set(given) - set(fresh) if p.split("/")[0] not in replaced)
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
    logging.info("pretrained start of %s: layer %s initialized anew per seed", model.name,
                 ", ".join(sorted(replaced)))

  def init(key: jax.Array) -> Params:
    new = model.init(key)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf if _top(path) in replaced else start[path_text(path)], new)

  if head not in (None, "last", "auto"):
    model = model._replace(head=head)
  return model._replace(init=init)
