"""A point's runs by the design of the experiment (`Runs`), its interval (`estimate`), and the
one paired comparison of two points (`paired`): seeds, folds and validation rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.stats.basics import t_quantile_975


class Runs(NamedTuple):
  """One grid point's runs, laid out by the design of the experiment.

  Attributes:
    scores_SxF: [S seeds, F folds] each run's score; NaN where a run has none (diverged).
    outcomes: per fold, [S, n_f] each validation row's outcome for each seed, whose mean over
      the rows is the run's score (correct 0/1 for accuracy; the per-row loss for a loss), or
      None where the score is not such a mean (a user metric) or the outcomes are unknown.
    proportion: the outcomes are 0/1 (accuracy): the score lies in [0, 1], and the row
      variance adds a pseudo-row right and one wrong (`PSEUDO_ROWS`).
    rows: per fold, [n_f] which data set row each outcome is (`Splits.val_idx`), or None:
      every fold's rows distinct. Nested cross-validation validates a row in several outer
      folds' inner folds; its outcomes there are not independent draws, and the row part
      counts their covariance.
  """

  scores_SxF: np.ndarray
  outcomes: tuple[np.ndarray, ...] | None = None
  proportion: bool = False
  rows: tuple[np.ndarray, ...] | None = None

  @property
  def complete(self) -> bool:
    """Every run has a score: the design is whole, and the method of the module applies."""
    return bool(np.isfinite(self.scores_SxF).all())

  @property
  def num_rows(self) -> int:
    """Validation rows the outcomes cover (0 without outcomes)."""
    return 0 if self.outcomes is None else int(sum(o.shape[1] for o in self.outcomes))

  def minus(self, other: "Runs") -> "Runs":
    """The run-by-run and row-by-row differences `self - other` (the same seeds and rows)."""
    outcomes = None
    if self.outcomes is not None and other.outcomes is not None:
      outcomes = tuple(a.astype(np.float64) - b.astype(np.float64)
                       for a, b in zip(self.outcomes, other.outcomes))
    return Runs(np.asarray(self.scores_SxF, np.float64) - np.asarray(other.scores_SxF,
                                                                      np.float64), outcomes,
                rows=self.rows)


class Estimate(NamedTuple):
  """A point's mean score and its 95% interval, with what variation the interval covers.

  Attributes:
    n: runs with a score.
    mean: their mean score.
    std: the sample standard deviation of the run scores (NaN for n < 2).
    se: the standard error of the mean, by the design (`Runs`); NaN when it cannot be known.
    ci95: the 95% Student-t half-width, se x t(df); NaN when `se` is.
    low, high: the interval, `mean -+ ci95` clipped to the metric's range.
    df: Satterthwaite's degrees of freedom of `se`.
    n_rows: validation rows counted in `se` (0 where the rows are not a source).
    covers: what variation the interval covers, in words ("" without an interval).
  """

  n: int
  mean: float
  std: float
  se: float
  ci95: float
  low: float
  high: float
  df: float
  n_rows: int
  covers: str


_NAN_ESTIMATE = dict(se=math.nan, ci95=math.nan, low=math.nan, high=math.nan, df=math.nan,
                     n_rows=0, covers="")


PSEUDO_ROWS = (1.0, 0.0)
"""Added to 0/1 row outcomes for their variance only (Agresti and Coull's idea; one row right
and one wrong: "plus two"), so a score of 1.0 still has an interval, and a few wrong rows among
many right ones are not taken at face value. Chosen by coverage (benchmarks/coverage.py): with
two right and two wrong ("plus four") the intervals of 30 validation rows covered 100%."""


def _with_pseudo(m_N: np.ndarray, proportion: bool) -> np.ndarray:
  m_N = np.asarray(m_N, np.float64)
  return np.concatenate([m_N, PSEUDO_ROWS]) if proportion else m_N


def row_variance(m_N: np.ndarray, proportion: bool) -> tuple[float, float]:
  """(variance of the mean of the row values `m_N`, its degrees of freedom): the part of a
  score's variance that the finite rows make, given the models (rows are independent draws).

  0/1 outcomes take `PSEUDO_ROWS` for the variance. NaN for fewer than two rows.
  """
  n = np.size(m_N)
  if n < 2:
    return math.nan, math.nan
  m_N = _with_pseudo(m_N, proportion)
  return float(m_N.var(ddof=1) / m_N.size), float(n - 1)


def _shared_rows_covariance(runs: "Runs") -> float:
  """The covariance the row part adds where folds validate the same rows (nested CV).

  For folds f, g sharing rows, 2 x sum over the shared rows of the covariance of the two
  folds' seed-averaged outcomes, each weighted as in the mean score (1 / (F n_f)).
  """
  if runs.rows is None:
    return 0.0
  num_folds = len(runs.outcomes)
  means = [np.asarray(o, np.float64).mean(axis=0) for o in runs.outcomes]
  extra = 0.0
  for f in range(num_folds):
    for g in range(f + 1, num_folds):
      shared, i_f, i_g = np.intersect1d(runs.rows[f], runs.rows[g], return_indices=True)
      if shared.size < 2:
        continue
      cov = float(np.cov(means[f][i_f], means[g][i_g], ddof=1)[0, 1])
      n_f, n_g = means[f].size, means[g].size
      extra += 2 * shared.size * cov / (num_folds ** 2 * n_f * n_g)
  return extra


def seed_variance(v_S: np.ndarray) -> tuple[float, float]:
  """(variance of the mean of per-seed values `v_S`, df); (0, inf) for one seed: unknown,
  and left out (an `Estimate.covers` says so)."""
  v_S = np.asarray(v_S, np.float64)
  if v_S.size < 2:
    return 0.0, math.inf
  return float(v_S.var(ddof=1) / v_S.size), float(v_S.size - 1)


def combine(parts: Sequence[tuple[float, float]]) -> tuple[float, float]:
  """The variance and Satterthwaite degrees of freedom of a sum of independent parts."""
  total = float(sum(v for v, _ in parts))
  pieces = sum(v ** 2 / d for v, d in parts if v > 0)
  return total, (total ** 2 / pieces if pieces > 0 else math.inf)


def half_width(parts: Sequence[tuple[float, float]]) -> float:
  """The 95% Student-t half-width of a sum of independent parts (variance, df); NaN if any
  part is unknown, 0 if every part is 0."""
  var, df = combine(parts)
  if not math.isfinite(var):
    return math.nan
  return t_quantile_975(df) * math.sqrt(var) if var > 0 else 0.0


def _variance(runs: Runs) -> tuple[float, float, int, str]:
  """(variance of the mean score, its degrees of freedom, rows counted, what it covers).

  NaN variance where the design cannot say (one run and no rows).
  """
  s_SxF = np.asarray(runs.scores_SxF, np.float64)
  num_seeds, num_folds = s_SxF.shape
  if runs.outcomes is not None:
    parts = [seed_variance(s_SxF.mean(axis=1))]
    n_rows = 0
    for o_SxN in runs.outcomes:
      var, df = row_variance(np.asarray(o_SxN, np.float64).mean(axis=0), runs.proportion)
      parts.append((var / num_folds ** 2, df))
      n_rows += o_SxN.shape[1]
    total, df = combine(parts)
    total = max(total + _shared_rows_covariance(runs), 0.0)
    if runs.rows is not None:  # A row validated in several folds counts once.
      n_rows = int(np.unique(np.concatenate(runs.rows)).size)
    folds = f" of {num_folds} folds" if num_folds > 1 else ""
    covers = (f"{num_seeds} seeds and {n_rows} validation rows{folds}" if num_seeds > 1 else
              f"{n_rows} validation rows{folds} only (one seed: seed variation unknown)")
    return total, df, n_rows, covers
  if num_folds > 1:  # The fold is the unit: its seeds share its rows.
    fold_F = s_SxF.mean(axis=0)
    return (fold_F.var(ddof=1) / num_folds, num_folds - 1.0, 0,
            f"{num_folds} folds (seeds averaged within each: the fold is the unit)")
  if num_seeds > 1:
    return (s_SxF[:, 0].var(ddof=1) / num_seeds, num_seeds - 1.0, 0,
            f"{num_seeds} seeds only (not the validation rows: no per-row outcomes for this "
            "score)")
  return math.nan, math.nan, 0, ""


def estimate(runs: Runs, bounds: tuple[float, float] = (-math.inf, math.inf)) -> Estimate:
  """A point's mean score and 95% interval by the design (see the module's docstring).

  A point with a run without a score (it diverged) is not a whole design: its mean and a
  Student-t interval over the surviving runs are reported as they are (it cannot be selected).

  Args:
    runs: the point's runs.
    bounds: the metric's range; the interval is clipped to it ([0, 1] for accuracy).
  """
  s = np.asarray(runs.scores_SxF, np.float64)
  finite = s[np.isfinite(s)]
  n = int(finite.size)
  if n == 0:
    return Estimate(0, math.nan, math.nan, **_NAN_ESTIMATE)
  mean = float(finite.mean())
  std = float(finite.std(ddof=1)) if n > 1 else math.nan
  if runs.complete:
    var, df, n_rows, covers = _variance(runs)
  elif n > 1:
    var, df, n_rows, covers = (std ** 2 / n, n - 1.0, 0,
                               f"the {n} surviving runs only, as if independent")
  else:
    var = math.nan
  if not math.isfinite(var):
    return Estimate(n, mean, std, **_NAN_ESTIMATE)
  se = math.sqrt(var)
  half = t_quantile_975(df) * se if se > 0 else 0.0
  return Estimate(n, mean, std, se, half, max(bounds[0], mean - half), min(bounds[1], mean + half),
                  df, n_rows, covers)


class Difference(NamedTuple):
  """A paired comparison of two points: mean of `a - b`, its SE and Satterthwaite df."""

  mean: float
  se: float
  df: float

  def p_greater(self) -> float:
    """One-sided p-value of H0 "a - b <= 0" (small: `a` is better); NaN when it cannot run."""
    if not math.isfinite(self.se) or not math.isfinite(self.mean):
      return math.nan
    if self.se == 0:  # Every seed and row agree: decided by the sign.
      return 0.0 if self.mean > 0 else 1.0
    import scipy.stats
    return float(scipy.stats.t.sf(self.mean / self.se, self.df))


def paired(a: Runs, b: Runs) -> Difference:
  """`a - b` by seed, fold and row: the one paired comparison of lr_jax.

  The sweep's not-worse set, its P(best)'s pairing, halving's pruning rule, nested CV and the
  study all compare two points through this. Both must be whole designs of the same layout.
  """
  d = a.minus(b)
  var, df, _, _ = _variance(d)
  return Difference(float(np.mean(d.scores_SxF)), math.sqrt(var) if math.isfinite(var)
                    else math.nan, df)
