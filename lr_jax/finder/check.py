"""The check: a real sweep's grid around the suggestions, and where each suggestion lands in it."""

from __future__ import annotations

import math

import numpy as np

from lr_jax.config import check_positive, log_spaced
from lr_jax.errors import ConfigError
from lr_jax.results import SweepResult, mean_ci
from lr_jax.finder.result import FinderResult


def check_grid(result: FinderResult, *, num: int = 9,
               span: float = 30.0) -> tuple[float, ...] | None:
  """Learning rates for a real sweep that checks the suggestions.

  `num` log-spaced learning rates from `span`x below the smallest mean-curve suggestion to
  `span`x above the largest.

  Returns:
    The grid, or None when no rule gave a suggestion (every seed stopped too early).
  """
  check_positive("check_num_lrs", num, integer=True)
  check_positive("check_span", span)
  if span <= 1:
    raise ConfigError(f"check_span must be > 1, got {span!r}")
  found = [s["mean"] for s in result.suggestions.values() if math.isfinite(s["mean"])]
  if not found:
    return None
  return log_spaced(min(found) / span, max(found) * span, num)


def compare_with_sweep(result: FinderResult, sweep: SweepResult) -> list[dict]:
  """Where each mean-curve suggestion lands in a real sweep (its first compile group).

  For each rule: the suggestion, the sweep's best learning rate (`SweepResult.best`, which
  excludes points where a run diverged) and their ratio; the grid learning rate nearest the
  suggestion (in log distance) with its mean validation metric and 95% CI over seeds and
  folds; the same for the best; and the gap nearest - best, paired by (seed, fold) -- both
  start from the same weights and see the same minibatches -- with its 95% CI.

  Returns:
    One dict per rule of `SUGGESTIONS`.
  """
  rows = sweep.rows
  in_group = rows["group"] == 0
  best = sweep.best[0]
  metric = "best_val_accuracy" if best.get("higher_is_better", True) else "best_val_loss"
  lrs = np.unique(rows["learning_rate"][in_group])

  def scores(lr):
    sel = in_group & np.isclose(rows["learning_rate"], lr, rtol=1e-6)
    order = np.lexsort((rows["fold"][sel], rows["seed"][sel]))
    # A diverged run has no score: its pre-divergence best would flatter its learning rate.
    score = np.where(rows["diverged"][sel], np.nan, rows[metric][sel])
    return score[order], int(rows["diverged"][sel].sum())

  out = []
  best_lr = float(best.get("learning_rate", math.nan))
  for rule, suggestion in result.suggestions.items():
    lr = suggestion["mean"]
    entry = {"rule": rule, "suggestion": lr, "sweep_best_lr": best_lr,
             "metric": metric.removeprefix("best_"), "ratio_to_best": lr / best_lr}
    if math.isfinite(lr) and math.isfinite(best_lr):
      nearest = float(lrs[np.argmin(np.abs(np.log(lrs) - math.log(lr)))])
      near_v, near_div = scores(nearest)
      best_v, _ = scores(best_lr)
      entry.update(nearest_lr=nearest, nearest_diverged=near_div,
                   grid_steps_from_best=int(np.flatnonzero(lrs == nearest)[0]
                                            - np.flatnonzero(np.isclose(lrs, best_lr))[0]))
      entry.update(zip(("nearest_mean", "nearest_std", "nearest_ci95"), mean_ci(near_v)))
      entry.update(zip(("best_mean", "best_std", "best_ci95"), mean_ci(best_v)))
      entry.update(zip(("gap_mean", "gap_std", "gap_ci95"), mean_ci(near_v - best_v)))
    out.append(entry)
  return out
