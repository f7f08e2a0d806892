"""A trained model on raw features: standardization, an ensemble of members, class labels.

What `SweepResult.predict` applies and what `lr_jax.export` refits, saves and loads.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.models import Model, apply_model, build_model


def num_outputs(task: str, num_classes: int) -> int:
  return num_classes if task == "classification" else 1


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
  """A trained model on raw features: standardization, an ensemble of members, class labels.

  Attributes:
    model: the pure model (`lr_jax.Model`) the parameters belong to.
    params: one parameter pytree per ensemble member (one per training seed).
    mean: [D] float32 feature means the model standardizes with.
    std: [D] float32 feature stds (0 replaced by 1).
    task: "classification" or "regression".
    class_names: class id c's label as in the data, `class_names[c]`; () for regression.
    feature_names: the D feature names (a .csv file's columns), or ().
    feature_shape: one example's shape before flattening (e.g. (8, 8, 1)).
    card: what `model.json` holds: configuration, selection, standardization, scores.
  """

  model: Model
  params: tuple
  mean: np.ndarray
  std: np.ndarray
  task: str
  class_names: tuple = ()
  feature_names: tuple = ()
  feature_shape: tuple = ()
  card: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def build(cls, group, params: Sequence, mean: np.ndarray, std: np.ndarray,
            card: dict | None = None) -> "TrainedModel":
    """A model of a planned group (`engine.Group`) with these members and statistics."""
    ds = group.dataset
    return cls(model=group_model(group), params=tuple(params),
               mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32),
               task=ds.task, class_names=tuple(ds.class_names),
               feature_names=tuple(ds.feature_names), feature_shape=tuple(ds.feature_shape),
               card=card or {})

  @property
  def estimate(self) -> dict | None:
    """The validation and test scores of the selection (`model.json`'s "estimate")."""
    return self.card.get("estimate")

  def _features(self, x) -> np.ndarray:
    x = np.asarray(x)
    width = int(self.mean.shape[0])
    if x.ndim == 1 and x.shape[0] == width:
      x = x[None, :]
    if x.ndim < 2 or math.prod(x.shape[1:]) != width:
      raise ConfigError(f"the model takes examples of {width} features (shape "
                        f"{tuple(self.feature_shape)}), got an array of shape {x.shape}")
    if x.dtype.kind not in "biuf":
      raise ConfigError(f"features must be numbers, got dtype {x.dtype}")
    with np.errstate(over="ignore"):  # A float64 beyond float32's range: inf, refused below.
      x = x.reshape(len(x), width).astype(np.float32)
    bad = non_finite(x)
    if bad is not None:
      count, i, j = bad
      raise ConfigError(f"{count} feature value(s) are NaN or inf (or beyond float32's range); "
                        f"the first is x[{i}, {j}] = {x[i, j]}")
    return x

  def outputs(self, x) -> np.ndarray:
    """[N, K] ensemble outputs on raw features: probabilities, or [N, 1] regression values."""
    forward = _forward(self.model, self.task == "classification")
    # A user model's own numbers at their chosen values (the model card's), as in training.
    chosen = (self.card.get("selection") or {}).get("hyperparameters") or {}
    numbers = {k: np.float32(chosen[k]) for k in (self.model.hparams or {}) if k in chosen}
    return np.asarray(forward(self.params, self.mean, self.std, self._features(x), numbers))

  def predict_proba(self, x) -> np.ndarray:
    """[N, C] class probabilities on raw features `x` ([N, D] or [N, *feature_shape])."""
    if self.task != "classification":
      raise ConfigError("predict_proba applies to classification; this model is regression, "
                        "use predict")
    return self.outputs(x)

  def predict(self, x) -> np.ndarray:
    """[N] predictions on raw features: class labels as in the data, or regression values."""
    out = self.outputs(x)
    if self.task != "classification":
      return out[:, 0]
    return np.asarray(self.class_names)[np.argmax(out, axis=-1)]


def non_finite(x_NxD: np.ndarray) -> tuple[int, int, int] | None:
  """(how many, row, column) of the first NaN or inf of `x_NxD` (0-based), or None."""
  bad = ~np.isfinite(x_NxD)
  if not bad.any():
    return None
  i, j = np.argwhere(bad)[0]
  return int(bad.sum()), int(i), int(j)


@functools.lru_cache(maxsize=32)
def _forward(model: Model, classification: bool):
  """`(params, mean_D, std_D, x_NxD) -> [N, K]` ensemble outputs, jitted once per model."""

  def forward(params, mean_D, std_D, x_NxD, numbers):
    x_NxD = (x_NxD - mean_D[None, :]) / std_D[None, :]  # As the trainer standardizes.
    outs = [apply_model(model, p, x_NxD, None, False, numbers) for p in params]
    if classification:
      outs = [jax.nn.softmax(o, axis=-1) for o in outs]
    return jnp.mean(jnp.stack(outs), axis=0)

  return jax.jit(forward)


# One Model object per configuration, so that `_forward` compiles once for every variant of it.
built_model = functools.lru_cache(maxsize=32)(build_model)


def group_model(group) -> Model:
  """The model of a planned group: the user's, or the built-in one it names."""
  if group.model is not None:
    return group.model
  ds = group.dataset
  return built_model(group.experiment.model, num_outputs(ds.task, ds.num_classes),
                      tuple(ds.feature_shape))
