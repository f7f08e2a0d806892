"""Models: built-in Flax modules and the adapter that makes any module pure.

The trainer sees a model only as a `Model`: two pure functions, `init(key) -> params` and
`apply(params, x_BxD, key, train[, hparams]) -> out_BxK`. Linen and NNX modules both become one.
`hparams` is the model's slice of a variant's dynamic numbers (`{"dropout_rate": []}` for the
built-in models where a sweep has dropout), each a traced scalar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple, NoReturn

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lr_jax.config import Registry
from lr_jax.errors import ConfigError
from lr_jax.spec import FINITE, HParam

Params = object  # A pytree of arrays.

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "gelu": nn.gelu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid,
    "elu": nn.elu, "silu": nn.silu,
}


class FrozenDict(dict):
  """A read-only dict that hashes by its items, so a `Model` holding one can key a cache."""

  def __hash__(self):
    return hash(tuple(sorted(self.items())))

  def _refuse(self, *args, **kwargs):
    raise TypeError("a model's declared hyperparameters are read-only")

  __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _refuse


class Model(NamedTuple):
  """A model as two pure functions.

  Attributes:
    init: `key -> params`.
    apply: `(params, x_BxD, key, train[, hparams]) -> out_BxK`; `key` drives dropout when
      `train`. `hparams` is `{name: []}`, the model namespace's numbers of one variant (traced
      scalars); the trainer passes it only where the sweep has any (`apply_model`), so a
      model declaring none may take four arguments.
    name: what results call the model: the module's class name for `from_linen` and
      `from_nnx`.
    input_shape: the shape of one example that `apply` reshapes its `[B, D]` rows to (so
      `prod(input_shape) == D`), or None where the model declares none.
    hparams: the numbers the model declares, `{name: lr_jax.hparams.HParam}` (default and
      valid range): sweepable axes of the "model" namespace (`Grid(hparams={"model.<name>":
      ...})`), each handed to `apply` per variant. A `FrozenDict` (a model keys compile
      caches); `from_linen` / `from_nnx(..., hparams=)` build it.
  """

  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]
  name: str = "user"
  input_shape: tuple[int, ...] | None = None
  hparams: Mapping[str, object] = FrozenDict()


def apply_model(model: Model, params: Params, x_BxD: jax.Array, key: jax.Array | None,
                train: bool, hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
  """`model.apply`, with the model's numbers as its fifth argument only where there are any."""
  if hparams:
    return model.apply(params, x_BxD, key, train, dict(hparams))
  return model.apply(params, x_BxD, key, train)


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


class CNN(nn.Module):
  """3x3 convolutions (one per width in `hidden`), 2x2 average pooling after each, one dense head.

  Dropout before the head at `hparams["dropout_rate"]` when training, as `MLP`'s.
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
    for width in self.hidden:
      h = act(nn.Conv(width, (3, 3))(h))
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


def _declared(hparams: Mapping[str, object] | None, name: str) -> FrozenDict:
  """A model's declared numbers as `{name: HParam}`; a bare default allows any finite number."""
  if not hparams:
    return FrozenDict()
  out = {}
  for key, spec in dict(hparams or {}).items():
    if not isinstance(key, str) or not key.isidentifier():
      raise ConfigError(f"model {name!r}: hyperparameter names must be identifiers, got {key!r}")
    if not isinstance(spec, HParam):
      if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not math.isfinite(spec):
        raise ConfigError(f"model {name!r}: hyperparameter {key!r} must be declared as a finite "
                          f"default or an lr_jax.hparams.HParam, got {spec!r}")
      spec = HParam(float(spec), FINITE)
    out[key] = spec
  return FrozenDict(out)


def default_hparams(model: Model) -> dict[str, jax.Array]:
  """`{name: default}` of the numbers a model declares, as float32 scalars ({} for none)."""
  return {k: np.float32(spec.default) for k, spec in dict(model.hparams).items()}


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
            apply=lambda params, x_BxD, key, train, *hparams: model.apply(
                unravel(params), x_BxD, key, train, *hparams),
            hparams=model.hparams),
      unravel_host, model, unravel, to_flat)


def build_model(cfg, num_outputs: int, feature_shape: tuple[int, ...]) -> Model:
  """The built-in model named by `cfg` (a `ModelConfig`), as a pure `Model`."""
  module = MODELS[cfg.name](cfg, num_outputs, feature_shape)
  num_features = 1
  for d in feature_shape:
    num_features *= d
  return from_linen(module, num_features)
