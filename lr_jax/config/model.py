"""`ModelConfig`: a built-in model."""

from __future__ import annotations

import dataclasses

from lr_jax.config.checks import check_choice, check_positive
from lr_jax.config.fields import check_fields
from lr_jax.errors import ConfigError

ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "elu", "silu")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A built-in model.

  Attributes:
    name: "mlp", "linear" or "cnn" (see `lr_jax.models.MODELS`).
    hidden: hidden-layer widths of the MLP, channels of the CNN's conv layers.
    activation: nonlinearity of the hidden layers.
    dropout: dropout rate after each hidden layer (training only); 0 disables it.
    init_from: a pretrained start: an lr_jax model folder (save_model's), a Flax msgpack file
      or an Orbax checkpoint directory whose parameters every variant starts from
      (`lr_jax.models.pretrained`); None: each seed's fresh init.
    head: with init_from, the layer each seed initializes anew: "auto" (the last, where its
      shapes differ: another number of classes), "last", "none", or a layer's name.
  """

  name: str = "mlp"
  hidden: tuple[int, ...] = (128,)
  activation: str = "relu"
  dropout: float = 0.0
  init_from: str | None = None
  head: str = "auto"

  def __post_init__(self):
    check_fields(self)
    if not (self.head in ("auto", "last", "none") or self.head.isidentifier()):
      raise ConfigError(f"head {self.head!r} is not a layer name; valid choices: auto, last, none "
                        "or a layer's name (e.g. Dense_1)")
    for width in self.hidden:
      check_positive("hidden width", width, integer=True)
    if self.name == "cnn" and not self.hidden:
      raise ConfigError("model 'cnn' needs at least one conv width in hidden, got ()")
    check_choice("activation", self.activation, ACTIVATIONS)
