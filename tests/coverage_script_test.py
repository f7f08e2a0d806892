"""benchmarks/coverage.py without training: its checks of a sweep's outcomes, the interval methods
and the coverage numbers, on synthetic runs (well under a second)."""

import math
import types

import numpy as np
import pytest
import scipy.stats

from benchmarks import coverage
from lr_jax import stats

SCORES = tuple(coverage.SCORE_COLUMNS)


def _point(num_seeds=3, num_folds=5, n=40, seed=0, p=0.9, rows=None):
  """A synthetic point: 0/1 outcomes per score, seed and fold, the scores their means; `rows`
  the folds' row ids (default: distinct)."""
  rng = np.random.default_rng(seed)
  outcomes = {k: [(rng.random((num_seeds, n)) < p).astype(np.float64) for _ in range(num_folds)]
              for k in SCORES}
  scores = {k: np.stack([o.mean(axis=1) for o in outcomes[k]], axis=1) for k in SCORES}
  if rows is None:
    rows = tuple(np.arange(n) + n * f for f in range(num_folds))
  printed = coverage.PRINTED_SCORE
  est = stats.estimate(stats.Runs(scores[printed], tuple(outcomes[printed]), True, rows))
  return coverage.Point(scores, outcomes, rows, (est.mean, est.ci95, est.n), p, 0.0)


def test_scores_are_lr_jaxs():
  from lr_jax.results import DEFAULT_SCORE
  from lr_jax.results import SCORES as lr_jax_scores
  assert SCORES == tuple(lr_jax_scores)
  assert coverage.PRINTED_SCORE == DEFAULT_SCORE


def test_split_rows_draws_from_all_rows_and_holds_out_the_rest():
  for name, design in (("digits", coverage.DESIGNS["kfold"]),
                       ("breast_cancer", coverage.DESIGNS["bc_holdout"])):
    train, heldout = coverage.split_rows(name, design.train_n, 7)
    assert len(train) == design.train_n
    assert len(heldout) == coverage.DATASET_N[name] - design.train_n  # 1597, 419.
    assert np.array_equal(np.sort(np.concatenate([train, heldout])),
                          np.arange(coverage.DATASET_N[name]))
    assert np.array_equal(train, coverage.split_rows(name, design.train_n, 7)[0])
    assert not np.array_equal(train, coverage.split_rows(name, design.train_n, 8)[0])


def test_runs_t_is_student_t_over_the_best_epoch_runs():
  p = _point()
  s = stats.summarize(p.scores["best_epoch"].ravel())
  assert np.allclose(coverage.runs_t(p), (s.mean, s.mean - s.ci95, s.mean + s.ci95))


def test_new_without_pseudo_rows_by_hand():
  """`--pseudo_rows=` (none): the plain variance, seed part + row part, Satterthwaite df."""
  p = _point(num_seeds=3, num_folds=2, n=10, p=0.6)
  for k in SCORES:
    s_SxF = p.scores[k]
    seed_var = s_SxF.mean(1).var(ddof=1) / 3
    row_vars = [o.mean(0).var(ddof=1) / 10 / 4 for o in p.outcomes[k]]
    var = seed_var + sum(row_vars)
    df = var**2 / (seed_var**2 / 2 + sum(v**2 / 9 for v in row_vars))
    half = scipy.stats.t.ppf(0.975, df) * math.sqrt(var)
    got = coverage.new(p, k, pseudo=coverage.parse_pseudo_rows(""))
    assert got.mean == pytest.approx(s_SxF.mean())
    assert (got.low, got.high) == pytest.approx((max(0, got.mean - half), min(1, got.mean + half)))


