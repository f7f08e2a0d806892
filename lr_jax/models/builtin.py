"""The built-in Flax modules (`MLP`, `CNN`), the `MODELS` registry and `build_model`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lr_jax.config import Registry
from lr_jax.errors import ConfigError
from lr_jax.models.adapters import from_linen
from lr_jax.models.model import Model
from lr_jax.models.pretrained import pretrained
from lr_jax.models.saved import read_params


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid,
    "elu": nn.elu, "silu": nn.silu,
}



def dropout(h: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
  """Inverted dropout with a traced rate: units kept with probability 1 - rate, scaled up.

  Built from `jax.random.bernoulli`, not `nn.Dropout` (which branches on a Python `rate ==
  0`): one program serves every rate, and at rate 0 every unit is kept and divided by 1.0, the
  input bit for bit.
  """
  keep = 1.0 - jnp.asarray(rate, h.dtype)
  mask = jax.random.bernoulli(key, keep, h.shape)
  return jnp.where(mask, h / keep, jnp.zeros((), h.dtype))



def _maybe_dropout(module: nn.Module, h: jax.Array, train: bool,
                   hparams: Mapping[str, jax.Array] | None) -> jax.Array:
  """Dropout at the traced `hparams["dropout_rate"]` when training; none without the number."""
  rate = (hparams or {}).get("dropout_rate")
  if rate is None or not train:
    return h
  return dropout(h, rate, module.make_rng("dropout"))



class MLP(nn.Module):
  """Dense layers with a nonlinearity; `hidden=()` is a linear model.

  Dropout after each hidden layer at `hparams["dropout_rate"]` when training (a traced
  number: one program for every rate); without it in `hparams`, no dropout code at all.
  """

  hidden: tuple[int, ...]
  num_outputs: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = False,
               hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
    act = _ACTIVATIONS[self.activation]
    h = x_BxD
    for width in self.hidden:
      h = _maybe_dropout(self, act(nn.Dense(width)(h)), train, hparams)
    return nn.Dense(self.num_outputs)(h)



class Conv3x3(nn.Module):
  """A 3x3, stride 1, SAME convolution over NHWC images, as nine shifted slices and one matmul.

  The same parameters as `nn.Conv(features, (3, 3))` (kernel [3, 3, C_in, C_out], lecun
  normal; bias zeros) and its outputs to float32 rounding, computed without a convolution
  op: XLA's CPU backend rewrites a convolution into its fast kernel's form only at a program's
  top level, so inside the trainer's `scan` (and under `vmap`'s grouped convolution) its weight
  gradient took a generic path, 7-11x slower (`benchmarks/conv_layouts.py`). As a matmul, a
  stream's first layer over all its points is one wide matmul, as an MLP's is.
  """

  features: int

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array) -> jax.Array:
    cin, (h, w) = x_BxHxWxC.shape[-1], x_BxHxWxC.shape[1:3]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, cin, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    padded = jnp.pad(x_BxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)],
                           axis=-1)  # [B, H, W, 9 C_in], in the kernel's (i, j, c) order
    return cols @ kernel.reshape(9 * cin, self.features) + bias.reshape(1, 1, 1, -1)


class CNN(nn.Module):
  """3x3 convolutions (one per width in `hidden`), 2x2 average pooling after each, one dense head.

  Each convolution is a `Conv3x3` named as `nn.Conv` would be (`Conv_0`, `Conv_1`, ...), so
  the parameters, their init and saved models are those of `nn.Conv`. Dropout before the head
  at `hparams["dropout_rate"]` when training, as `MLP`'s.
  """

  hidden: tuple[int, ...]
  num_outputs: int
  image_shape: tuple[int, ...]
  activation: str = "relu"

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = False,
               hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
    act = _ACTIVATIONS[self.activation]
    h = x_BxD.reshape((x_BxD.shape[0],) + tuple(self.image_shape))
    for i, width in enumerate(self.hidden):
      h = act(Conv3x3(width, name=f"Conv_{i}")(h))
      if h.shape[1] >= 2 and h.shape[2] >= 2:
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
    h = _maybe_dropout(self, h.reshape((h.shape[0], -1)), train, hparams)
    return nn.Dense(self.num_outputs)(h)



# The factories leave `cfg.dropout` out: it is the default of the traced `dropout_rate`, which
# the model reads from `hparams` (so two dropout rates share one program).
def _mlp(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> nn.Module:
  del feature_shape
  return MLP(cfg.hidden, num_outputs, cfg.activation)



def _linear(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> nn.Module:
  del cfg, feature_shape
  return MLP((), num_outputs)



def _cnn(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> nn.Module:
  if len(feature_shape) == 2:
    feature_shape = (*feature_shape, 1)
  if len(feature_shape) != 3:
    raise ConfigError(
        f"model 'cnn' needs image-shaped features (H, W[, C]), the data has shape {feature_shape};"
        " valid choices for flat features: mlp, linear")
  return CNN(cfg.hidden, num_outputs, feature_shape, cfg.activation)



# name -> factory(ModelConfig, num_outputs, feature_shape) -> linen module.
MODELS: dict[str, Callable[..., nn.Module]] = Registry("model", {"mlp": _mlp, "linear": _linear,
                                                                   "cnn": _cnn})



def build_model(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> Model:
  """The built-in model named by `cfg` (a `ModelConfig`), as a pure `Model`; with
  `cfg.init_from`, starting from those parameters (`pretrained`, its head per `cfg.head`).

  The model from scratch is built once per process and configuration (one object, so what
  keys a cache by the model hits it: `param_shapes`); a pretrained start reads
  its file each time."""
  # Keyed by the factory too: a name given another factory (`MODELS[name] = ...`) builds anew.
  model = _from_scratch(cfg, num_outputs, tuple(feature_shape), MODELS[cfg.name])
  if cfg.init_from is None:
    return model
  return pretrained(model, read_params(cfg.init_from), head=None if cfg.head == "none" else cfg.head)


@functools.lru_cache(maxsize=32)
def _from_scratch(cfg, num_outputs: int, feature_shape: tuple[int, ...], factory) -> Model:
  module = factory(cfg, num_outputs, feature_shape)
  return from_linen(module, math.prod(feature_shape))
