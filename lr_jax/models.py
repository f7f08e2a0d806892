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
    name: what results call the model: the module's class name for `from_linen` and
      `from_nnx`.
  """

  init: Callable[[jax.Array], Params]
  apply: Callable[[Params, jax.Array, jax.Array, bool], jax.Array]
  name: str = "user"


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

  return Model(init, apply, type(module).__name__)


def from_nnx(make_module: Callable[..., object]) -> Model:
  """Wraps a `flax.nnx.Module` factory, `make_module(rngs: nnx.Rngs) -> module`.

  The module is split into its graph, its `nnx.Param`s (trained) and the rest (held fixed);
  `apply` merges them back for one pure call, so the trainer stays functional. The module's
  `__call__(x)` maps `[B, D]` to `[B, K]`; dropout layers are not supported through NNX.
  """
  from flax import nnx
  module = make_module(nnx.Rngs(0))
  graphdef, _, rest = nnx.split(module, nnx.Param, ...)

  def init(key: jax.Array) -> Params:
    _, params, _ = nnx.split(make_module(nnx.Rngs(key)), nnx.Param, ...)
    return params

  def apply(params: Params, x_BxD: jax.Array, key: jax.Array, train: bool) -> jax.Array:
    del key, train
    return nnx.merge(graphdef, params, rest)(x_BxD)

  return Model(init, apply, type(module).__name__)


def _one_line(e: Exception, limit: int = 200) -> str:
  text = " ".join(f"{type(e).__name__}: {e}".split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def check_widths(model: Model, num_features: int, num_outputs: int, data: str) -> None:
  """Refuses a user model whose input or output width does not fit the data, from shapes alone.

  `jax.eval_shape` traces `init` and `apply` without compiling or running them. A model that
  fails on `[B, num_features]` inputs is tried on the other widths its parameters have, to
  name the width it was built for.

  Args:
    model: the user's model.
    num_features: D, the width of the data's (flattened) examples.
    num_outputs: K, the classes (1 for regression).
    data: how to name the data set in a message, e.g. "'digits' (10 classes)".

  Raises:
    ConfigError: naming both widths of the mismatch, or the model's own error in one line.
  """
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # A raw PRNGKey, as the trainer passes.
  try:
    params = jax.eval_shape(model.init, key)
  except Exception as e:  # Any error of the user's code: report it, in one line.
    raise ConfigError(f"model {model.name!r} fails to initialize: {_one_line(e)}") from None

  def out_shape(width: int) -> tuple[int, ...]:
    x_BxD = jax.ShapeDtypeStruct((2, width), jnp.float32)
    return jax.eval_shape(lambda p, x, k: model.apply(p, x, k, False), params, x_BxD, key).shape

  try:
    shape = out_shape(num_features)
  except Exception as error:
    dims = sorted({int(d) for leaf in jax.tree_util.tree_leaves(params)
                   for d in getattr(leaf, "shape", ())} - {num_features})
    for width in dims:
      try:
        out_shape(width)
      except Exception:
        continue
      raise ConfigError(
          f"model {model.name!r} takes {width} input features, the data set {data} has "
          f"{num_features}; build its input for {num_features} features (from_linen's "
          "num_features, or the in_features of an nnx first layer)") from None
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


class Flat(NamedTuple):
  """A model whose parameters are one vector, and the way back to its pytree on the host.

  Attributes:
    model: the same model; its `init` returns `[P]` and its `apply` takes `[P]`.
    unravel: numpy `[..., P]` -> the original pytree, every leaf with the same leading axes.
  """

  model: Model
  unravel: Callable[[np.ndarray], Params]


def flattened(model: Model) -> Flat:
  """The model with its parameters raveled into one vector (`jax.flatten_util.ravel_pytree`).

  One vector per variant makes each per-step pass of the trainer (the optimizer's update, the
  masks of stopped variants, the best-params copy) one fused loop over one buffer instead of one
  per layer and bias: on workload P (`benchmarks/throughput.py`) about 15% faster per variant,
  and a smaller program to compile. A model whose parameters are not all of one float dtype is
  left as it is (raveling would cast them).
  """
  from jax.flatten_util import ravel_pytree
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  leaves, treedef = jax.tree_util.tree_flatten(shapes)
  dtypes = {leaf.dtype for leaf in leaves}
  if len(dtypes) != 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
    return Flat(model, lambda params: params)
  _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))
  ends = np.cumsum([int(np.prod(leaf.shape)) for leaf in leaves])

  def unravel_host(flat: np.ndarray) -> Params:
    parts = np.split(np.asarray(flat), ends[:-1], axis=-1)
    return jax.tree_util.tree_unflatten(
        treedef, [p.reshape(p.shape[:-1] + leaf.shape) for p, leaf in zip(parts, leaves)])

  return Flat(
      Model(init=lambda key: ravel_pytree(model.init(key))[0],
            apply=lambda params, x_BxD, key, train: model.apply(unravel(params), x_BxD, key, train)),
      unravel_host)


def build_model(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> Model:
  """The built-in model named by `cfg` (a `ModelConfig`), as a pure `Model`."""
  module = MODELS[cfg.name](cfg, num_outputs, feature_shape)
  num_features = 1
  for d in feature_shape:
    num_features *= d
  return from_linen(module, num_features)
