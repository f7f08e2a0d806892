"""`subset_selection`: P(best) and the not-worse set among a subset of a sweep's points."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lr_jax import stats
from lr_jax.results.aggregates import point_runs, score_column


def subset_selection(runs: Mapping[str, np.ndarray], at_lr: Sequence[np.ndarray],
                   eligible: Sequence[bool], outcomes: Sequence[np.ndarray] | None = None,
                   score: str = "best_epoch", alpha: float | None = None
                   ) -> tuple[list[float], list[bool]]:
  """P(best) and the not-worse set among some of a sweep's points, by `lr_jax.stats.compare`.

  The same statistics as a sweep's aggregates (seeds, folds and validation rows), on a subset
  of a compile group's points: a study cell's learning rates (its other axes fixed), or one
  arm of a fine-tuning sweep (its backbone scale fixed).

  Args:
    runs: the sweep's rows (columns `seed`, `fold` and the score's, e.g.
      `crossfit_val_accuracy`).
    at_lr: [P] boolean masks over the rows: the runs of each point of the subset.
    eligible: [P] may be selected (no run diverged, every run has a score).
    outcomes: per row, its validation rows' outcomes at the scored epoch
      (`SweepResult.outcomes[score]`); None: unknown.
    score: which epoch's accuracy is a run's score (`results.SCORES`).
    alpha: level of each not-worse test (None: `stats.compare`'s); a smaller one corrects
      for a best that was picked among several settings.

  Returns:
    [P] P(best) (0 where not eligible; NaN where nothing varies or the runs do not pair) and
    [P] not significantly worse than the subset's best.
  """
  column = np.asarray(runs[score_column("val_accuracy", score)], np.float64)
  num = len(at_lr)
  p_best, keep = [0.0] * num, [False] * num
  chosen = [i for i in range(num) if eligible[i]]
  if not chosen:
    return p_best, keep
  points = []
  for i in chosen:
    idx = np.flatnonzero(at_lr[i])
    idx = idx[np.lexsort((runs["fold"][idx], runs["seed"][idx]))]
    points.append(point_runs(runs, idx, column[idx], outcomes, True))
  if any(p.scores_SxF.shape != points[0].scores_SxF.shape for p in points):
    best = chosen[int(np.argmax([np.mean(p.scores_SxF) for p in points]))]
    keep[best] = True  # No pairing to test against: the best alone.
    for i in chosen:
      p_best[i] = math.nan
    return p_best, keep
  c = stats.compare(points, True, **({} if alpha is None else {"alpha": alpha}))
  for j, i in enumerate(chosen):
    p_best[i], keep[i] = float(c.p_best[j]), bool(c.not_worse[j])
  return p_best, keep
