"""Models: built-in Flax modules and the adapter that makes any module pure.

The trainer sees a model only as a `Model`: two pure functions, `init(key) -> params` and
`apply(params, x_BxD, key, train) -> out_BxK`. Linen and NNX modules both become one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_jax.errors import ConfigError

Params = object  # A pytree of arrays.

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid,
    "elu": nn.elu, "silu": nn.silu,
}


class Model(NamedTuple):
  """A model as two pure functions.

  Attributes:
    init: `key -> params`.
    apply: `(params, x_BxD, key, train) -> out_BxK`; `key` drives dropout when `train`.
  """

  init: Callable[[jax.Array], Params]
  apply: Callable[[Params, jax.Array, jax.Array, bool], jax.Array]


class MLP(nn.Module):
  """Dense layers with a nonlinearity and optional dropout; `hidden=()` is a linear model."""

  hidden: tuple[int, ...]
  num_outputs: int
  activation: str = "relu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = False) -> jax.Array:
    act = _ACTIVATIONS[self.activation]
    h = x_BxD
    for width in self.hidden:
      h = act(nn.Dense(width)(h))
      if self.dropout:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(self.num_outputs)(h)


class CNN(nn.Module):
  """3x3 convolutions (one per width in `hidden`), 2x2 average pooling after each, one dense head."""

  hidden: tuple[int, ...]
  num_outputs: int
  image_shape: tuple[int, ...]
  activation: str = "relu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BxD: jax.Array, train: bool = False) -> jax.Array:
    act = _ACTIVATIONS[self.activation]
    h = x_BxD.reshape((x_BxD.shape[0],) + tuple(self.image_shape))
    for width in self.hidden:
      h = act(nn.Conv(width, (3, 3))(h))
      if h.shape[1] >= 2 and h.shape[2] >= 2:
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape((h.shape[0], -1))
    if self.dropout:
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(self.num_outputs)(h)


def _mlp(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> nn.Module:
  del feature_shape
  return MLP(cfg.hidden, num_outputs, cfg.activation, cfg.dropout)


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
  return CNN(cfg.hidden, num_outputs, feature_shape, cfg.activation, cfg.dropout)


# name -> factory(ModelConfig, num_outputs, feature_shape) -> linen module.
MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": _mlp, "linear": _linear, "cnn": _cnn}


def from_linen(module: nn.Module, num_features: int) -> Model:
  """Wraps a `flax.linen.Module` whose `__call__(x, train=...)` maps `[B, D]` to `[B, K]`.

  A module whose `__call__` has no `train` argument is called without one. Dropout, if any,
  draws from the "dropout" rng stream.
  """
  import inspect
  takes_train = "train" in inspect.signature(module.__call__).parameters
  dummy = np.zeros((1, num_features), np.float32)  # numpy: building a model starts no backend.

  def init(key: jax.Array) -> Params:
    kwargs = {"train": False} if takes_train else {}
    return module.init({"params": key}, dummy, **kwargs)["params"]

  def apply(params: Params, x_BxD: jax.Array, key: jax.Array, train: bool) -> jax.Array:
    kwargs = {"train": train} if takes_train else {}
    rngs = {"dropout": key} if key is not None else {}
    return module.apply({"params": params}, x_BxD, rngs=rngs, **kwargs)

  return Model(init, apply)


def from_nnx(make_module: Callable[..., object]) -> Model:
  """Wraps a `flax.nnx.Module` factory, `make_module(rngs: nnx.Rngs) -> module`.

  The module is split into its graph, its `nnx.Param`s (trained) and the rest (held fixed);
  `apply` merges them back for one pure call, so the trainer stays functional. The module's
  `__call__(x)` maps `[B, D]` to `[B, K]`; dropout layers are not supported through NNX.
  """
  from flax import nnx
  graphdef, _, rest = nnx.split(make_module(nnx.Rngs(0)), nnx.Param, ...)

  def init(key: jax.Array) -> Params:
    _, params, _ = nnx.split(make_module(nnx.Rngs(key)), nnx.Param, ...)
    return params

  def apply(params: Params, x_BxD: jax.Array, key: jax.Array, train: bool) -> jax.Array:
    del key, train
    return nnx.merge(graphdef, params, rest)(x_BxD)

  return Model(init, apply)


class Flat(NamedTuple):
  """A model whose parameters are one vector, and the ways back to its pytree.

  Attributes:
    model: the same model; its `init` returns `[P]` and its `apply` takes `[P]`.
    unravel: numpy `[..., P]` -> the original pytree, every leaf with the same leading axes.
    tree: the model on its own pytree (the one `flattened` was given).
    to_tree: traced `[P]` -> the pytree (slices and reshapes).
    to_flat: traced pytree -> `[P]` (one concatenation).
  """

  model: Model
  unravel: Callable[[np.ndarray], Params]
  tree: Model
  to_tree: Callable[[jax.Array], Params]
  to_flat: Callable[[Params], jax.Array]


def _identity(params: Params) -> Params:
  return params


def unflattened(model: Model) -> Flat:
  """A `Flat` whose "vector" is the pytree itself: every conversion is the identity."""
  return Flat(model, _identity, model, _identity, _identity)


def flattened(model: Model) -> Flat:
  """The model with its parameters raveled into one vector (`jax.flatten_util.ravel_pytree`).

  The trainer stores each variant's parameters (and best parameters) as one vector: the masks
  of stopped variants and the best-params copy are then one fused loop over one buffer instead
  of one per layer and bias. The optimizer still sees the pytree (`to_tree`/`to_flat` around
  its update), so per-layer transformations (LAMB's trust ratio, weight-decay masks, adafactor)
  are what they say; only the elementwise built-in families (`optim.ELEMENTWISE`) update the
  vector, the same numbers. A model whose parameters are not all of one float dtype is left as
  it is (raveling would cast them).
  """
  from jax.flatten_util import ravel_pytree
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  leaves, treedef = jax.tree_util.tree_flatten(shapes)
  dtypes = {leaf.dtype for leaf in leaves}
  if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
    return unflattened(model)
  _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))
  ends = np.cumsum([int(np.prod(leaf.shape)) for leaf in leaves])

  def unravel_host(flat: np.ndarray) -> Params:
    parts = np.split(np.asarray(flat), ends[:-1], axis=-1)
    return jax.tree_util.tree_unflatten(
        treedef, [p.reshape(p.shape[:-1] + leaf.shape) for p, leaf in zip(parts, leaves)])

  def to_flat(params: Params) -> jax.Array:
    return ravel_pytree(params)[0]

  return Flat(
      Model(init=lambda key: to_flat(model.init(key)),
            apply=lambda params, x_BxD, key, train: model.apply(unravel(params), x_BxD, key, train)),
      unravel_host, model, unravel, to_flat)


def build_model(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> Model:
  """The built-in model named by `cfg` (a `ModelConfig`), as a pure `Model`."""
  module = MODELS[cfg.name](cfg, num_outputs, feature_shape)
  num_features = 1
  for d in feature_shape:
    num_features *= d
  return from_linen(module, num_features)
