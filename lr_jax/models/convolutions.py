"""A user model's flax convolution given flat examples: found, and refused in one line."""

from __future__ import annotations

import flax.linen as nn
import numpy as np

from lr_jax.errors import ConfigError


_SPATIAL = {1: "length", 2: "height, width", 3: "depth, height, width"}



def _conv_layer(obj) -> tuple[str, int, str] | None:
  """(how a message names it, its spatial rank k, its wrapper) of a flax convolution layer
  (linen or nnx), or None for any other object."""
  from flax import nnx  # Late: only a failing or checked model needs it.
  if (not isinstance(obj, (nn.Module, nnx.Module)) or not type(obj).__module__.startswith("flax.")
      or "Conv" not in type(obj).__name__):
    return None
  kernel = getattr(obj, "kernel_size", None)
  k = 1 if isinstance(kernel, (int, np.integer)) else len(kernel or ())
  if not k:
    return None
  linen = isinstance(obj, nn.Module)
  label = (f"{type(obj).__name__} layer"
           + (f" {obj.name}" if linen and getattr(obj, "name", None) else "")
           + f" (kernel_size {kernel})")
  return label, k, "from_linen" if linen else "from_nnx"



def _convolution(error: BaseException, example_rank: int) -> tuple[str, int, str] | None:
  """The flax convolution an error was raised in, where the model's examples lack its rank.

  The innermost frame of `error`'s traceback that runs a flax layer (linen or nnx) tells the
  layer. A convolution with a k-dimensional kernel takes examples of rank k + 1 (spatial axes,
  then channels); one given flat examples ([batch, D]) fails inside flax with a broadcast
  error that names neither.

  Returns:
    `_conv_layer`'s (name, k, wrapper), or None where the error is not a convolution's or the
    examples have its rank.
  """
  from flax import nnx
  layer, tb = None, error.__traceback__
  while tb is not None:
    obj = tb.tb_frame.f_locals.get("self")
    if isinstance(obj, (nn.Module, nnx.Module)) and type(obj).__module__.startswith("flax."):
      layer = obj
    tb = tb.tb_next
  conv = _conv_layer(layer)
  if conv is None or example_rank >= conv[1] + 1:
    return None
  return conv



def _batch_convolutions(name: str, batch_shape: tuple[int, ...]):
  """A linen interceptor refusing a convolution given the model's own `[B, *input_shape]`
  batch where `input_shape` lacks the channel axis (or more): flax would fail on it, or -- one
  axis short -- take it for one unbatched image whose first axis is the batch, convolving
  across examples (silently: every shape fits)."""

  def intercept(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and args:
      conv = _conv_layer(context.module)
      shape = getattr(args[0], "shape", None)
      if conv is not None and shape == batch_shape and len(shape) - 1 <= conv[1]:
        raise _NeedsImages(name, conv, tuple(shape[1:]))
    return next_fun(*args, **kwargs)

  return intercept



def _image_dims(k: int) -> str:
  return f"({_SPATIAL.get(k, f'{k} spatial axes')}, channels)"



class _NeedsImages(ConfigError):
  """A user model's convolution given flat (or too few) axes: the one-line message, and what
  `check_widths` adds the data set to."""

  def __init__(self, name: str, conv: tuple[str, int, str], shape: tuple[int, ...]):
    layer, k, wrapper = conv
    self.model_name, self.conv, self.shape = name, conv, shape
    if len(shape) == k:  # One axis short: a channel added fits.
      fix = f"input_shape={(*shape, 1)}, one channel"
    else:
      fix = (f"input_shape=(h, w, c) of that form (e.g. (8, 8, 1) for 8x8 images of one "
             f"channel), or use a dense model for flat features" if k == 2 else
             f"an input_shape of {k + 1} axes, or use a dense model for flat features")
    super().__init__(f"model {name!r}: its {layer} needs image-shaped examples "
                     f"{_image_dims(k)}, it got examples of shape {shape}{_unbatched(shape, k)}"
                     f"; give {wrapper} {fix}")



def _unbatched(shape: tuple[int, ...], k: int) -> str:
  return (" (no channel axis: flax would take the batch for an image axis and convolve "
          "across examples)" if len(shape) == k else "")



def _needs_images_for(name: str, conv: tuple[str, int, str], shape: tuple[int, ...],
                      num_features: int, data: str,
                      feature_shape: tuple[int, ...]) -> ConfigError:
  """`_NeedsImages`'s refusal, naming the data set and the input shape that fits it."""
  layer, k, wrapper = conv
  head = (f"model {name!r} fails on inputs of {num_features} features, the width of the data "
          f"set {data}: its {layer} needs image-shaped examples {_image_dims(k)}, it got "
          f"examples of shape {shape}{_unbatched(shape, k)}")
  fits = feature_shape + (1,) if len(feature_shape) == k else feature_shape
  if len(fits) == k + 1:
    return ConfigError(f"{head}; give {wrapper} input_shape={fits} (the data set's "
                       f"feature_shape{', one channel' if fits != feature_shape else ''})")
  if len(feature_shape) <= 1:
    return ConfigError(f"{head}; the data set has flat features of shape {feature_shape}, which "
                       f"a convolution cannot take: use a dense model (e.g. lr_jax's mlp)")
  return ConfigError(f"{head}; give {wrapper} an input_shape of {k + 1} axes, of "
                     f"{num_features} elements in all")
