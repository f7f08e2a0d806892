"""Statistics of a sweep: t quantiles, summaries, selection rules, P(best), the not-worse set."""

import math

import numpy as np
import pytest
import scipy.stats

from lr_jax import stats
from lr_jax.errors import ConfigError


@pytest.mark.parametrize("df", [1, 5, 30, 31, 100])
def test_t_quantile_is_scipys(df):
  assert stats.t_quantile_975(df) == pytest.approx(scipy.stats.t.ppf(0.975, df), rel=1e-12)


def test_t_quantile_beyond_30_degrees_of_freedom_is_not_the_normal_one():
  # The old table jumped to 1.96 past df = 30: intervals ~4% too narrow at df = 31.
  assert stats.t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)
  assert stats.t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)


def test_summary_by_hand():
  s = stats.summarize([0.90, 0.92, 0.97, math.nan, math.inf])
  std = math.sqrt((0.03 ** 2 + 0.01 ** 2 + 0.04 ** 2) / 2)
  assert s.n == 3 and s.mean == pytest.approx(0.93) and s.std == pytest.approx(std)
  assert s.se == pytest.approx(std / math.sqrt(3))
  assert s.ci95 == pytest.approx(4.302653 * std / math.sqrt(3), rel=1e-6)


def test_one_value_has_no_spread_and_no_interval():
  s = stats.summarize([0.5, math.nan])
  assert (s.n, s.mean) == (1, 0.5)
  assert math.isnan(s.std) and math.isnan(s.se) and math.isnan(s.ci95)
  assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)


def test_select_best_and_one_se_on_a_hand_made_table():
  lr = np.array([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
  mean = np.array([0.80, 0.95, 0.96, 0.945, 0.90])
  se = np.array([0.01, 0.01, 0.02, 0.01, 0.01])
  eligible = np.ones(5, bool)
  assert stats.select_index("best", lr, mean, se, eligible, True) == 2
  # Within one SE (0.02) of 0.96: 0.95 at 1e-3 and 0.945 at 1e-1; the largest LR is 1e-1.
  assert stats.select_index("one_se", lr, mean, se, eligible, True) == 3
  # A loss: lower is better; within 0.02 of 0.5 are 0.51 (1e-3) and 0.515 (1e-2), not 0.6.
  loss = np.array([0.7, 0.51, 0.5, 0.515, 0.6])
  assert stats.select_index("best", lr, loss, se, eligible, False) == 2
  assert stats.select_index("one_se", lr, loss, se, eligible, False) == 3
  # An ineligible point is never chosen, by either rule.
  eligible[3] = False
  assert stats.select_index("one_se", lr, mean, se, eligible, True) == 2
  assert stats.select_index("best", lr, mean, se, np.zeros(5, bool), True) is None


def test_one_se_with_one_run_at_the_best_falls_back_to_the_best():
  lr, mean = np.array([1e-3, 1e-2]), np.array([0.9, 0.89])
  assert stats.select_index("one_se", lr, mean, np.array([math.nan] * 2), np.ones(2, bool),
                            True) == 0


def test_unknown_rule_is_one_line():
  with pytest.raises(ConfigError, match=r"^select must be one of best, one_se, got 'median'$"):
    stats.check_select("median")


def _compare(scores_SxP, higher_is_better):
  """`stats.compare` of points scored per stream, each stream a fold of its own (no rows)."""
  scores_SxP = np.asarray(scores_SxP, np.float64)
  return stats.compare(stats.streams_runs(scores_SxP, np.arange(scores_SxP.shape[0])),
                       higher_is_better)


def _p_best(scores_SxP, higher_is_better):
  return _compare(scores_SxP, higher_is_better).p_best


def _not_worse(scores_SxP, higher_is_better):
  return _compare(scores_SxP, higher_is_better).not_worse


def test_p_best_sums_to_one_and_is_one_where_a_point_dominates_every_stream():
  rng = np.random.default_rng(1)
  base = rng.uniform(0.8, 0.9, size=(6, 1))
  # Point 2 beats every other point in every stream, so in every paired resample.
  scores = np.hstack([base, base + 0.01, base + 0.05, base - 0.02])
  p = _p_best(scores, True)
  assert p.sum() == pytest.approx(1.0)
  np.testing.assert_array_equal(p, [0.0, 0.0, 1.0, 0.0])
  # For a loss, the lowest wins.
  np.testing.assert_array_equal(_p_best(scores, False), [0.0, 0.0, 0.0, 1.0])


def test_p_best_is_paired_not_two_independent_samples():
  # Streams differ a lot, the points differ little but always the same way: point 1 wins every
  # paired resample, though its unpaired interval overlaps point 0's almost entirely.
  stream = np.array([[0.5], [0.7], [0.9], [0.6], [0.8]])
  scores = np.hstack([stream, stream + 0.001])
  np.testing.assert_array_equal(_p_best(scores, True), [0.0, 1.0])


def test_p_best_noisy_shares_are_fractional_reproducible_and_tie_split():
  scores = np.array([[0.90, 0.91, 0.50], [0.92, 0.90, 0.50], [0.91, 0.93, 0.50],
                     [0.93, 0.90, 0.50]])
  p = _p_best(scores, True)
  assert p.sum() == pytest.approx(1.0) and p[2] == 0.0
  assert 0.05 < p[0] < 0.95 and 0.05 < p[1] < 0.95
  np.testing.assert_array_equal(p, _p_best(scores, True))  # a fixed resampling seed
  np.testing.assert_allclose(_p_best(np.full((4, 3), 0.7), True), [1 / 3] * 3)


def test_not_worse_on_a_hand_made_case():
  # Point 0 is the best. Point 1 trails by 0.001 +- noise (not significant); point 2 trails by
  # 0.05 in every stream but one (significant); point 3 equals the best; point 4 trails by a
  # constant 0.01 (degenerate test: worse).
  best = np.array([0.90, 0.92, 0.94, 0.91, 0.93])
  scores = np.stack([best, best + np.array([0.01, -0.012, 0.005, -0.004, -0.004]),
                     best - np.array([0.05, 0.06, 0.04, 0.05, -0.001]), best, best - 0.01],
                    axis=1)
  keep = _not_worse(scores, True)
  np.testing.assert_array_equal(keep, [True, True, False, True, False])
  # The p-value behind point 2's exclusion is scipy's one-sided paired t-test.
  p = scipy.stats.ttest_rel(scores[:, 0], scores[:, 2], alternative="greater").pvalue
  assert p < 0.05
  # With one stream nothing can be excluded.
  np.testing.assert_array_equal(_not_worse(scores[:1], True), [True] * 5)


def test_not_worse_for_a_loss_uses_the_other_direction():
  scores = np.array([[0.5, 0.9], [0.52, 0.91], [0.49, 0.95]])
  np.testing.assert_array_equal(_not_worse(scores, False), [True, False])
