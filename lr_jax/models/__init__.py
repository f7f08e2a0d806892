"""Models: built-in Flax modules and the adapter that makes any module pure.

The trainer sees a model only as a `Model`: two pure functions, `init(key) -> params` and
`apply(params, x_BxD, key, train[, hparams]) -> out_BxK`. Linen and NNX modules both become one.
`hparams` is the model's slice of a variant's dynamic numbers (`{"dropout_rate": []}` for the
built-in models where a sweep has dropout), each a traced scalar.

The package's modules, one idea each (each imports only those above it):

    model         `Model`, `apply_model`; the numbers a model declares (`default_hparams`);
                  `param_shapes`, its parameters as shapes, traced once per model
    convolutions  a user's flax convolution given flat examples, found and refused in one line
    adapters      `from_linen`, `from_nnx`: a user's module as a `Model`
    builtin       `MLP`, `CNN`, `dropout` at a traced rate; `MODELS`, `build_model`
    checks        `check_widths`: a user model that does not fit the data, refused from shapes
    layers        `layer_names`, `head_layers`, `with_head`, `in_head`, `layer_depths`,
                  `leaf_depths`, `depth_of_leaves`: the params' top-level
                  layers, the head (a pattern of layer names, a function of leaf paths, or the
                  last layer), each parameter's depth below it
    pretrained    `pretrained(model, params, head=...)`: the model starting from given params
    saved         `read_params`: an lr_jax model folder's, a Flax msgpack file's or an Orbax
                  checkpoint's parameters
"""

from lr_jax.models.adapters import from_linen, from_nnx
from lr_jax.models.builtin import CNN, MLP, MODELS, build_model, dropout
from lr_jax.models.checks import check_widths
from lr_jax.models.layers import (depth_of_leaves, head_layers, in_head, layer_depths,
                                  layer_names, leaf_depths, leaf_paths, with_head)
from lr_jax.models.model import (FrozenDict, Model, Params, apply_model, default_hparams,
                                 param_shapes)
from lr_jax.models.pretrained import pretrained
from lr_jax.models.saved import read_params

__all__ = [
    "CNN", "MLP", "MODELS", "FrozenDict", "Model", "Params", "apply_model", "build_model",
    "check_widths", "default_hparams", "dropout", "from_linen", "from_nnx", "depth_of_leaves",
    "head_layers", "in_head", "layer_depths", "layer_names", "leaf_depths", "leaf_paths",
    "param_shapes", "with_head", "pretrained", "read_params",
]
