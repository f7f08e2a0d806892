"""Nested cross-validation: the outer folds' split, their selection, refit and score.

The sweeps are tiny (iris, hidden 8, a few epochs, stable learning rates): what is checked is
bookkeeping -- which rows each outer fold trains, validates and tests on, and that running
all outer folds as streams of one program gives what each outer fold's sweep gives alone.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lr_jax
from lr_jax import export, results, stats
from lr_jax.data import load_dataset, make_splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(idx, mask, f):
  return idx[f][mask[f]]


@pytest.mark.parametrize("folds", [None, 2])
def test_outer_test_parts_are_disjoint_cover_the_pool_and_no_inner_fold_sees_its_own(folds):
  ds = load_dataset(lr_jax.DataConfig(dataset="wine"))
  cfg = lr_jax.DataConfig(dataset="wine", train_size=120, outer_folds=3, folds=folds)
  s = make_splits(ds, cfg)
  inner = folds or 1
  assert (s.num_outer, s.inner_folds, s.num_folds) == (3, inner, 3 * inner)
  tests = [s.outer_rows(o)[1] for o in range(3)]
  pool = np.concatenate(tests)
  assert len(pool) == len(np.unique(pool)) == 120  # Disjoint, and together the pool.
  for o in range(3):
    train, test = s.outer_rows(o)
    np.testing.assert_array_equal(train, np.setdiff1d(pool, test))  # The rest of the pool.
    # Stratified: each class's share of the test part is within one row of its share.
    np.testing.assert_allclose(np.bincount(ds.y[test], minlength=3),
                               np.bincount(ds.y[pool], minlength=3) / 3, atol=1)
    for f in range(o * inner, (o + 1) * inner):
      seen = np.concatenate([_rows(s.train_idx, s.train_mask, f), _rows(s.val_idx, s.val_mask, f)])
      assert not np.isin(seen, test).any()
      assert not np.isin(_rows(s.train_idx, s.train_mask, f), _rows(s.val_idx, s.val_mask, f)).any()
  assert make_splits(ds, cfg).outer_test_idx.tolist() == s.outer_test_idx.tolist()  # data_seed


@pytest.mark.parametrize("cfg, pattern", [
    (dict(outer_folds=1), r"outer_folds must be an integer >= 2 .*got 1"),
    (dict(outer_folds=3, test_fraction=0.2), r"test_fraction=0\.2 does not apply with "
                                             r"outer_folds=3"),
    (dict(outer_folds=3, val_dataset="v.csv", dataset="t.csv"), r"val_dataset='v\.csv' does "
                                                                r"not apply with outer_folds"),
])
def test_bad_outer_folds_settings_are_one_line(cfg, pattern):
  with pytest.raises(lr_jax.ConfigError, match=pattern) as info:
    lr_jax.DataConfig(**cfg)
  assert "\n" not in str(info.value)


def test_more_outer_folds_than_the_smallest_class_is_refused():
  ds = load_dataset(lr_jax.DataConfig(dataset="iris"))
  with pytest.raises(lr_jax.ConfigError, match=r"outer_folds=7 is more than 3, the smallest "
                                               r"class count among the 9 examples"):
    make_splits(ds, lr_jax.DataConfig(dataset="iris", train_size=9, outer_folds=7))


TRAIN = lr_jax.TrainConfig(epochs=4, batch_size=16, patience=0)
GRID = lr_jax.Grid(learning_rates=(3e-3, 3e-2), seeds=(0, 1))


def _experiment(data):
  return lr_jax.Experiment(data=data, model=lr_jax.ModelConfig(hidden=(8,)), train=TRAIN)


@pytest.fixture(scope="module")
def nested():
  """Iris, 3 outer folds of 50, each a holdout of 80 training and 20 validation rows."""
  return lr_jax.run_sweep(_experiment(lr_jax.DataConfig(dataset="iris", outer_folds=3)), GRID)


def test_nested_cv_equals_each_outer_folds_sweep_alone(nested):
  ds, splits = nested.groups[0].dataset, nested.groups[0].splits
  assert splits.num_outer == 3 and len(nested.nested) == 1
  est = nested.nested[0]
  assert est.n == 3 and sum(c for _, c in est.selected) == 3  # Every outer fold chose once.
  names = np.array(ds.class_names)
  for o in range(3):
    train, val = splits.train_idx[o][splits.train_mask[o]], splits.val_idx[o][splits.val_mask[o]]
    _, test = splits.outer_rows(o)
    alone_ds = lr_jax.Dataset.from_arrays(ds.x[train], names[ds.y[train]], ds.x[val],
                                          names[ds.y[val]])
    alone = lr_jax.run_sweep(_experiment(lr_jax.DataConfig(dataset=alone_ds)), GRID)
    # Every run: the same score, to float32 rounding across the programs' batch sizes.
    mine = nested.rows["fold"] == o
    # best_epoch is an integer outcome of the two programs: exact here, as no epoch's val loss
    # comes within 3% of the best before it; the selection below is as far from a tie.
    for column in ("best_val_accuracy", "best_val_loss", "best_epoch"):
      np.testing.assert_allclose(nested.rows[column][mine], alone.rows[column], rtol=1e-5)
    # The outer fold's selection is the alone sweep's.
    entries, best = results.outer_selection(nested, 0, o)
    assert best["learning_rate"] == alone.best[0]["learning_rate"]
    np.testing.assert_allclose([a["mean"] for a in entries],
                               [a["mean"] for a in alone.aggregates], rtol=1e-5)
    fold = est.folds[o]
    assert fold.hyperparameters["learning_rate"] == best["learning_rate"]
    assert fold.validation == pytest.approx(best["mean"], rel=1e-6)
    assert (fold.train_n, fold.test_n) == (100, 50)
    # Refit as the alone sweep's refit is (epochs, rows), on the outer training part in row
    # order, an ensemble of the seeds; its score is its accuracy on the test part, by hand.
    model = export.refit(alone)
    assert model.card["refit"]["epochs"] == fold.epochs and model.card["refit"]["n"] == 100
    outer_train, _ = splits.outer_rows(o)
    refit = lr_jax.run_sweep(
        lr_jax.Experiment(
            data=lr_jax.DataConfig(dataset=lr_jax.Dataset.from_arrays(
                ds.x[outer_train], names[ds.y[outer_train]], ds.x[test], names[ds.y[test]])),
            model=lr_jax.ModelConfig(hidden=(8,)),
            train=lr_jax.TrainConfig(epochs=fold.epochs, batch_size=16, patience=0,
                                     restore_best=False)),
        lr_jax.Grid(learning_rates=(fold.hyperparameters["learning_rate"],), seeds=(0, 1)))
    proba = np.mean([refit.predict_proba(i, ds.x[test]) for i in range(2)], axis=0)
    hand = np.mean(names[proba.argmax(-1)] == names[ds.y[test]])
    # The refit above is another program than the nested one (outer folds as streams): a count
    # of argmaxes, exact here as no test row's top two probabilities are within 5e-3.
    assert fold.score == pytest.approx(hand, abs=1e-12)
  scores = [f.score for f in est.folds]
  assert est.mean == pytest.approx(np.mean(scores))
  assert est.ci95 == pytest.approx(stats.t_quantile_975(2) * np.std(scores, ddof=1)
                                   / np.sqrt(3))


def test_nested_estimate_in_summary_table_and_report(nested, tmp_path):
  summary = results.summary_dict(nested)
  (est,) = summary["nested"]
  assert [f["outer"] for f in est["folds"]] == [0, 1, 2] and est["n"] == 3
  assert sum(c["count"] for c in est["selected"]) == 3
  json.dumps(summary)  # JSON-ready.
  line = nested.nested[0].line
  assert line in results.format_table(nested) and "nested CV (3 outer folds, rule best)" in line
  from lr_jax import report
  text = open(report.write_sweep_report(nested, str(tmp_path))[-1]).read()
  section = text.split("## Estimate of the chosen configuration")[1].split("\n## ")[0]
  assert "by nested cross-validation (3 outer folds)" in section
  assert "selected in outer folds" in section


def test_outer_folds_1_is_refused_by_the_script_in_one_line_writing_nothing(tmp_path):
  out = tmp_path / "out"
  proc = subprocess.run([sys.executable, "-m", "experiments.lr_sweep", "--outer_folds=1",
                         f"--out={out}", "--epochs=1"], cwd=ROOT, capture_output=True, text=True,
                        timeout=240, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
  assert "outer_folds must be an integer >= 2" in lines[0]
  assert not out.exists()
