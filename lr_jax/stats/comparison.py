"""How the points of a group compare: ties, P(best) by two-way bootstrap, the not-worse set."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.stats.design import Runs, paired

# The two-way bootstrap of P(best) (`compare`): enough resamples that a share is known to about
# +-0.01, and a fixed seed, so the same sweep always reports the same numbers.
NUM_RESAMPLES = 2000
RESAMPLE_SEED = 0

ALPHA = 0.05
"""Level of the one-sided paired test of `compare`'s not-worse set."""


def resolution(runs: Runs) -> float:
  """How close two means of this design are to be a tie.

  An accuracy is a whole number of rows: two means closer than half a row of one run (of the
  largest fold) differ by no row at all. Otherwise float32 rounding: 1e-6 relative.
  """
  s = np.asarray(runs.scores_SxF, np.float64)
  if runs.proportion and runs.outcomes is not None:
    return 0.5 / (s.size * max(o.shape[1] for o in runs.outcomes))
  finite = s[np.isfinite(s)]
  return 1e-6 * max(1.0, float(np.abs(finite).max())) if finite.size else 0.0


def tied_best(mean_P: np.ndarray, eligible_P: np.ndarray, higher_is_better: bool, tol: float
              ) -> np.ndarray:
  """Indices of the eligible points whose mean ties the best one's (within `tol`)."""
  idx = np.flatnonzero(np.asarray(eligible_P, bool) & np.isfinite(mean_P))
  if idx.size == 0:
    return idx
  sign = 1.0 if higher_is_better else -1.0
  score = sign * np.asarray(mean_P, np.float64)[idx]
  return idx[score >= score.max() - tol]


class Comparison(NamedTuple):
  """How whole-design points compare (`compare`).

  Attributes:
    best: the best point; among points tied at the top, the first (the grid's order puts the
      smaller learning rate first).
    tied: [T] the indices tied at the top (the best among them).
    p_best: [P] P(best): the two-way bootstrap's share of resamples in which each point is
      the best (a tie shares a resample); NaN where nothing varies (one seed and no rows), or
      not computed.
    not_worse: [P] bool, not significantly worse than the best (True at the best and at every
      tied point).
  """

  best: int
  tied: np.ndarray
  p_best: np.ndarray
  not_worse: np.ndarray


def compare(points: Sequence[Runs], higher_is_better: bool, *, alpha: float = ALPHA,
            with_p_best: bool = True, num_resamples: int = NUM_RESAMPLES,
            seed: int = RESAMPLE_SEED) -> Comparison:
  """The best of whole-design points, the ones tied with it, P(best), and the not-worse set.

  Args:
    points: [P] each point's `Runs`, all of one layout (the same seeds, folds and rows).
    higher_is_better: accuracy (True) or loss (False).
    alpha: level of each one-sided paired test (`paired`): a point is not significantly worse
      than the best unless p < alpha. Each point is tested alone, without a correction for
      the number of points, so the set errs toward being small.
    with_p_best: compute P(best) (NaN otherwise: successive halving needs only the tests).
    num_resamples, seed: the bootstrap's resamples and its fixed seed (the same sweep reports
      the same shares).
  """
  num = len(points)
  mean_P = np.array([float(np.mean(p.scores_SxF)) for p in points])
  tol = max(resolution(p) for p in points)
  tied = tied_best(mean_P, np.ones(num, bool), higher_is_better, tol)
  best = int(tied[0])
  keep = np.ones(num, bool)
  for i in range(num):
    if i not in tied:
      d = paired(points[best], points[i]) if higher_is_better else paired(points[i],
                                                                            points[best])
      p = d.p_greater()
      keep[i] = not (p < alpha) if math.isfinite(p) else True
  shares = (_p_best(points, higher_is_better, tol, num_resamples, seed) if with_p_best
            else np.full(num, math.nan))
  return Comparison(best, tied, shares, keep)


