"""Uncertainty that follows the design: seeds, folds and validation rows (`lr_jax.stats`).

Hand-made designs whose right answer is computed here independently (plain numpy and scipy),
then one small real sweep end to end. Each test fails on the statistics that treated the
seeds x folds runs as independent replications and ignored the validation rows.
"""

import math
import types

import numpy as np
import pytest
import scipy.stats

import lr_jax
from lr_jax import results, stats


def _holdout(correct_SxN):
  """A holdout design (one fold): its runs' scores and their per-row outcomes."""
  o = np.asarray(correct_SxN, bool)
  return stats.Runs(o.mean(axis=1, keepdims=True), (o,), proportion=True)


def _rows_with(n_val, wrong, seeds=3, rng=None):
  """[seeds, n_val] outcomes: every seed wrong on the rows `wrong` (and, with rng, a few more)."""
  o = np.ones((seeds, n_val), bool)
  o[:, wrong] = False
  if rng is not None:
    o[rng.random(o.shape) < 0.01] = False
  return o


def test_a_holdout_interval_counts_the_validation_rows_even_when_the_seeds_agree():
  # Three seeds that get exactly the same 352 of 360 rows right: their scores are equal, so an
  # interval over runs has width 0, yet another 360 rows would score differently.
  runs = _holdout(_rows_with(360, np.arange(8)))
  est = stats.estimate(runs, (0.0, 1.0))
  p = 352 / 360
  # Independently: the row part with one pseudo-row right and one wrong added, df n - 1.
  m = np.concatenate([np.r_[np.zeros(8), np.ones(352)], [1, 0]])
  se = math.sqrt(m.var(ddof=1) / m.size)
  assert est.se == pytest.approx(se, rel=1e-12)
  assert est.ci95 == pytest.approx(scipy.stats.t.ppf(0.975, 359) * se, rel=1e-9)
  # About the binomial sampling error of 360 rows (+-0.015 at 0.978): the yardstick.
  assert est.ci95 == pytest.approx(1.96 * math.sqrt(p * (1 - p) / 360), rel=0.2)
  assert est.n_rows == 360 and "360 validation rows" in est.covers
  # The interval printed before treated the three runs as the only variation: width 0.
  assert stats.summarize(runs.scores_SxF).ci95 == 0


def test_an_accuracy_interval_stays_inside_zero_and_one():
  runs = _holdout(_rows_with(40, [], seeds=2))  # every row right: 1.0 exactly
  est = stats.estimate(runs, (0.0, 1.0))
  assert est.mean == 1.0 and est.high == 1.0 and 0.85 < est.low < 0.99
  assert est.ci95 > 0  # the pseudo-rows: a perfect score is not a certain one
  assert results.format_score(est.mean, est.ci95, est.n, est.low, est.high) == (
      f"1.0000 [{est.low:.4f}, 1.0000]")


def test_seed_and_row_parts_add_up_by_hand_under_k_fold():
  rng = np.random.default_rng(0)
  seeds, folds, n = 3, 4, 30
  outcomes = tuple(rng.random((seeds, n)) < 0.8 + 0.03 * f for f in range(folds))
  scores = np.stack([o.mean(axis=1) for o in outcomes], axis=1)  # [S, F]
  est = stats.estimate(stats.Runs(scores, outcomes, proportion=True), (0.0, 1.0))
  seed_part = scores.mean(axis=1).var(ddof=1) / seeds
  rows = [np.concatenate([o.mean(axis=0), [1, 0]]) for o in outcomes]
  row_parts = [r.var(ddof=1) / r.size / folds ** 2 for r in rows]
  var = seed_part + sum(row_parts)
  df = var ** 2 / (seed_part ** 2 / (seeds - 1) + sum(v ** 2 / (n - 1) for v in row_parts))
  assert est.se == pytest.approx(math.sqrt(var), rel=1e-12)
  assert est.df == pytest.approx(df, rel=1e-12)
  assert est.ci95 == pytest.approx(scipy.stats.t.ppf(0.975, df) * math.sqrt(var), rel=1e-9)
  assert est.mean == pytest.approx(scores.mean())


