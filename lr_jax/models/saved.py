"""`read_params`: parameters saved elsewhere, as a pretrained start (`models.pretrained`).

In `models`, below the engine, because a built-in model can start from them
(`ModelConfig.init_from`: `build_model` wraps it in `pretrained`).

Three places a practitioner's weights come from: an lr_jax model folder (`save_model`'s), a
Flax msgpack file (`flax.serialization.to_bytes`), and an Orbax checkpoint directory (what
Flax's own examples save; Orbax arrives with Flax). Each is read into plain nested dicts of
numpy arrays; `models.pretrained` then matches them to the model by path and shape.
"""

from __future__ import annotations

import os

import numpy as np

from lr_jax.errors import ConfigError

# An lr_jax model folder's files (`lr_jax.export.save_model`): its card and its parameters,
# `{"members": {"0": params, ...}}` in msgpack.
CARD_NAME, PARAMS_NAME = "model.json", "params.msgpack"


def _unwrap(tree, path: str):
  """A saved training state's parameters: `{"params": ...}` (a TrainState) is its params."""
  if not isinstance(tree, dict) or not tree:
    raise ConfigError(f"{path!r} holds no parameter tree (a mapping of layers); valid: an lr_jax "
                      "model folder, a Flax msgpack file or an Orbax checkpoint of params")
  if set(tree) == {"params"} or ("params" in tree and "step" in tree):
    return _unwrap(tree["params"], path)
  return tree


def _msgpack(path: str):
  from flax import serialization
  try:
    with open(path, "rb") as f:
      return serialization.msgpack_restore(f.read())
  except OSError as e:
    raise ConfigError(f"cannot read {path!r}: {e.strerror or e}") from None
  except Exception as e:  # msgpack's and flax's own errors for a file of another format.
    raise ConfigError(f"{path!r} is not a Flax msgpack file ({type(e).__name__}); valid: an lr_jax "
                      "model folder, a Flax msgpack file or an Orbax checkpoint directory") from None


def _orbax(path: str):
  import orbax.checkpoint as ocp
  try:
    return ocp.PyTreeCheckpointer().restore(os.path.abspath(path))
  except Exception as e:  # Orbax raises many kinds for a folder that is not its checkpoint.
    raise ConfigError(f"{path!r} is neither an lr_jax model folder (no {CARD_NAME}) nor an Orbax "
                      f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def read_params(path: str, *, member: int = 0) -> dict:
  """The parameters saved at `path`, as nested dicts of numpy arrays.

  Args:
    path: an lr_jax model folder (`save_model`: its `member`-th ensemble member), a Flax msgpack
      file, or an Orbax checkpoint directory; a saved training state's `params` are taken.
    member: which member of an lr_jax model folder's ensemble (one per refit seed).

  Returns:
    The parameter tree, e.g. for `lr_jax.models.pretrained(model, read_params(path))`.

  Raises:
    ConfigError: a missing path, a file or folder of another format, a member out of range.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ConfigError(f"pretrained parameters {path!r} do not exist; valid: an lr_jax model "
                      "folder, a Flax msgpack file or an Orbax checkpoint directory")
  if os.path.isdir(path) and os.path.exists(os.path.join(path, CARD_NAME)):
    members = _msgpack(os.path.join(path, PARAMS_NAME))
    members = members.get("members", {}) if isinstance(members, dict) else {}
    if str(member) not in members:
      raise ConfigError(f"model folder {path!r} has {len(members)} member(s); valid: member in "
                        f"0..{len(members) - 1}")
    tree = members[str(member)]
  elif os.path.isdir(path):
    tree = _orbax(path)
  else:
    tree = _msgpack(path)
  import jax
  return jax.tree_util.tree_map(np.asarray, _unwrap(tree, path))
