"""`ModelConfig`: a built-in model."""

from __future__ import annotations

import dataclasses
import re

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
    head: with init_from, the layers each seed initializes anew and that learn at the full
      rate: "auto" (the last layer, where its shapes differ: another number of classes),
      "last", "none", or a regular expression of layer names (e.g. "Dense_[12]").
  """

  name: str = "mlp"
  hidden: tuple[int, ...] = (128,)
  activation: str = "relu"
  dropout: float = 0.0
  init_from: str | None = None
  head: str = "auto"

  def __post_init__(self):
    check_fields(self)
    if self.head not in ("auto", "last", "none"):
      try:
        re.compile(self.head)
      except re.error as e:
        raise ConfigError(f"head {self.head!r} is not a regular expression ({e}); valid choices: "
                          "auto, last, none, or a pattern of layer names (e.g. Dense_1)") from None
    for width in self.hidden:
      check_positive("hidden width", width, integer=True)
    if self.name == "cnn" and not self.hidden:
      raise ConfigError("model 'cnn' needs at least one conv width in hidden, got ()")
    check_choice("activation", self.activation, ACTIVATIONS)