def test_a_row_two_folds_validate_counts_with_its_covariance():
  # Nested CV validates each row in two outer folds' inner folds. Two folds holding the same
  # 60 rows, whose outcomes agree, are not 120 independent rows: the row part doubles.
  rng = np.random.default_rng(3)
  o = rng.random((2, 60)) < 0.85
  ids = np.arange(60)
  same = stats.Runs(np.stack([o.mean(axis=1)] * 2, axis=1), (o, o), True)
  shared = same._replace(rows=(ids, ids))
  apart = same._replace(rows=(ids, ids + 60))
  assert stats.estimate(apart).se == pytest.approx(stats.estimate(same).se)
  # The covariance of the two folds' seed-averaged outcomes over the 60 shared rows, weighted
  # as the mean weights them (1 / (2 folds x 60 rows) each), twice: var(m) / 120 here.
  m = o.mean(axis=0)
  extra = 2 * 60 * np.cov(m, m, ddof=1)[0, 1] / (2 ** 2 * 60 * 60)
  assert stats.estimate(shared).se ** 2 == pytest.approx(stats.estimate(same).se ** 2 + extra,
                                                          rel=1e-12)
  assert extra > 0.5 * (stats.estimate(same).se ** 2
                        - stats.seed_variance(same.scores_SxF.mean(axis=1))[0])
  assert stats.estimate(shared).n_rows == 60 and stats.estimate(same).n_rows == 120


def test_p_best_draws_a_row_several_folds_validate_once():
  # Two folds validating the same 60 rows with the same outcomes say what one fold says; drawn
  # as independent rows, the duplicate would make P(best) look surer than it is.
  rng = np.random.default_rng(5)
  a, b = rng.random((1, 60)) < 0.86, rng.random((1, 60)) < 0.82
  ids = np.arange(60)
  one = [stats.Runs(o.mean(axis=1, keepdims=True), (o,), True) for o in (a, b)]
  two = [stats.Runs(np.tile(o.mean(axis=1, keepdims=True), (1, 2)), (o, o), True, (ids, ids))
         for o in (a, b)]
  naive = [r._replace(rows=None) for r in two]
  p_one, p_two = stats.compare(one, True).p_best, stats.compare(two, True).p_best
  np.testing.assert_allclose(p_two, p_one)
  assert abs(stats.compare(naive, True).p_best[0] - 0.5) > abs(p_one[0] - 0.5)


def test_without_rows_the_fold_is_the_unit_not_the_run():
  # Seeds within a fold agree; folds differ. Fifteen "independent" runs would give a narrow
  # interval on 14 df; the design has 5 replications of its rows, on 4 df.
  fold_F = np.array([0.80, 0.86, 0.90, 0.84, 0.95])
  scores = np.tile(fold_F, (3, 1)) + np.array([[0.0], [0.001], [-0.001]])
  est = stats.estimate(stats.Runs(scores))
  means = scores.mean(axis=0)
  assert est.df == 4
  assert est.ci95 == pytest.approx(
      scipy.stats.t.ppf(0.975, 4) * means.std(ddof=1) / math.sqrt(5), rel=1e-12)
  assert est.ci95 > 2 * stats.summarize(scores).ci95
  assert est.covers.startswith("5 folds")


def test_halvings_test_takes_the_fold_as_unit_when_seeds_share_it():
  # Six streams: 3 seeds x 2 folds. The best leads by 0.05 on every seed of fold 0 and by
  # 0.01 on fold 1. As six independent streams the lead is "significant" (p ~ 0.01); with two
  # folds it is not (p ~ 0.19): the seeds of a fold share its rows.
  folds_S = np.array([0, 0, 0, 1, 1, 1])
  best = np.array([0.10, 0.11, 0.12, 0.20, 0.21, 0.22])  # a loss: lower is better
  other = best + np.array([0.05, 0.05, 0.05, 0.01, 0.01, 0.01])
  scores = np.stack([best, other], axis=1)
  naive = scipy.stats.ttest_rel(other, best, alternative="greater").pvalue
  assert naive < 0.05
  runs = stats.streams_runs(scores, folds_S)
  assert runs[0].scores_SxF.shape == (3, 2)
  assert list(stats.compare(runs, False, with_p_best=False).not_worse) == [True, True]


def test_a_paired_comparison_on_a_holdout_pairs_the_rows():
  # One seed, 200 rows: a is right on 10 rows where b is wrong, b on 2 where a is wrong. Run
  # by run there is one difference and no test; row by row the difference is clear.
  n = 200
  a = np.ones((1, n), bool)
  b = np.ones((1, n), bool)
  b[0, :10] = False
  a[0, 10:12] = False
  d = stats.paired(_holdout(a), _holdout(b))
  diff_N = a[0].astype(float) - b[0].astype(float)
  assert d.mean == pytest.approx(8 / n)
  assert d.se == pytest.approx(diff_N.std(ddof=1) / math.sqrt(n), rel=1e-12)
  assert d.df == pytest.approx(n - 1)
  p = scipy.stats.ttest_1samp(diff_N, 0.0, alternative="greater").pvalue
  assert d.p_greater() == pytest.approx(p, rel=1e-9) and p < 0.05
  c = stats.compare([_holdout(a), _holdout(b)], True)
  assert c.best == 0 and list(c.not_worse) == [True, False]
  # Without the rows one run per point can exclude nothing.
  runs_only = [stats.Runs(_holdout(x).scores_SxF) for x in (a, b)]
  assert list(stats.compare(runs_only, True).not_worse) == [True, True]


