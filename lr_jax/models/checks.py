"""`check_widths`: a user model refused before training where it does not fit the data."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lr_jax.errors import ConfigError
from lr_jax.models.convolutions import _convolution, _needs_images_for, _NeedsImages
from lr_jax.models.model import Model, apply_model, default_hparams


def _one_line(e: Exception, limit: int = 200) -> str:
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text if len(text) <= limit else text[:limit - 3] + "..."



def check_widths(model: Model, num_features: int, num_outputs: int, data: str,
                 feature_shape: tuple[int, ...] | None = None) -> None:
  """Refuses a user model that does not fit the data, from shapes alone.

  `jax.eval_shape` traces `init` and `apply` (in validation and in training mode) without
  compiling or running them. A model that fails on `[B, num_features]` inputs is tried on the
  other widths its parameters have, to name the width it was built for. A `ConfigError` of the
  model's own (mutable state, say) is raised as it is.

  Args:
    model: the user's model.
    num_features: D, the width of the data's (flattened) examples.
    num_outputs: K, the classes (1 for regression).
    data: how to name the data set in a message, e.g. "'digits' (10 classes)".
    feature_shape: the shape of the data's examples, to name in a message; default (D,).

  Raises:
    ConfigError: naming both widths (or shapes) of the mismatch, or the model's own error in
      one line.
  """
  feature_shape = tuple(feature_shape or (num_features,))
  declared = model.input_shape
  if declared is not None and math.prod(declared) != num_features:
    if len(declared) == 1:
      raise ConfigError(
          f"model {model.name!r} takes {declared[0]} input features, the data set {data} has "
          f"{num_features}; build its input for {num_features} features (input_shape="
          f"{num_features})")
    raise ConfigError(
        f"model {model.name!r} takes examples of shape {declared} ({math.prod(declared)} "
        f"features), the data set {data} has {num_features} features of shape {feature_shape}; "
        f"give input_shape={feature_shape} or another shape of {num_features} elements")
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # A raw PRNGKey, as the trainer passes.
  example_shape = declared if declared is not None else (num_features,)
  try:
    params = jax.eval_shape(model.init, key)
  except _NeedsImages as e:
    raise _needs_images_for(model.name, e.conv, e.shape, num_features, data,
                            feature_shape) from None
  except ConfigError:
    raise
  except Exception as e:  # Any error of the user's code: report it, in one line.
    raise ConfigError(f"model {model.name!r} fails to initialize: {_one_line(e)}") from None

  def out_shape(width: int, train: bool = False) -> tuple[int, ...]:
    x_BxD = jax.ShapeDtypeStruct((2, width), jnp.float32)
    hp = default_hparams(model)  # A model declaring numbers is checked with its defaults.
    return jax.eval_shape(lambda p, x, k: apply_model(model, p, x, k, train, hp), params, x_BxD,
                          key).shape

  try:
    shape = out_shape(num_features)
  except ConfigError:
    raise
  except Exception as error:
    conv = _convolution(error, len(example_shape))
    if conv is not None:  # An nnx convolution given the flat rows (no input_shape), say.
      raise _needs_images_for(model.name, conv, example_shape, num_features, data,
                              feature_shape) from None
    dims = sorted({int(d) for leaf in jax.tree_util.tree_leaves(params)
                   for d in getattr(leaf, "shape", ())} - {num_features})
    for width in dims if declared is None else ():
      try:
        out_shape(width)
      except Exception:
        continue
      raise ConfigError(
          f"model {model.name!r} takes {width} input features, the data set {data} has "
          f"{num_features}; build its input for {num_features} features (from_linen's "
          "input_shape, or the in_features of an nnx first layer)") from None
    raise ConfigError(
        f"model {model.name!r} fails on inputs of {num_features} features, the width of the "
        f"data set {data}: {_one_line(error)}") from None
  if len(shape) != 2:
    raise ConfigError(
        f"model {model.name!r} returns shape {shape} for a batch of shape (2, {num_features}); "
        f"it must return [examples, {num_outputs}]")
  if shape[1] != num_outputs:
    raise ConfigError(
        f"model {model.name!r} has {shape[1]} outputs, the data set {data} needs "
        f"{num_outputs}; make its last layer {num_outputs} wide")
  try:  # Training mode: dropout's rngs, state a training call would change.
    out_shape(num_features, train=True)
  except ConfigError:
    raise
  except Exception as error:
    raise ConfigError(
        f"model {model.name!r} fails in training mode (train=True) on the data set {data}: "
        f"{_one_line(error)}") from None