def streams_runs(scores_SxP: np.ndarray, folds_S: np.ndarray) -> list[Runs]:
  """[P] `Runs` of points scored per stream (seed, fold), without per-row outcomes.

  `folds_S` says each stream's fold; the streams of one fold are its seeds. Streams that do
  not form whole seeds x folds (a fold with fewer seeds) are laid out one stream per seed, one
  fold: the tests then pair by stream.
  """
  s_SxP = np.asarray(scores_SxP, np.float64)
  folds_S = np.asarray(folds_S)
  folds = np.unique(folds_S)
  per_fold = [np.flatnonzero(folds_S == f) for f in folds]
  if len({len(i) for i in per_fold}) != 1:
    return [Runs(s_SxP[:, [p]]) for p in range(s_SxP.shape[1])]
  order = np.stack(per_fold, axis=1)  # [seeds, folds] stream indices
  return [Runs(s_SxP[order, p]) for p in range(s_SxP.shape[1])]


def _p_best(points: Sequence[Runs], higher_is_better: bool, tol: float, num_resamples: int,
            seed: int) -> np.ndarray:
  """Two-way bootstrap shares of being the best (see `compare`)."""
  num = len(points)
  s_PxSxF = np.stack([np.asarray(p.scores_SxF, np.float64) for p in points])
  _, num_seeds, num_folds = s_PxSxF.shape
  rows = points[0].outcomes is not None and all(p.outcomes is not None for p in points)
  if num_seeds < 2 and not rows and num_folds < 2:
    return np.full(num, math.nan)
  if num == 1 and np.all(np.isfinite(s_PxSxF)) and (not rows or all(
      np.shape(o)[-1] > 0 and np.all(np.isfinite(np.asarray(o, np.float64)))
      for o in points[0].outcomes)):
    return np.ones(1)  # Every resample's mean is finite, and it is the best: no need to draw.
  rng = np.random.default_rng(seed)
  sign = 1.0 if higher_is_better else -1.0
  if not rows:  # The unit: the fold (seeds averaged), or the seed with one fold.
    unit_PxU = s_PxSxF.mean(axis=1) if num_folds > 1 else s_PxSxF[:, :, 0]
    units = unit_PxU.shape[1]
    counts_BxU = rng.multinomial(units, np.full(units, 1.0 / units), size=num_resamples)
    means_BxP = counts_BxU @ (sign * unit_PxU.T) / units
  else:
    # Seeds, and each fold's rows, resampled together for every point: the pairing survives. A
    # row several folds validate is drawn once, for all of them.
    w_BxS = (rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=num_resamples)
             if num_seeds > 1 else np.ones((num_resamples, 1)))
    means_BxP = np.zeros((num_resamples, num))
    ids = points[0].rows
    if ids is not None:  # Rows several folds validate (nested CV): one draw per data set row.
      distinct = np.unique(np.concatenate(ids))
      counts_BxD = rng.multinomial(distinct.size, np.full(distinct.size, 1.0 / distinct.size),
                                   size=num_resamples).astype(np.float64)
    for f in range(num_folds):
      o_PxSxN = np.stack([np.asarray(p.outcomes[f], np.float64) for p in points])
      n = o_PxSxN.shape[2]
      if ids is None:
        u_BxN = rng.multinomial(n, np.full(n, 1.0 / n), size=num_resamples).astype(np.float64)
        total_Bx1 = np.full((num_resamples, 1), float(n))
      else:
        u_BxN = counts_BxD[:, np.searchsorted(distinct, ids[f])]
        total_Bx1 = np.maximum(u_BxN.sum(axis=1, keepdims=True), 1.0)  # a ratio: fold mean
      by_seed_BxPxS = ((u_BxN @ o_PxSxN.reshape(-1, n).T) / total_Bx1).reshape(
          num_resamples, num, -1)
      means_BxP += np.einsum("bps,bs->bp", by_seed_BxPxS, w_BxS) / num_seeds
    means_BxP = sign * means_BxP / num_folds
  top_Bx1 = means_BxP.max(axis=1, keepdims=True)
  tied_BxP = means_BxP >= top_Bx1 - max(tol, 1e-12 * float(np.abs(top_Bx1).max()))
  return (tied_BxP / tied_BxP.sum(axis=1, keepdims=True)).mean(axis=0)