def test_pseudo_rows_flag_sets_lr_jaxs_for_the_block_only():
  assert coverage.parse_pseudo_rows(None) is None
  assert coverage.parse_pseudo_rows("") == ()
  assert coverage.parse_pseudo_rows("1,1,0,0") == (1.0, 1.0, 0.0, 0.0)
  design = stats.design  # what `stats.estimate` reads
  original = design.PSEUDO_ROWS
  with coverage.pseudo_rows((1.0, 1.0, 0.0, 0.0)):
    assert design.PSEUDO_ROWS == (1.0, 1.0, 0.0, 0.0)
  assert design.PSEUDO_ROWS == original
  p = _point(n=30, p=0.97)
  widths = [coverage.new(p, "crossfit", coverage.parse_pseudo_rows(t))
            for t in ("", "1,0", "1,1,0,0")]
  widths = [w.high - w.low for w in widths]
  assert widths[0] < widths[1] < widths[2]
  assert design.PSEUDO_ROWS == original


def test_new_counts_rows_that_folds_share():
  """Nested CV: two folds validating the same rows, their outcomes alike, are not two samples:
  the rows' ids make the interval wider than distinct rows would."""
  rng = np.random.default_rng(3)
  base = (rng.random(40) < 0.8).astype(np.float64)
  p = _point(num_seeds=3, num_folds=2, n=40)
  outcomes = {k: [np.tile(base, (3, 1)), np.tile(base, (3, 1))] for k in SCORES}
  scores = {k: np.full((3, 2), base.mean()) + rng.normal(0, 0.01, (3, 2)) for k in SCORES}
  shared = p._replace(scores=scores, outcomes=outcomes, rows=(np.arange(40), np.arange(40)))
  distinct = shared._replace(rows=(np.arange(40), np.arange(40, 80)))
  for k in SCORES:
    got = coverage.new(shared, k)
    est = stats.estimate(stats.Runs(scores[k], tuple(outcomes[k]), True, shared.rows), (0, 1))
    assert got == pytest.approx((est.mean, est.low, est.high))
    assert got.high - got.low > coverage.new(distinct, k).high - coverage.new(distinct, k).low


def test_new_is_lr_jax_estimate_on_each_score():
  p = _point(p=0.97)
  for k in SCORES:
    est = stats.estimate(stats.Runs(p.scores[k], tuple(p.outcomes[k]), True, p.rows), (0.0, 1.0))
    assert coverage.new(p, k) == pytest.approx((est.mean, est.low, est.high))
  assert coverage.printed_gap(p) < 1e-12
  with coverage.pseudo_rows((1.0, 1.0, 0.0, 0.0)):  # Not what lr_jax printed with.
    assert coverage.printed_gap(p) > 1e-6


def test_validation_runs_checks_and_pads():
  """Two runs, folds of 3 and 2 validation rows: lr_jax's outcomes vs the restored params."""
  y = np.array([0, 1, 1, 0, 1])
  pred = np.array([[0, 1, 0, 9, 9], [9, 9, 9, 0, 0]])  # Run 0: rows 0-2; run 1: rows 3-4.
  splits = types.SimpleNamespace(val_idx=np.array([[0, 1, 2], [3, 4, 0]]),
                                 val_mask=np.array([[1, 1, 1], [1, 1, 0]], bool))
  outcomes = [np.array([1, 1, 0], bool), np.array([1, 0], bool)]
  rows = {"fold": np.array([0, 1]), "diverged": np.zeros(2, bool),
          "best_val_accuracy": np.array([2 / 3, 0.5]), "last_val_accuracy": np.array([1, 0.5]),
          "crossfit_val_accuracy": np.array([2 / 3, 0.0])}
  result = types.SimpleNamespace(
      groups=[types.SimpleNamespace(splits=splits)], rows=rows,
      outcomes={"best_epoch": outcomes, "last_epoch": [np.ones(3, bool), outcomes[1]],
                "crossfit": [outcomes[0], np.zeros(2, bool)]})
  out = coverage.validation_runs(result, pred, y, 0)
  assert out["val_rows"].tolist() == [[0, 1, 2], [3, 4, -1]]
  assert out["val_correct"].tolist() == [[1, 1, 0], [1, 0, -1]]
  assert out["outcome_last_epoch"].tolist() == [[1, 1, 1], [1, 0, -1]]
  assert out["best_mismatch"].tolist() == [0, 0]
  assert out["score_crossfit"].tolist() == [2 / 3, 0.0]
  rows["last_val_accuracy"] = np.array([2 / 3, 0.5])  # Not the mean of its outcomes.
  with pytest.raises(AssertionError):
    coverage.validation_runs(result, pred, y, 0)