def test_the_same_count_of_rows_right_is_a_tie_whatever_float_rounding_says():
  # Three seeds on 37 validation rows: a gets 30, 31 and 32 right, b 31 three times. Both are
  # 93 rows right; float32 accuracies averaged differ in the last bits, and before, that decided.
  n = 37
  a = np.zeros((3, n), bool)
  b = np.zeros((3, n), bool)
  for s, k in enumerate((30, 31, 32)):
    a[s, :k] = True
    b[s, :31] = True
  scores = lambda o: (o.mean(axis=1).astype(np.float32).astype(np.float64))[:, None]
  ra = stats.Runs(scores(a), (a,), proportion=True)
  rb = stats.Runs(scores(b) + 1e-9, (b,), proportion=True)  # b rounds "higher"
  c = stats.compare([ra, rb], True)
  assert list(c.tied) == [0, 1] and c.best == 0  # the first: the smaller learning rate
  assert list(c.not_worse) == [True, True]
  assert c.p_best.sum() == pytest.approx(1.0)


def _tied_sweep(counts=None):
  """A one-group hand-made result whose two top learning rates tie on rows right."""
  n = 37
  counts = counts or {1e-3: (30, 31, 32), 1e-2: (31, 31, 31), 1e-1: (20, 21, 22)}
  lrs = tuple(counts)
  rows = {k: [] for k in ("group", "learning_rate", "seed", "fold", "best_val_accuracy",
                          "best_val_loss", "diverged", "epochs_run", "epochs_to_target",
                          "steps_to_target")}
  outcomes = []
  for seed in range(3):
    for lr in lrs:
      o = np.zeros(n, bool)
      o[:counts[lr][seed]] = True
      outcomes.append(o)
      for k, v in (("group", 0), ("learning_rate", lr), ("seed", seed), ("fold", 0),
                   ("best_val_accuracy", float(np.float32(o.mean()))), ("best_val_loss", 0.3),
                   ("diverged", False), ("epochs_run", 10), ("epochs_to_target", 0),
                   ("steps_to_target", 0)):
        rows[k].append(v)
  rows = {k: np.asarray(v) for k, v in rows.items()}
  rows["best_val_accuracy"][1] += 1e-7  # the second learning rate now rounds above the first
  group = types.SimpleNamespace(
      dataset=types.SimpleNamespace(task="classification"),
      points={"learning_rate": np.asarray(lrs, float)},
      experiment=types.SimpleNamespace(optim=types.SimpleNamespace(name="adam")))
  aggregates = results.aggregate(rows, [group], [], score="best_epoch", outcomes=outcomes)
  config = {"experiments": [{"optim": {"name": "adam", "schedule": "constant"},
                             "model": {"name": "mlp", "hidden": [8]},
                             "data": {"dataset": "digits"}}],
            "grid": {}, "target": None, "select": "best"}
  return results.SweepResult(rows=rows, history={}, aggregates=aggregates,
                             best=results.best_points(aggregates, 1, "best"), config=config,
                             timings=[], params=[], select="best")


def test_a_tie_at_the_top_is_reported_and_goes_to_the_smaller_learning_rate():
  result = _tied_sweep()
  a = {x.learning_rate: x for x in result.aggregates}
  assert a[1e-2].mean > a[1e-3].mean  # by float rounding only
  assert a[1e-3].tied and a[1e-2].tied and not a[1e-1].tied
  assert result.best[0].learning_rate == 1e-3
  assert a[1e-3].p_best + a[1e-2].p_best == pytest.approx(1.0, abs=0.01)
  table = results.format_table(result)
  assert "tied with lr 0.01" in table and "a tie goes to the smaller learning rate" in table
  line = next(x for x in table.splitlines() if x.split()[:1] == ["0.01"])
  assert "tied at the top" in line


def test_when_every_point_ties_on_counts_the_tie_rule_still_chooses():
  # Two learning rates with the same 93 rows right: a tie, not "unresolved" (which is kept
  # for means equal to the last bit: nothing learned). Nested CV lost outer folds to this.
  result = _tied_sweep({1e-3: (30, 31, 32), 1e-2: (31, 31, 31)})
  assert result.best[0].learning_rate == 1e-3 and result.best[0].tied
  assert not result.best[0].reason


