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
  """

  name: str = "mlp"
  hidden: tuple[int, ...] = (128,)
  activation: str = "relu"
  dropout: float = 0.0

  def __post_init__(self):
    check_fields(self)
    for width in self.hidden:
      check_positive("hidden width", width, integer=True)
    if self.name == "cnn" and not self.hidden:
      raise ConfigError("model 'cnn' needs at least one conv width in hidden, got ()")
    check_choice("activation", self.activation, ACTIVATIONS)
