"""`from_linen`, `from_nnx`: a user's Flax module as a pure `Model`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.models.convolutions import _batch_convolutions, _convolution, _NeedsImages
from lr_jax.models.model import Model, Params, _declared


def _input_shape(input_shape: int | tuple[int, ...], name: str) -> tuple[int, ...]:
  """`input_shape` as a tuple of positive ints: an int D is the flat shape (D,)."""
  shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else input_shape
  if (not isinstance(shape, (tuple, list)) or not shape
      or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1
             for d in shape)):
    raise ConfigError(
        f"input_shape of model {name!r} must be a positive int (flat features) or a tuple of "
        f"positive ints (one example's shape, e.g. (8, 8, 1)), got {input_shape!r}")
  return tuple(int(d) for d in shape)



def _refuse_mutable_state(name: str, kind: str) -> NoReturn:
  raise ConfigError(
      f"model {name!r} has mutable state ({kind}), which lr_jax does not carry: it trains "
      "models whose only variables are their parameters; use a stateless layer instead "
      "(e.g. LayerNorm for BatchNorm)")



def _typed_key(key: jax.Array) -> jax.Array:
  """A typed PRNG key (what nnx streams hold) from a raw `uint32[2]` one or a typed one."""
  return key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)



def from_linen(module: nn.Module, input_shape: int | tuple[int, ...],
               hparams: Mapping[str, object] | None = None) -> Model:
  """Wraps a `flax.linen.Module` whose `__call__(x[, train][, hparams])` maps to `[B, K]`.

  `x` is `[B, *input_shape]`: the trainer hands a model the data's rows flat, `[B, D]`, and
  `apply` reshapes them first, so a CNN on the digits images is `from_linen(cnn, (8, 8, 1))`
  (`Dataset.feature_shape` is the data's own shape). A module whose `__call__` has no `train`
  argument is called without one. Dropout, if any, draws from the "dropout" rng stream, keyed
  by the trainer per seed and step; `train=False` (validation) must switch it off.

  A module's own sweepable numbers: declare them in `hparams` and give `__call__` an `hparams`
  keyword; it receives `{name: value}` of every declared number: the variant being trained's,
  traced scalars (use them in jnp arithmetic, not in Python `if`), or the declared default
  (at `init`, and where the sweep does not list it):

      class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train=False, hparams=None):
          temperature = hparams["temperature"]
          return nn.Dense(10)(x) / temperature
      model = from_linen(Net(), 64, hparams={"temperature": HParam(1.0, POSITIVE)})
      Grid(learning_rates=(1e-3,), hparams={"model.temperature": (0.5, 1.0, 2.0)})

  Args:
    module: the module; its only variables must be its "params" (BatchNorm's "batch_stats",
      or any other collection, is refused when the model is initialized).
    input_shape: D for flat `[B, D]` inputs, or the shape of one example, e.g. (8, 8, 1).
    hparams: the numbers the module takes, `{name: lr_jax.hparams.HParam}` (or a bare finite
      default, any finite value valid); they become axes of the "model" namespace.

  Returns:
    The `Model`, named by the module's class.
  """
  import inspect
  name = type(module).__name__
  shape = _input_shape(input_shape, name)
  call_args = inspect.signature(module.__call__).parameters
  takes_train = "train" in call_args
  takes_hparams = "hparams" in call_args
  declared = _declared(hparams, name)
  if declared and not takes_hparams:
    raise ConfigError(f"model {name!r} declares hyperparameters {', '.join(declared)} but its "
                      "__call__ has no `hparams` argument to receive them; add one")
  dummy = np.zeros((1, *shape), np.float32)  # numpy: building a model starts no backend.

  defaults = {k: v.default for k, v in declared.items()}

  def init(key: jax.Array) -> Params:
    kwargs = {"train": False} if takes_train else {}
    if takes_hparams:
      kwargs["hparams"] = dict(defaults)
    try:
      with nn.intercept_methods(_batch_convolutions(name, dummy.shape)):
        variables = module.init({"params": key}, dummy, **kwargs)
    except ConfigError:
      raise
    except Exception as e:  # A convolution given flat rows: one line, not flax's broadcast error.
      conv = _convolution(e, len(shape))
      if conv is None:
        raise
      raise _NeedsImages(name, conv, shape) from None
    others = sorted(set(variables) - {"params"})
    if others:
      _refuse_mutable_state(name, "the linen collection " + ", ".join(map(repr, others)))
    return variables["params"]

  def apply(params: Params, x_BxD: jax.Array, key: jax.Array, train: bool,
            hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
    kwargs = {"train": train} if takes_train else {}
    if takes_hparams:  # Every declared number: the variant's, or its default where not swept.
      kwargs["hparams"] = {**defaults, **(hparams or {})}
    rngs = {"dropout": key} if key is not None else {}
    x = x_BxD.reshape((x_BxD.shape[0], *shape))
    return module.apply({"params": params}, x, rngs=rngs, **kwargs)

  return Model(init, apply, name, shape, declared)



def from_nnx(make_module: Callable[..., object],
             input_shape: int | tuple[int, ...] | None = None,
             hparams: Mapping[str, object] | None = None) -> Model:
  """Wraps a `flax.nnx.Module` factory, `make_module(rngs: nnx.Rngs) -> module`.

  The module is split into its graph, its `nnx.Param`s (trained) and the rest (rng streams,
  constants); `apply` merges copies of them for one call and throws the copies away, so the
  trainer stays functional and no call changes what the next one sees. In that call the module
  is in `train()` mode when training and `eval()` mode in validation (so `nnx.Dropout` is on,
  then off), and every rng stream it holds is reseeded from the trainer's key, so dropout masks
  depend only on the seed and the step. A `__call__` with a `train` argument also gets it; one
  with an `rngs` argument gets an `nnx.Rngs` of that key.

  A module's own sweepable numbers: declare them in `hparams` and give `__call__` an `hparams`
  argument; it receives `{name: value}` of every declared number: the variant being trained's
  (traced scalars), or the declared default where the sweep does not list it: e.g.
  `def __call__(self, x, hparams=None): scale = hparams["scale"]`, with
  `from_nnx(Net, 64, hparams={"scale": 1.0})`.

  Args:
    make_module: builds the module from an `nnx.Rngs`; called once here and once per seed.
    input_shape: the shape `apply` reshapes the flat `[B, D]` rows to, e.g. (8, 8, 1) for a
      convolution on the digits images; None (or D) passes them flat.
    hparams: the numbers the module takes, `{name: lr_jax.hparams.HParam}` (or a bare finite
      default); they become axes of the "model" namespace.

  Returns:
    The `Model`, named by the module's class.

  Raises:
    ConfigError: if the module has state besides its parameters and rng streams that training
      would change: `nnx.BatchStat`s (BatchNorm) here, any other variable when a call changes
      it.
  """
  import inspect

  from flax import nnx
  module = make_module(nnx.Rngs(0))
  name = type(module).__name__
  shape = None if input_shape is None else _input_shape(input_shape, name)
  graphdef, _, rest = nnx.split(module, nnx.Param, ...)
  for path, leaf in nnx.iter_graph(module):
    if isinstance(leaf, nnx.BatchStat):
      _refuse_mutable_state(name, f"nnx.{type(leaf).__name__} {_dotted(path)}")
  call_args = inspect.signature(type(module).__call__).parameters
  declared = _declared(hparams, name)
  if declared and "hparams" not in call_args:
    raise ConfigError(f"model {name!r} declares hyperparameters {', '.join(declared)} but its "
                      "__call__ has no `hparams` argument to receive them; add one")

  defaults = {k: v.default for k, v in declared.items()}

  def init(key: jax.Array) -> Params:
    _, params, _ = nnx.split(make_module(nnx.Rngs(key)), nnx.Param, ...)
    return params

  def apply(params: Params, x_BxD: jax.Array, key: jax.Array, train: bool,
            hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
    # Copies: the call below may advance rng counts, which must not reach `rest`.
    model = nnx.merge(graphdef, params, rest, copy=True)
    if train:
      model.train()
    else:
      model.eval()
    fixed = []  # Variables besides parameters and rng streams: a call must leave them as is.
    streams = 0
    for path, node in nnx.iter_graph(model):
      if isinstance(node, nnx.RngStream) and key is not None:
        streams += 1
        stream_key = jax.random.fold_in(_typed_key(key), streams)
        if node.key.shape:
          stream_key = jax.random.split(stream_key, node.key.shape)
        node.key.set_value(stream_key)
        node.count.set_value(jnp.zeros(node.key.shape, jnp.uint32))
      elif isinstance(node, nnx.Variable) and not isinstance(node, (nnx.Param, nnx.RngState)):
        fixed.append((path, node, jax.tree_util.tree_leaves(node.get_value())))
    kwargs = {}
    if "train" in call_args:
      kwargs["train"] = train
    if "rngs" in call_args:
      kwargs["rngs"] = nnx.Rngs(0 if key is None else jax.random.fold_in(_typed_key(key), 0))
    if "hparams" in call_args:  # Every declared number: the variant's, or its default.
      kwargs["hparams"] = {**defaults, **(hparams or {})}
    x = x_BxD if shape is None else x_BxD.reshape((x_BxD.shape[0], *shape))
    out = model(x, **kwargs)
    for path, variable, leaves in fixed:  # A write replaces an array: compare identities.
      now = jax.tree_util.tree_leaves(variable.get_value())
      if len(now) != len(leaves) or any(a is not b for a, b in zip(now, leaves)):
        _refuse_mutable_state(name, f"{type(variable).__name__} {_dotted(path)}, which a call "
                              "changes")
    return out

  return Model(init, apply, name, shape, declared)



def _dotted(path: tuple) -> str:
  return ".".join(map(str, path))
