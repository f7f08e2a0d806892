"""`Model`: a model as two pure functions, `apply_model`, the numbers a model declares."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.spec import FINITE, HParam


Params = object  # A pytree of arrays.



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
    head: which parameters are the head: a regular expression of the params' top-level layer
      names, or a function of a leaf's path text ("Dense_1/kernel") that is true in the head
      (`models.with_head`); None: the last layer. Fine-tuning's numbers scale the others'
      learning rate (`backbone_lr_scale`, `layer_lr_decay`, `l2sp`).
  """

  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]
  name: str = "user"
  input_shape: tuple[int, ...] | None = None
  hparams: Mapping[str, object] = FrozenDict()
  head: str | Callable[[str], bool] | None = None



def apply_model(model: Model, params: Params, x_BxD: jax.Array, key: jax.Array | None,
                train: bool, hparams: Mapping[str, jax.Array] | None = None) -> jax.Array:
  """`model.apply`, with the model's numbers as its fifth argument only where there are any."""
  if hparams:
    return model.apply(params, x_BxD, key, train, dict(hparams))
  return model.apply(params, x_BxD, key, train)



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


def param_shapes(model: Model):
  """`model.init`'s parameters as shapes, traced once per model object (each time for one
  whose fields do not hash, e.g. a user's list). The key is abstract too, so nothing compiles
  and JAX_LOG_COMPILES says nothing: a script can plan before it has checked its --out."""
  try:
    hash(model)
  except TypeError:
    return _param_shapes.__wrapped__(model)
  return _param_shapes(model)


@functools.lru_cache(maxsize=32)
def _param_shapes(model: Model):
  with jax.log_compiles(False):
    return jax.eval_shape(model.init, jax.eval_shape(jax.random.PRNGKey, 0))
