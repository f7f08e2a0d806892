"""Statistics of a sweep: intervals, paired comparisons, P(best), selection rules, ties.

Plain numpy and scipy on the host, over small tables. A grid point's runs are laid out by the
design of the experiment (`Runs`): one score per (seed, fold), and, for the task's built-in
score, each validation row's outcome (correct or not; its loss for regression). Three sources
of variation make a point's mean score uncertain, and every number here counts each:

- **seeds**: another seed draws other initial weights, minibatch orders and dropout;
- **validation rows**: the score is a mean over a finite sample of rows: another sample from
  the same source would score differently (a holdout of 360 rows alone makes an accuracy of
  0.98 uncertain by +-0.015);
- **folds**: the seeds of one fold share its training and validation rows, so they are not
  independent replications of the whole design.

The method (`estimate`, `paired`): the variance of the mean score is the seed part -- the
variance of the per-seed mean (over folds) divided by the number of seeds -- plus the row part
-- for each fold, the variance over its validation rows of the row's outcome averaged over
seeds, divided by the fold's rows, summed over folds and divided by folds squared -- with
Satterthwaite's degrees of freedom for the Student-t quantile. Given the models trained, the
rows are independent draws, so the row part is the validation set's sampling error of the
score of *these* models (one pooled over all folds' rows, which k-fold validates once each);
the seed part adds what another seed would change. Both add up to a slight overcount (the
seed x row interaction is in both), which errs wide. Two points are compared on the same
seeds and rows: the same variance of their row-by-row differences, which is far smaller than
either point's own when the two models agree on most rows. P(best) is a two-way bootstrap:
seeds and each fold's rows resampled together for every point. A proportion's rows take
one pseudo-row right and one wrong in their variance (`PSEUDO_ROWS`, after Agresti and Coull),
so a point that gets every row right still has an interval; a row that several folds validate
(nested CV) counts with its covariance; every interval is clipped
to the metric's range. `benchmarks/coverage.py` measures how often the intervals contain the
accuracy on untouched rows (benchmarks/BENCHMARKS.md, "Coverage").

Without per-row outcomes (a user metric that is not a mean over rows, such as AUC, or a
selection by another metric than the task's), the unit of replication is the fold: seeds are
averaged within each fold and the interval and tests run over the fold means (over the seeds
with a single holdout, which then covers seed variation only, and says so in `Estimate.covers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.errors import ConfigError

SELECT_RULES = ("best", "one_se")
"""How a compile group's learning rate is chosen among its eligible points (see `select_index`)."""

DEFAULT_SELECT = "best"

# The two-way bootstrap of P(best) (`compare`): enough resamples that a share is known to about
# +-0.01, and a fixed seed, so the same sweep always reports the same numbers.
NUM_RESAMPLES = 2000
RESAMPLE_SEED = 0

ALPHA = 0.05
"""Level of the one-sided paired test of `compare`'s not-worse set."""


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


# ----- The design: runs laid out by seed and fold, with each validation row's outcome -------


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
  rng = np.random.default_rng(seed)
  sign = 1.0 if higher_is_better else -1.0
  if not rows:  # The unit: the fold (seeds averaged), or the seed with one fold.
    unit_PxU = s_PxSxF.mean(axis=1) if num_folds > 1 else s_PxSxF[:, :, 0]
    units = unit_PxU.shape[1]
    counts_BxU = rng.multinomial(units, np.full(units, 1.0 / units), size=num_resamples)
    means_BxP = counts_BxU @ (sign * unit_PxU.T) / units
  else:
    # Seeds, and each fold's rows, resampled together for every point: the pairing survives.
    w_BxS = (rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=num_resamples)
             if num_seeds > 1 else np.ones((num_resamples, 1)))
    means_BxP = np.zeros((num_resamples, num))
    for f in range(num_folds):
      o_PxSxN = np.stack([np.asarray(p.outcomes[f], np.float64) for p in points])
      n = o_PxSxN.shape[2]
      u_BxN = rng.multinomial(n, np.full(n, 1.0 / n), size=num_resamples).astype(np.float64)
      by_seed_BxPxS = (u_BxN @ o_PxSxN.reshape(-1, n).T).reshape(num_resamples, num, -1) / n
      means_BxP += np.einsum("bps,bs->bp", by_seed_BxPxS, w_BxS) / num_seeds
    means_BxP = sign * means_BxP / num_folds
  top_Bx1 = means_BxP.max(axis=1, keepdims=True)
  tied_BxP = means_BxP >= top_Bx1 - max(tol, 1e-12 * float(np.abs(top_Bx1).max()))
  return (tied_BxP / tied_BxP.sum(axis=1, keepdims=True)).mean(axis=0)
