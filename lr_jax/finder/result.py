"""`FinderResult`: the curves, the suggestions, the settings and timings of a range test."""

from __future__ import annotations

import dataclasses

import numpy as np

from lr_jax.io import jsonable


@dataclasses.dataclass
class FinderResult:
  """The outcome of a range test.

  Attributes:
    lrs: [K] learning rate of each step.
    losses: [S, K] raw minibatch losses, NaN after a seed stopped.
    smoothed: [S, K] smoothed losses, NaN from the step a seed stopped (diverged) on.
    seeds: [S] the seeds.
    suggestions: rule -> {"mean": LR on the mean curve, "per_seed": [S] LRs}.
    config: JSON-ready experiment and finder settings.
    timings: `compile_run_s`, the seconds of the one compiled call.
  """

  lrs: np.ndarray
  losses: np.ndarray
  smoothed: np.ndarray
  seeds: tuple[int, ...]
  suggestions: dict[str, dict]
  config: dict
  timings: dict

  @property
  def mean_smoothed(self) -> np.ndarray:
    """[K] the mean smoothed loss over seeds, NaN from the first seed's stop on."""
    return self.smoothed.mean(axis=0)

  @property
  def steps_kept(self) -> np.ndarray:
    """[S] int: steps before each seed stopped (K if it never did)."""
    return np.isfinite(self.smoothed).sum(axis=1)

  def to_dict(self) -> dict:
    """JSON-ready: settings, suggestions, and the curves (NaN as null)."""
    return jsonable({
        "config": self.config, "seeds": list(self.seeds), "suggestions": self.suggestions,
        "steps_kept": self.steps_kept.tolist(), "timings": self.timings,
        "lrs": self.lrs.tolist(), "losses": self.losses.tolist(),
        "smoothed": self.smoothed.tolist()})


def _model_name(config: dict) -> str:
  """"mlp (128,)", "linear", "user": the widths only where the model has them."""
  name = config["model"]
  hidden = tuple(config["experiment"]["model"]["hidden"])
  return f"{name} {hidden}" if name in ("mlp", "cnn") else name