def test_a_user_metric_interval_stays_inside_its_declared_bounds():
  # Two runs of an AUC: t on 1 df is 12.7, and the interval ran to +-1.89 before.
  runs = stats.Runs(np.array([[0.70], [0.93]]))
  est = stats.estimate(runs, (0.0, 1.0))
  assert est.ci95 > 1 and est.low == 0.0 and est.high == 1.0
  with pytest.raises(lr_jax.ConfigError, match="bounds"):
    lr_jax.Metric(lambda o, y, w: 0.0, bounds=(1.0, 0.0))


def test_equal_runs_without_rows_print_no_zero_width_interval_as_if_measured():
  assert results.format_score(0.9, 0.0, 3) == "0.9000 ± 0 (3 equal runs)"


# ----- A real sweep: the program keeps each validation row's outcome -----------------------

from lr_jax import config as C  # noqa: E402  (the hand-made tests above need no engine)

_EXP = C.Experiment(data=C.DataConfig(dataset="digits", train_size=150, val_fraction=0.3),
                    model=C.ModelConfig(hidden=(16,)),
                    train=C.TrainConfig(epochs=8, patience=2, batch_size=32))
_GRID = lr_jax.Grid(learning_rates=(3e-3, 3e-2), seeds=(0, 1))


@pytest.fixture(scope="module")
def sweep():
  return lr_jax.run_sweep(_EXP, _GRID)


def test_the_program_keeps_the_rows_each_score_is_the_mean_of(sweep):
  for key, column in (("best_epoch", "best_val_accuracy"), ("last_epoch", "last_val_accuracy"),
                      ("crossfit", "crossfit_val_accuracy")):
    outcomes = sweep.outcomes[key]
    assert len(outcomes) == sweep.num_variants
    n_val = int(sweep.groups[0].splits.val_mask[0].sum())
    for row, o in enumerate(outcomes):
      assert o.shape == (n_val,) and o.dtype == bool
      assert o.mean() == pytest.approx(float(sweep.rows[column][row]), abs=1e-6)
  # The last epoch's score is the history's last value of each run.
  hist = sweep.history["val_accuracy"]
  for row in range(sweep.num_variants):
    last = hist[row][np.isfinite(hist[row])][-1]
    assert sweep.rows["last_val_accuracy"][row] == last


def test_the_default_holdout_interval_includes_the_validation_sampling_error(sweep):
  best = sweep.best[0]
  n_val = int(sweep.groups[0].splits.val_mask[0].sum())
  p = best.mean
  assert best.n_rows == n_val and f"{n_val} validation rows" in best.covers
  assert best.ci95 >= 0.9 * 1.96 * math.sqrt(p * (1 - p) / n_val)
  table = results.format_table(sweep)
  assert f"95% CI covers 2 seeds and {n_val} validation rows" in table
  assert "score: val_accuracy cross-fitted" in table


def test_crossfit_scores_each_half_at_the_other_halfs_best_epoch(sweep):
  # By hand from the history: each half's best epoch is where its own monitored loss (the
  # per-row losses are not kept, so this checks the outcomes' halves) -- the rows of the even
  # positions are scored where the odd ones chose, and vice versa; so the cross-fitted score
  # differs from the best epoch's, and lies between the run's worst and best accuracy.
  cross = sweep.rows["crossfit_val_accuracy"]
  hist = sweep.history["val_accuracy"]
  assert not np.allclose(cross, sweep.rows["best_val_accuracy"])
  for row in range(sweep.num_variants):
    ran = hist[row][np.isfinite(hist[row])]
    n_val = sweep.outcomes["crossfit"][row].size
    # Each half's mean is one epoch's accuracy on that half: bounded by any epoch's extremes
    # on the whole set, give or take the halves' sizes.
    assert ran.min() - 2 / n_val - 0.5 <= cross[row] <= 1.0


def test_score_last_epoch_is_a_named_choice_in_the_table_and_the_config(sweep):
  last = lr_jax.run_sweep(_EXP, _GRID, score="last_epoch")  # the same program: no compile
  assert last.config["score"] == "last_epoch" and sweep.config["score"] == "crossfit"
  for a in last.aggregates:
    sel = sweep.rows["learning_rate"] == a.learning_rate
    assert a.score == "last_epoch"
    assert a.mean == pytest.approx(float(np.mean(sweep.rows["last_val_accuracy"][sel])))
  assert "score: val_accuracy at the last epoch" in results.format_table(last)
  with pytest.raises(lr_jax.ConfigError, match="score"):
    lr_jax.run_sweep(_EXP, _GRID, score="max")