def test_wilson_is_scipys():
  for k, n in ((95, 100), (0, 20), (120, 120)):
    ci = scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    assert coverage.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_tabulate_design_on_synthetic_raw_arrays():
  """R replications of a 2-fold design; every score's outcomes drawn around the target 0.9."""
  num_reps, lrs = 30, coverage.LEARNING_RATES
  lr_V = np.repeat(lrs, 6)
  seed_V = np.tile(np.repeat([0, 1, 2], 2), 2)
  fold_V = np.tile([0, 1], 6)
  rng = np.random.default_rng(1)
  raw = {"lr": np.broadcast_to(lr_V, (num_reps, 12)),
         "seed": np.broadcast_to(seed_V, (num_reps, 12)),
         "fold": np.broadcast_to(fold_V, (num_reps, 12)),
         "diverged": np.zeros((num_reps, 12), bool),
         "val_rows": np.broadcast_to(np.arange(40) + 40 * fold_V[:, None],
                                     (num_reps, 12, 40)).astype(np.int16),
         "best_mismatch": np.zeros((num_reps, 12), int),
         "heldout_correct": np.ones((num_reps, 12, 10), np.int8)}
  for k in SCORES:
    raw[f"outcome_{k}"] = (rng.random((num_reps, 12, 40)) < 0.9).astype(np.int8)
    raw[f"score_{k}"] = raw[f"outcome_{k}"].mean(-1)
  raw["heldout_correct"][..., 0] = 0  # Held-out accuracy 0.9: the truth.
  raw.update(printed_mean=np.zeros((num_reps, 2)), printed_ci95=np.zeros((num_reps, 2)),
             printed_n=np.full((num_reps, 2), 6))
  for r in range(num_reps):  # What lr_jax prints: its estimate on its default score.
    for p in range(2):
      q = coverage.point_of(raw, r, p)
      assert [a.tolist() for a in q.rows] == [list(range(40)), list(range(40, 80))]
      k = coverage.PRINTED_SCORE
      est = stats.estimate(stats.Runs(q.scores[k], tuple(q.outcomes[k]), True))
      raw["printed_mean"][r, p], raw["printed_ci95"][r, p] = est.mean, est.ci95
  for k in ("compile_s", "sweep_s", "wall_s", "apply_s"):
    raw[k] = np.ones(num_reps)
  out = coverage.tabulate_design(raw)
  entry = out["points"][str(lrs[0])]
  assert entry["target_mean"] == pytest.approx(0.9)
  assert entry["target_se"] == pytest.approx(math.sqrt(0.1 / 10))  # 9 of 10 held-out rows.
  assert entry["printed_vs_new"] < 1e-12
  assert list(entry["methods"]) == ["runs_t"] + [f"new:{k}" for k in SCORES]
  for name, c in entry["methods"].items():
    assert 0 <= c["coverage_low"] <= c["coverage"] <= c["coverage_high"] <= 1, name
    assert c["R"] == num_reps
  # Outcomes drawn independently around the truth: the design's intervals are about right.
  for k in SCORES:
    assert entry["methods"][f"new:{k}"]["coverage"] >= 0.8
  assert "95%" in coverage.report({"machine": "m", "designs": {"d": out}})
  # `--pseudo_rows=`: the same table without the pseudo rows, narrower; runs_t unchanged.
  bare = coverage.tabulate_design(raw, ())["points"][str(lrs[0])]["methods"]
  for k in SCORES:
    assert bare[f"new:{k}"]["half_width"] < entry["methods"][f"new:{k}"]["half_width"]
  assert bare["runs_t"] == entry["methods"]["runs_t"]
