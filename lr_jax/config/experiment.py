"""`Experiment`: one configuration of a compile group, its four parts and `replace`."""

from __future__ import annotations

import dataclasses

from lr_jax.config.data import DataConfig
from lr_jax.config.fields import check_fields
from lr_jax.config.model import ModelConfig
from lr_jax.config.optim import OptimConfig
from lr_jax.config.train import TrainConfig
from lr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One configuration of a compile group: everything that decides its compiled program, and
  the defaults of the numbers it traces."""

  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  optim: OptimConfig = OptimConfig()
  train: TrainConfig = TrainConfig()

  def __post_init__(self):
    check_fields(self)

  def replace(self, **changes) -> "Experiment":
    """Returns a copy with fields of the sub-configs changed, e.g. `replace(optim__name='sgd')`."""
    parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    grouped: dict[str, dict] = {}
    for key, value in changes.items():
      part, _, field = key.partition("__")
      if part not in parts or not field:
        raise ConfigError(f"unknown field {key!r}; use <part>__<field>, parts: {', '.join(parts)}")
      names = [f.name for f in dataclasses.fields(parts[part])]
      if field not in names:
        raise ConfigError(f"unknown field {key!r}; {part} fields: {', '.join(names)}")
      grouped.setdefault(part, {})[field] = value
    for part, fields in grouped.items():
      parts[part] = dataclasses.replace(parts[part], **fields)
    return Experiment(**parts)
