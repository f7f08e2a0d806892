"""The model folder: params.msgpack and model.json, written (`save_model`) and read, checked."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import jax
import numpy as np

from lr_jax import hparams
from lr_jax.config import Experiment, ModelConfig
from lr_jax.errors import ConfigError
from lr_jax.io import atomic_write
from lr_jax.models import Model
from lr_jax.models.layers import path_text
from lr_jax.models.saved import CARD_NAME, PARAMS_NAME
from lr_jax.trained import TrainedModel, built_model, num_outputs

FORMAT = "lr_jax.model/1"




def model_folder(path: str, identity: dict, overwrite: bool = False, flag: str = "--save_model"):
  """The model's folder as a `lr_jax.outputs.OutputFolder`: checked, locked, written as one unit.

  Open it before training, so a bad path is refused before anything compiles.
  """
  from lr_jax.outputs import OutputFolder
  return OutputFolder(path, identity={**identity, "kind": "model"}, overwrite=overwrite,
                      flag=flag, overwrite_hint="--overwrite" if flag.startswith("--")
                      else "overwrite=True")


def write_model(model: TrainedModel, directory: str) -> list[str]:
  """Writes `params.msgpack` and `model.json` into `directory` (a staging folder), atomically."""
  from flax import serialization
  members = {str(i): plain_params(jax.device_get(p)) for i, p in enumerate(model.params)}
  blob = serialization.msgpack_serialize({"members": members})
  paths = [os.path.join(directory, PARAMS_NAME), os.path.join(directory, CARD_NAME)]
  atomic_write(paths[0], blob)
  atomic_write(paths[1], (json.dumps(model.card, indent=2) + "\n").encode())
  return paths


def save_model(model: TrainedModel, path: str, overwrite: bool = False) -> list[str]:
  """Saves a refit model into folder `path`: `params.msgpack` and `model.json`, as one unit.

  Args:
    model: from `refit`.
    path: the folder; created if missing. The same configuration's model is replaced; another
      configuration's files only with `overwrite`.
    overwrite: replace another run's files.

  Returns:
    The paths written.

  Raises:
    TypeError: `model` is not a `TrainedModel` (e.g. the sweep's result: refit it first).
  """
  if not isinstance(model, TrainedModel):
    hint = (" (a sweep's result: save lr_jax.refit(result))"
            if type(model).__name__ == "SweepResult" else "")
    raise TypeError(f"save_model takes a TrainedModel (from lr_jax.refit), got "
                    f"{type(model).__module__}.{type(model).__qualname__}{hint}")
  with model_folder(path, {"config": model.card.get("experiment")}, overwrite,
                    flag="path") as folder:
    with folder.staging() as staging:
      names = [os.path.basename(p) for p in write_model(model, staging)]
  return [os.path.join(path, n) for n in names]


def _is_nnx_state(params) -> bool:
  """Whether `params` is an `nnx.State` (`from_nnx`'s parameters), without importing nnx for
  the others."""
  if not type(params).__module__.startswith("flax.nnx"):
    return False
  from flax import nnx
  return isinstance(params, nnx.State)


def plain_params(params) -> dict:
  """One member's parameters as params.msgpack holds them: nested dicts of arrays, string keys.

  A linen or built-in model's tree is its flax state dict (what it always was, byte for byte);
  an `nnx.State` (`from_nnx`) is its pure dict first (`nnx.to_pure_dict`: each `nnx.Param`'s
  value, no Variable objects, which msgpack cannot hold). `params_like` is the way back.
  """
  from flax import serialization
  if _is_nnx_state(params):
    from flax import nnx
    params = nnx.to_pure_dict(params)
  return serialization.to_state_dict(params)


def params_like(target, plain: dict):
  """`plain` (from `plain_params`, or read from params.msgpack) as the model's parameters: the
  structure of `target` (`model.init`'s output, or its shapes) with `plain`'s arrays.

  Raises:
    KeyError, TypeError, ValueError: `plain` does not fit `target`.
  """
  from flax import serialization
  if _is_nnx_state(target):
    from flax import nnx
    state = jax.tree_util.tree_map(lambda leaf: leaf, target)  # A copy: filled in place below.
    nnx.replace_by_pure_dict(state, plain)
    return state
  return serialization.from_state_dict(target, plain)


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split()) or type(e).__name__


def _leaf_shapes(tree) -> dict[str, tuple]:
  """{'Dense_0/kernel': shape} of a parameter tree (as `plain_params`: plain nested dicts)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(plain_params(tree))
  return {path_text(path): tuple(np.shape(leaf)) for path, leaf in leaves}


def _architecture_mismatch(want: dict[str, tuple], got: dict[str, tuple]) -> str | None:
  """How a member's parameters differ from the model's, or None where they match."""
  for name, shape in want.items():
    if name not in got:
      return f"it lacks parameter {name} (shape {shape})"
    if got[name] != shape:
      return f"expected shape {shape} for {name}, found {got[name]}"
  extra = [n for n in got if n not in want]
  if extra:
    return f"it has parameter(s) the model lacks: {', '.join(extra[:3])}"
  return None


def load_model(path: str, model: Model | None = None) -> TrainedModel:
  """Loads a model saved by `save_model` (or `lr_sweep --save_model=DIR`).

  Everything is checked here, so a damaged folder is one `ConfigError` at load, never an error
  deep inside a prediction: model.json must be JSON with every key this needs, params.msgpack
  must decode whole, and every member's parameter shapes must be the architecture's.

  Args:
    path: the model's folder.
    model: the user model it was trained with (`from_linen`/`from_nnx`: the same code and
      arguments); built-in models are rebuilt from model.json, and giving one is refused.

  Returns:
    A `TrainedModel`: `predict(x)` and `predict_proba(x)` on raw features.

  Raises:
    ConfigError: a missing folder or file, a file of another format, a user model not given
      (or a model given for a built-in one), or a folder that is not a valid model ("<path> is
      not a valid lr_jax model folder: params.msgpack is truncated", "... params.msgpack does
      not match model.json's architecture (member 0): expected shape (4, 8) for
      Dense_0/kernel, found (4, 16)", "... model.json lacks 'task'").
  """
  card = _read_card(path)
  task, names, shape = _card_task_and_shape(path, card)
  model, built_from = _rebuilt_model(path, card, model, task, names, shape)
  feature_names, mean, std = _card_features(path, card, shape)
  params = _read_params(path, model, built_from)
  return TrainedModel(model=model, params=params, mean=mean, std=std,
                      task=task, class_names=names, feature_names=feature_names,
                      feature_shape=shape, card=card)


def saved_model_name(path: str) -> tuple[str, bool]:
  """The model a model folder holds, as its model.json names it: (name, whether a user model).

  A user model (`from_linen`/`from_nnx`) cannot be rebuilt from model.json and must be given
  to `load_model`; a built-in one is rebuilt from it and must not be.

  Raises:
    ConfigError: as `load_model`, for a missing folder or file or a card of another format.
  """
  card = _read_card(path)
  if card.get("user_model") is not None:
    return str(card["user_model"]), True
  return _field(path, card, "experiment", "model", "name", kind=str), False


def _invalid(path: str, what: str) -> ConfigError:
  """The error of a model folder that is not a valid one: `what` is wrong with it."""
  return ConfigError(f"{path!r} is not a valid lr_jax model folder: {what}")


def _field(path: str, card: dict, *keys, kind=None):
  """card[keys[0]][keys[1]]...: a missing key or a value of the wrong kind is `_invalid`."""
  value, seen = card, []
  for k in keys:
    seen.append(k)
    if not isinstance(value, dict) or k not in value:
      raise _invalid(path, f"{CARD_NAME} lacks {'.'.join(seen)!r}")
    value = value[k]
  if kind is not None and not isinstance(value, kind):
    names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
    raise _invalid(path, f"{CARD_NAME}'s {'.'.join(keys)!r} is {value!r}, not a {names}")
  return value


def _read_card(path: str) -> dict:
  """model.json of the model folder `path`, read as JSON of this format; the folder and both
  its files are checked first."""
  card_path, params_path = os.path.join(path, CARD_NAME), os.path.join(path, PARAMS_NAME)
  if not os.path.isdir(path):
    raise ConfigError(f"model folder {path!r} does not exist (save one with lr_sweep "
                      "--save_model=DIR)")
  for p in (card_path, params_path):
    if not os.path.isfile(p):
      raise ConfigError(f"{path!r} is not a saved model: it has no {os.path.basename(p)}")
  try:
    with open(card_path, encoding="utf-8") as f:
      card = json.load(f)
  except OSError as e:
    raise ConfigError(f"cannot read {card_path!r}: {_one_line(e)}") from None
  except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
    raise _invalid(path, f"{CARD_NAME} is not JSON ({_one_line(e)})") from None
  if not isinstance(card, dict) or card.get("format") != FORMAT:
    raise ConfigError(f"{card_path!r} is not an lr_jax model card (format {FORMAT!r})")
  return card


def _card_task_and_shape(path: str, card: dict) -> tuple[str, tuple, tuple[int, ...]]:
  """model.json's task, class names and feature shape, checked."""
  task = _field(path, card, "task", kind=str)
  if task not in ("classification", "regression"):
    raise _invalid(path, f"{CARD_NAME}'s 'task' is {task!r}; valid: 'classification', "
                   "'regression'")
  names = tuple(_field(path, card, "class_names", kind=list))
  shape = _field(path, card, "feature_shape", kind=list)
  if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
    raise _invalid(path, f"{CARD_NAME}'s 'feature_shape' is {shape!r}, not a list of positive "
                   "integers")
  return task, names, tuple(shape)


def _rebuilt_model(path: str, card: dict, model: Model | None, task: str, names: tuple,
                   shape: tuple[int, ...]) -> tuple[Model, str]:
  """The model the parameters are for (the given user model, or a built-in one rebuilt from
  model.json's configuration) and whose architecture that is, in words."""
  if card.get("user_model") is not None:
    if model is None:
      raise ConfigError(f"{path!r} holds user model {card['user_model']!r}, which cannot be "
                        "rebuilt from model.json; pass it: load_model(path, model=...)")
    return model, "the given model's"
  cfg = _field(path, card, "experiment", "model", kind=dict)
  if model is not None:  # Silently ignored, it would hide that another model was meant.
    raise ConfigError(f"{path!r} holds the built-in model {cfg.get('name')!r}, which is rebuilt "
                      "from model.json; load it without model=")
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  try:
    cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()
                         if k in fields})
    hparams.check_experiment(Experiment(model=cfg))  # Its name and numbers' ranges.
  except (ConfigError, TypeError, ValueError) as e:
    raise _invalid(path, f"{CARD_NAME}'s model configuration is invalid "
                   f"({_one_line(e)})") from None
  if task == "classification" and len(names) < 2:
    raise _invalid(path, f"{CARD_NAME}'s 'class_names' has {len(names)} class(es); a "
                   "classifier has at least 2")
  # Its parameters are the folder's: a pretrained start it was fine-tuned from is not needed.
  cfg = dataclasses.replace(cfg, init_from=None, head="auto")
  return built_model(cfg, num_outputs(task, len(names)), shape), f"{CARD_NAME}'s"


def _card_features(path: str, card: dict,
                   shape: tuple[int, ...]) -> tuple[tuple, np.ndarray, np.ndarray]:
  """model.json's feature names and its standardization's [D] mean and [D] std, checked."""
  width = math.prod(shape)
  feature_names = tuple(_field(path, card, "feature_names", kind=list))
  if feature_names and len(feature_names) != width:
    raise _invalid(path, f"{CARD_NAME} names {len(feature_names)} features; its feature_shape "
                   f"{shape} has {width}")
  stats = []
  for key in ("mean", "std"):
    values = _field(path, card, "standardization", key, kind=list)
    try:
      values = np.asarray(values, np.float32)
    except (TypeError, ValueError):
      values = None
    if values is None or values.shape != (width,) or not np.isfinite(values).all():
      raise _invalid(path, f"{CARD_NAME}'s 'standardization.{key}' is not {width} finite "
                     "numbers (one per feature)")
    stats.append(values)
  return feature_names, stats[0], stats[1]


def _read_params(path: str, model: Model, built_from: str) -> tuple:
  """params.msgpack's ensemble members, each checked against `model`'s architecture."""
  from flax import serialization
  params_path = os.path.join(path, PARAMS_NAME)
  try:
    with open(params_path, "rb") as f:
      blob = f.read()
  except OSError as e:
    raise ConfigError(f"cannot read {params_path!r}: {_one_line(e)}") from None
  try:
    state = serialization.msgpack_restore(blob)
  except Exception as e:  # pylint: disable=broad-except  # msgpack's errors, whatever the bytes.
    what = ("is truncated" if not blob or "incomplete" in str(e)
            else f"is not a valid msgpack file ({_one_line(e)})")
    raise _invalid(path, f"{PARAMS_NAME} {what}") from None
  members = state.get("members") if isinstance(state, dict) else None
  if (not isinstance(members, dict) or not members
      or sorted(members) != sorted(str(i) for i in range(len(members)))):
    raise _invalid(path, f"{PARAMS_NAME} holds no ensemble members (members '0', '1', ...)")
  target = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  want = _leaf_shapes(target)
  params = []
  for i in range(len(members)):
    member = members[str(i)]
    problem = _architecture_mismatch(want, _leaf_shapes(member))
    if problem is None:
      try:
        params.append(params_like(target, member))
      except (KeyError, TypeError, ValueError) as e:
        problem = _one_line(e)
    if problem is not None:
      which = f" (member {i})" if len(members) > 1 else ""
      raise _invalid(path, f"{PARAMS_NAME} does not match {built_from} architecture{which}: "
                     f"{problem}")
  return tuple(params)
