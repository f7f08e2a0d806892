"""The suggestion rules: a learning rate read off a smoothed loss curve, per seed and the mean."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# fastai's `lr_find` drops the first tenth of the steps (the moving average is still
# warming up and the learning rate does nothing yet) and the last five before the stop.
SKIP_START_FRACTION = 0.1
SKIP_END = 5


def _window(smoothed_K: np.ndarray, skip_start: int, skip_end: int) -> np.ndarray:
  """Indices of the kept steps a rule reads: the first stretch of finite values, trimmed."""
  finite = np.isfinite(smoothed_K)
  stop = int(np.argmin(finite)) if not finite.all() else len(smoothed_K)
  return np.arange(skip_start, max(skip_start, stop - skip_end))


def suggest_steepest(lrs_K: np.ndarray, smoothed_K: np.ndarray, *, skip_start: int,
                     skip_end: int = SKIP_END) -> float:
  """The LR where the smoothed loss falls fastest against log LR; NaN with under 3 points.

  Central differences (`np.gradient`, as fastai v1) of the smoothed loss over log LR.
  """
  w = _window(smoothed_K, skip_start, skip_end)
  if len(w) < 3:
    return math.nan
  slope = np.gradient(smoothed_K[w], np.log(lrs_K[w]))
  return float(lrs_K[w][np.argmin(slope)])


def suggest_min_div_10(lrs_K: np.ndarray, smoothed_K: np.ndarray, *, skip_start: int,
                       skip_end: int = SKIP_END) -> float:
  """A tenth of the LR at the minimum smoothed loss (fastai's `minimum`); NaN with no point."""
  w = _window(smoothed_K, skip_start, skip_end)
  if len(w) < 1:
    return math.nan
  return float(lrs_K[w][np.argmin(smoothed_K[w])] / 10.0)


# name -> rule(lrs_K, smoothed_K, skip_start=, skip_end=) -> learning rate.
SUGGESTIONS: dict[str, Callable[..., float]] = {
    "steepest": suggest_steepest, "min_div_10": suggest_min_div_10}


def suggest(lrs_K: np.ndarray, smoothed_SxK: np.ndarray) -> dict[str, dict]:
  """Every rule of `SUGGESTIONS` on each seed's curve and on the mean curve.

  Args:
    lrs_K: [K] learning rates.
    smoothed_SxK: [S, K] smoothed losses, NaN after each seed stopped.

  Returns:
    rule -> {"mean": LR on the mean curve (NaN from the first seed's stop on),
    "per_seed": [S] LRs}.
  """
  skip_start = int(SKIP_START_FRACTION * len(lrs_K))
  mean_K = smoothed_SxK.mean(axis=0)
  return {name: {"mean": rule(lrs_K, mean_K, skip_start=skip_start),
                 "per_seed": [rule(lrs_K, s, skip_start=skip_start) for s in smoothed_SxK]}
          for name, rule in SUGGESTIONS.items()}
