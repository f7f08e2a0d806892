"""Statistics of a sweep: Student-t intervals, paired bootstrap P(best), selection rules.

Plain numpy and scipy on the host, over small tables. A grid point's scores are one value per
*stream* (seed, fold); streams pair the points of a compile group: every point of a stream starts
from the same weights, sees the same minibatches and is validated on the same fold, so a
difference between two points is best judged stream by stream.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.errors import ConfigError

SELECT_RULES = ("best", "one_se")
"""How a compile group's learning rate is chosen among its eligible points (see `select_index`)."""

DEFAULT_SELECT = "best"

# The paired bootstrap of `p_best`: enough resamples that a share is known to about +-0.01, and a
# fixed seed, so the same sweep always reports the same numbers.
NUM_RESAMPLES = 2000
RESAMPLE_SEED = 0

ALPHA = 0.05
"""Level of the one-sided paired t-test of `not_worse`."""


def t_quantile(q: float, df: float) -> float:
  """The `q` quantile of Student's t distribution with `df` degrees of freedom (scipy.stats.t)."""
  import scipy.stats  # Here, not at the top: it takes seconds to import, and errors must not wait.
  return float(scipy.stats.t.ppf(q, df))


def t_quantile_975(df: float) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom (a 95% interval's factor)."""
  return t_quantile(0.975, df)


class Summary(NamedTuple):
  """Mean and spread of the finite entries of a sample.

  Attributes:
    n: how many finite values.
    mean: their mean (NaN when n = 0).
    std: sample standard deviation, ddof = 1 (NaN when n < 2: one value says nothing of spread).
    se: standard error of the mean, std / sqrt(n) (NaN when n < 2).
    ci95: half-width of the two-sided 95% Student-t interval of the mean (NaN when n < 2).
  """

  n: int
  mean: float
  std: float
  se: float
  ci95: float


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
  """`Summary` of the finite entries of `values` (NaN and inf are not values)."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  n = int(v.size)
  if n == 0:
    return Summary(0, math.nan, math.nan, math.nan, math.nan)
  if n == 1:
    return Summary(1, float(v[0]), math.nan, math.nan, math.nan)
  std = float(v.std(ddof=1))
  se = std / math.sqrt(n)
  return Summary(n, float(v.mean()), std, se, t_quantile_975(n - 1) * se)


def check_select(select: str) -> str:
  """`select` if it names a rule of `SELECT_RULES`; else a `ConfigError` listing them."""
  if select not in SELECT_RULES:
    raise ConfigError(f"select must be one of {', '.join(SELECT_RULES)}, got {select!r}")
  return select


def best_index(mean_P: np.ndarray, eligible_P: np.ndarray, higher_is_better: bool) -> int | None:
  """Index of the eligible point with the best mean (the first on a tie); None if none is."""
  idx = np.flatnonzero(np.asarray(eligible_P, bool) & np.isfinite(mean_P))
  if idx.size == 0:
    return None
  sign = 1.0 if higher_is_better else -1.0
  return int(idx[np.argmax(sign * np.asarray(mean_P, np.float64)[idx])])


def select_index(select: str, lr_P: np.ndarray, mean_P: np.ndarray, se_P: np.ndarray,
                 eligible_P: np.ndarray, higher_is_better: bool) -> int | None:
  """The grid point a selection rule chooses among the eligible ones.

  Rules:
    best: the highest mean (lowest for a loss).
    one_se: the largest learning rate whose mean is within one standard error of the best
      mean (the best point's SE) -- the "one standard error rule" of Breiman, Friedman, Olshen
      and Stone, *Classification and Regression Trees* (1984), as in Hastie, Tibshirani and
      Friedman, *The Elements of Statistical Learning* (2009), §7.10, and glmnet's
      `lambda.1se`. Among points of that learning rate (other hyperparameters differing), the
      best mean. With n < 2 at the best point its SE is unknown and the rule picks the best.

  The default is `best` (as scikit-learn's `GridSearchCV`): its score is what the table reports,
  and the uncertainty is shown beside it (P(best), the points not significantly worse) rather
  than traded for a different point. The one-SE rule's premise -- prefer the simpler model when
  the data cannot tell them apart -- has no exact analogue for a learning rate: the larger one
  trains faster and often generalizes as well, but it sits nearer the divergence edge, and with
  the 3-5 runs per point of a small-data sweep the SE it leans on is itself estimated from 3-5
  values. Use `one_se` on a flat, noisy curve where the best is a one-point spike.

  Args:
    select: one of `SELECT_RULES`.
    lr_P: [P] learning rates.
    mean_P: [P] mean scores.
    se_P: [P] standard errors of the means (NaN where n < 2).
    eligible_P: [P] bool: may be chosen (no run diverged, every run has a score).
    higher_is_better: accuracy (True) or loss (False).

  Returns:
    The chosen index, or None if no point is eligible.
  """
  check_select(select)
  best = best_index(mean_P, eligible_P, higher_is_better)
  if best is None or select == "best":
    return best
  sign = 1.0 if higher_is_better else -1.0
  score_P = sign * np.asarray(mean_P, np.float64)
  se = float(se_P[best]) if math.isfinite(se_P[best]) else 0.0
  within = np.asarray(eligible_P, bool) & np.isfinite(score_P) & (score_P >= score_P[best] - se)
  idx = np.flatnonzero(within)
  lr_P = np.asarray(lr_P, np.float64)
  top = idx[lr_P[idx] == lr_P[idx].max()]
  return int(top[np.argmax(score_P[top])])


def p_best(scores_SxP: np.ndarray, higher_is_better: bool, *, num_resamples: int = NUM_RESAMPLES,
           seed: int = RESAMPLE_SEED) -> np.ndarray:
  """Share of paired bootstrap resamples in which each point has the best mean score.

  A resample draws S streams with replacement and keeps each drawn stream's runs together
  across points, so the pairing (same weights, minibatches and fold) survives resampling and
  a point that beats another stream by stream wins every resample. A tie at the top shares the
  resample equally, so the shares sum to 1. With few streams the shares are coarse: S = 3
  streams have only 10 distinct resamples, and a point that wins every stream gets 1.0 however
  small its lead.

  Args:
    scores_SxP: [S streams, P points] finite scores of the eligible points.
    higher_is_better: accuracy (True) or loss (False).
    num_resamples: bootstrap resamples B.
    seed: seed of the resampling (fixed: the same sweep reports the same shares).

  Returns:
    [P] shares in [0, 1] summing to 1 (empty if P = 0).
  """
  s_SxP = np.asarray(scores_SxP, np.float64)
  num_streams, num_points = s_SxP.shape
  if num_points == 0:
    return np.zeros(0)
  if num_streams == 0 or not np.isfinite(s_SxP).all():
    raise ValueError(f"p_best needs finite scores for at least one stream, got {s_SxP.shape}")
  sign = 1.0 if higher_is_better else -1.0
  rng = np.random.default_rng(seed)
  # How often each stream is drawn in each resample: a resample's means are one matmul.
  counts_BxS = rng.multinomial(num_streams, np.full(num_streams, 1.0 / num_streams),
                               size=num_resamples).astype(np.float64)
  means_BxP = counts_BxS @ (sign * s_SxP) / num_streams
  top_Bx1 = means_BxP.max(axis=1, keepdims=True)
  # Equal columns may round differently in the matmul; within 1e-12 relative they tie.
  tied_BxP = means_BxP >= top_Bx1 - 1e-12 * np.maximum(1.0, np.abs(top_Bx1))
  return (tied_BxP / tied_BxP.sum(axis=1, keepdims=True)).mean(axis=0)


def not_worse(scores_SxP: np.ndarray, best: int, higher_is_better: bool,
              alpha: float = ALPHA) -> np.ndarray:
  """Which points are not significantly worse than point `best`, paired by stream.

  For each other point, a one-sided paired t-test (`scipy.stats.ttest_rel`, alternative
  "greater") of H0 "the best point's mean score is no better" on the S stream-wise
  differences; the point is excluded when p < `alpha`. Each point is tested on its own,
  without a correction for the number of points, so the set errs toward being small. When a
  point's differences are all equal the test is degenerate and decided by their sign (all
  better: excluded; all zero: kept). With fewer than 2 streams nothing can be excluded.

  Args:
    scores_SxP: [S streams, P points] finite scores of the eligible points.
    best: index of the best point.
    higher_is_better: accuracy (True) or loss (False).
    alpha: level of each test.

  Returns:
    [P] bool, True at `best` and at every point not significantly worse.
  """
  s_SxP = np.asarray(scores_SxP, np.float64)
  num_streams, num_points = s_SxP.shape
  keep_P = np.ones(num_points, bool)
  if num_streams < 2:
    return keep_P
  sign = 1.0 if higher_is_better else -1.0
  ours_SxP = sign * s_SxP
  diff_SxP = ours_SxP[:, [best]] - ours_SxP  # > 0 where the best is better.
  constant_P = np.ptp(diff_SxP, axis=0) == 0
  keep_P[constant_P] = diff_SxP[0, constant_P] <= 0
  test = np.flatnonzero(~constant_P)
  if test.size:
    import scipy.stats
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # Nearly equal runs: precision notes.
      p = scipy.stats.ttest_rel(np.broadcast_to(ours_SxP[:, [best]], (num_streams, test.size)),
                                ours_SxP[:, test], axis=0, alternative="greater").pvalue
    keep_P[test] = ~(np.asarray(p) < alpha)
  keep_P[best] = True
  return keep_P
