"""A refit says which rows it trained on, and parts the selection's optimism from its own gain.

Item A: for every design (holdout with and without `train_size`, k-fold with and without, a
given validation split, a given test split, nested cross-validation) model.json's
`refit.rows` and the estimate's line state how many rows the refit trained on and which, and
those are the rows the refit's own sweep trained on (its data set, read back).

Item B: the selection-only gap (the chosen point's runs, validation against test) and the
refit's gain (the refit against those runs, paired on the test rows) each come with a 95%
interval, and a verdict only where the interval excludes 0; the line counts the eligible
points, not the grid's; a score nothing measured carries a caveat.

The sweeps are tiny (4 features, hidden 8, 2 epochs): what is checked is bookkeeping.
"""

import hashlib
import math

import numpy as np
import pytest
import scipy.stats

import lr_jax
from lr_jax import engine, export
from lr_jax.export import gaps
from lr_jax.report import estimate as report_estimate

NAMES = ("cat", "dog", "fish")


def _arrays(n=120, seed=0):
  """Three separable blobs in 4 features, labelled with strings."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(3), n // 3)
  x = rng.normal(size=(len(y), 4)) + 2.0 * np.eye(3, 4)[y]
  return (x * 5 + 3).astype(np.float32), np.array(NAMES)[y]


def _experiment(data, optimizer="sgd"):
  return lr_jax.Experiment(data=data, model=lr_jax.ModelConfig(hidden=(8,)),
                           optim=lr_jax.OptimConfig(name=optimizer),
                           train=lr_jax.TrainConfig(epochs=2, batch_size=16, patience=0))


def _refit_and_its_sweep(result, group=None):
  """`export.refit(result)`, and the refit's own sweep result (what it trained on)."""
  seen, real = [], engine.run_sweep

  def spy(*args, **kwargs):
    seen.append(real(*args, **kwargs))
    return seen[-1]

  engine.run_sweep = spy
  try:
    model = export.refit(result, group)
  finally:
    engine.run_sweep = real
  assert len(seen) == 1
  return model, seen[0]


# ----------------------------------------------------------------------------- the sweeps


@pytest.fixture(scope="module")
def holdout():
  """Holdout with a test set; sgd at 0.1 and at 50 (which diverges): 1 of 2 points eligible."""
  x, labels = _arrays()
  ds = lr_jax.Dataset.from_arrays(x, labels)
  result = lr_jax.run_sweep(_experiment(lr_jax.DataConfig(dataset=ds, test_fraction=0.2)),
                            lr_jax.Grid(learning_rates=(0.1, 50.0), seeds=(0, 1)),
                            score="best_epoch")  # the restored epoch: checked by hand below
  model, fit = _refit_and_its_sweep(result)
  return ds, result, model, fit


def _design(name):
  """The DataConfig of a design of item A."""
  x, labels = _arrays()
  if name == "holdout_train_size":
    ds = lr_jax.Dataset.from_arrays(x, labels)
    return lr_jax.DataConfig(dataset=ds, test_fraction=0.2, train_size=30)
  if name == "kfold_wine":  # The case: wine --test_fraction=0.3 --folds=3.
    return lr_jax.DataConfig(dataset="wine", test_fraction=0.3, folds=3)
  if name == "kfold_train_size":
    ds = lr_jax.Dataset.from_arrays(x, labels)
    return lr_jax.DataConfig(dataset=ds, test_fraction=0.2, folds=3, train_size=45)
  if name == "val_dataset":
    vx, vlabels = _arrays(n=30, seed=1)
    ds = lr_jax.Dataset.from_arrays(x, labels, vx, vlabels)
    return lr_jax.DataConfig(dataset=ds, test_fraction=0.2)
  if name == "test_dataset":
    tx, tlabels = _arrays(n=30, seed=2)
    ds = lr_jax.Dataset.from_arrays(x, labels, x_test=tx, y_test=tlabels)
    return lr_jax.DataConfig(dataset=ds)
  if name == "nested_train_size":
    ds = lr_jax.Dataset.from_arrays(x, labels)
    return lr_jax.DataConfig(dataset=ds, outer_folds=2, train_size=90)
  raise ValueError(name)


# What each design's refit trains on, as model.json and the line say it: (n, which).
DESIGNS = {
    "holdout_train_size": (50, "the 30 training and 20 validation rows, 50 of 96 non-test rows "
                               "(train_size=30 of the 76-row training pool; the other 46 are "
                               "not used)"),
    "kfold_wine": (124, "every non-test row (the folds' training and validation rows)"),
    "kfold_train_size": (45, "the 45 rows of the folds, their training and validation rows "
                             "(train_size=45, drawn from 96 non-test rows; the other 51 are not "
                             "used)"),
    "val_dataset": (126, "every non-test row (the 96 training and 30 given validation rows)"),
    "test_dataset": (120, "every non-test row (the 96 training and 24 validation rows)"),
    "nested_train_size": (90, "the 90 rows of the nested cross-validation pool (train_size=90, "
                              "drawn from 120 rows; the other 30 are not used)"),
}


def _check_rows_stated_are_rows_trained(result, model, fit):
  """model.json's `refit.rows` is exactly what the refit's own sweep trained on."""
  g = result.groups[0]
  ds = g.dataset
  rows = model.card["refit"]["rows"]
  idx = np.asarray(rows["indices"])
  trained = fit.groups[0].splits
  # The refit's data set, read back: its training rows are the stated rows' features.
  n_trained = int(trained.train_sizes[0])
  assert model.card["refit"]["n"] == rows["n"] == len(idx) == n_trained
  refit_x = fit.groups[0].dataset.x[trained.train_idx[0][trained.train_mask[0]]]
  np.testing.assert_array_equal(refit_x, ds.x[idx])  # Moved rows: bitwise.
  np.testing.assert_array_equal(np.sort(idx), idx)
  assert not set(idx.tolist()) & set(g.splits.test_idx.tolist())
  assert rows["non_test"] == len(ds.y) - len(g.splits.test_idx)
  assert rows["not_used"] == rows["non_test"] - rows["n"]
  assert rows["sha256"] == hashlib.sha256(idx.astype("<i8").tobytes()).hexdigest()
  # Its standardization is the stated rows' statistics (float64 then float32, as the splits).
  np.testing.assert_allclose(model.mean, ds.x[idx].astype(np.float64).mean(0), rtol=1e-6,
                             atol=1e-6)
  # The line says it too.
  assert f"refit on {rows['n']} rows: {rows['which']}" in model.estimate["line"]
  assert model.estimate["refit_n"] == rows["n"]
  assert model.estimate["refit_rows"] == rows["which"]


# ----------------------------------------------------------------------------- item A


def test_holdout_refit_states_every_non_test_row_and_trains_on_it(holdout):
  _, result, model, fit = holdout
  _check_rows_stated_are_rows_trained(result, model, fit)
  rows = model.card["refit"]["rows"]
  assert rows["n"] == 96 and rows["not_used"] == 0
  assert rows["which"] == "every non-test row (the 76 training and 20 validation rows)"


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_refit_states_the_rows_it_trains_on(design):
  data = _design(design)
  result = lr_jax.run_sweep(_experiment(data, optimizer="adam"),
                            lr_jax.Grid(learning_rates=(0.03,), seeds=(0,)))
  model, fit = _refit_and_its_sweep(result)
  _check_rows_stated_are_rows_trained(result, model, fit)
  n, which = DESIGNS[design]
  assert (model.card["refit"]["rows"]["n"], model.card["refit"]["rows"]["which"]) == (n, which)


# ----------------------------------------------------------------------------- item B


def _hand_gaps(ds, result, model):
  """Each chosen run's and the refit's 0/1 outcome on the test rows, and on validation."""
  g = result.groups[0]
  test = g.splits.test_idx
  truth = np.array(NAMES)[ds.y[test]]
  runs = export._chosen_rows(result, 0)
  runs_RxT = np.stack([result.predict(int(i), ds.x[test]) == truth for i in runs]).astype(float)
  refit_T = (model.predict(ds.x[test]) == truth).astype(float)
  val = g.splits.val_idx[0][g.splits.val_mask[0]]
  val_RxV = np.stack([result.predict(int(i), ds.x[val]) == np.array(NAMES)[ds.y[val]]
                      for i in runs]).astype(float)
  scores_R = np.asarray(result.rows["best_val_accuracy"], float)[runs]
  return runs_RxT, refit_T, val_RxV, scores_R


def test_the_line_counts_the_eligible_points_not_the_grids(holdout):
  _, result, model, _ = holdout
  assert [a.eligible for a in result.aggregates] == [True, False]  # lr 50 diverged.
  est = model.estimate
  assert "(n=2 runs; best of 1 eligible point (2 in the grid), optimistically biased)" in (
      est["line"]), est["line"]
  assert est["num_eligible"] == 1 and est["num_points"] == 2
  assert model.card["selection"]["num_eligible"] == 1


def test_selection_gap_and_refit_gain_are_apart_each_with_its_interval(holdout):
  ds, result, model, _ = holdout
  runs_RxT, refit_T, val_RxV, scores_R = _hand_gaps(ds, result, model)
  # Restored best epoch: each run's validation outcomes give its recorded score (a count of
  # argmaxes, exact here).
  np.testing.assert_allclose(val_RxV.mean(1), scores_R, atol=1e-6)
  est = model.estimate
  best = result.best[0]
  sweep_test, refit = runs_RxT.mean(), refit_T.mean()
  assert est["sweep_test"] == pytest.approx(sweep_test, abs=1e-12)
  assert est["selection_gap"] == pytest.approx(best.mean - sweep_test, abs=1e-12)
  assert est["refit_gain"] == pytest.approx(refit - sweep_test, abs=1e-12)
  assert est["gap"] == pytest.approx(best.mean - refit, abs=1e-12)
  n_test = len(refit_T)
  # The refit's gain: paired row by row on the test rows, Student-t over them.
  d_T = refit_T - runs_RxT.mean(0)
  half = scipy.stats.t.ppf(0.975, n_test - 1) * d_T.std(ddof=1) / math.sqrt(n_test)
  assert est["refit_gain_ci95"] == pytest.approx(half, rel=1e-9)
  # The selection-only gap: seeds, validation rows and test rows, Satterthwaite.
  plus2 = lambda m: np.concatenate([m, [1, 0]])  # stats.PSEUDO_ROWS
  parts = [((scores_R - runs_RxT.mean(1)).var(ddof=1) / 2, 1.0),
           (plus2(val_RxV.mean(0)).var(ddof=1) / (val_RxV.shape[1] + 2), val_RxV.shape[1] - 1),
           (plus2(runs_RxT.mean(0)).var(ddof=1) / (n_test + 2), n_test - 1)]
  total = sum(v for v, _ in parts)
  df = total ** 2 / sum(v ** 2 / d for v, d in parts)
  assert est["selection_gap_ci95"] == pytest.approx(
      scipy.stats.t.ppf(0.975, df) * math.sqrt(total), rel=1e-9)
  assert est["covers"] == f"2 seeds, {val_RxV.shape[1]} validation rows and {n_test} test rows"
  # model.json carries both, their intervals and their n.
  card = model.card["estimate"]
  for k in ("selection_gap", "selection_gap_ci95", "refit_gain", "refit_gain_ci95", "gap_ci95",
            "test_ci95", "sweep_runs", "test_n", "validation_rows"):
    assert card[k] == est[k] and card[k] is not None, k
  assert card["sweep_runs"] == 2 and card["test_n"] == n_test
  # The line states each with its interval, and a verdict only where it excludes 0.
  for key, positive in (("selection_gap", "the validation score was optimistic"),
                        ("refit_gain", "the refit scores better")):
    value, ci = est[key], est[f"{key}_ci95"]
    text = f"{value:+.4f} ± {ci:.4f}"
    assert text in est["line"], (text, est["line"])
    after = est["line"].split(text, 1)[1].split("; ")[0]
    if abs(value) > ci:
      assert positive in after or "worse" in after or "pessimistic" in after, after
    else:
      assert after.endswith(f"not distinguishable from 0 with n_test = {n_test} rows"), after


def test_the_report_shows_both_gaps_and_never_no_optimism(holdout):
  _, result, model, _ = holdout
  import dataclasses
  from lr_jax import report
  with_estimate = dataclasses.replace(result, estimate=model.estimate)
  [(group, est)] = report.result_estimates(with_estimate)
  text = report.estimate_markdown(est)
  e = model.estimate
  assert f"**{e['selection_gap']:+.4f}** ± {e['selection_gap_ci95']:.4f} (95%" in text, text
  assert f"**{e['refit_gain']:+.4f}** ± {e['refit_gain_ci95']:.4f} (95%" in text, text
  assert f"The refit trained on 96 rows: {e['refit_rows']}." in text
  assert f"± {e['test_ci95']:.4f}** on the held-out test set" in text
  assert "no optimism" not in text


def test_estimate_markdown_gives_a_verdict_only_where_the_interval_excludes_zero():
  base = {"kind": "test", "metric": "accuracy", "score": 0.90, "n": 30,
          "validation_score": 0.88}
  # Test above validation, no interval: the old page said "no optimism showed here".
  text = report_estimate.estimate_markdown(base)
  assert "no optimism" not in text and "is **-0.0200**: no interval, so no verdict." in text
  wide = report_estimate.estimate_markdown({**base, "gap_ci95": 0.05})
  assert ("is **-0.0200** ± 0.0500 (95%): not distinguishable from 0 with n_test = 30 rows."
          in wide)
  narrow = report_estimate.estimate_markdown({**base, "validation_score": 0.95,
                                              "gap_ci95": 0.01})
  assert "is **+0.0500** ± 0.0100 (95%): the validation score was optimistic." in narrow
  loss = report_estimate.estimate_markdown({
      "kind": "test", "metric": "loss", "score": 0.50, "n": 40, "validation_score": 0.30,
      "gap_ci95": 0.1, "selection_gap": 0.15, "selection_gap_ci95": 0.2, "sweep_test": 0.45,
      "sweep_runs": 3, "refit_gain": -0.05, "refit_gain_ci95": 0.01})
  assert "is **+0.2000** ± 0.1000 (95%): the validation score was optimistic." in loss
  assert ("the selection-only gap (how much worse they score on the test rows than on "
          "validation) is **+0.1500** ± 0.2000 (95%): not distinguishable from 0 with "
          "n_test = 40 rows.") in loss
  assert "is **-0.0500** ± 0.0100 (95%): the refit scores worse." in loss


def test_estimate_of_states_gaps_with_intervals_in_either_direction():
  from types import SimpleNamespace
  best = SimpleNamespace(higher_is_better=False, mean=0.30, n=3, metric="val_loss")
  gaps = {"validation": 0.30, "sweep_test": 0.40, "test": 0.35, "selection_gap": 0.10,
          "selection_gap_ci95": 0.04, "refit_gain": 0.05, "refit_gain_ci95": 0.08,
          "gap": 0.05, "gap_ci95": 0.09, "test_ci95": 0.06, "sweep_runs": 3, "seeds": 3,
          "folds": 1, "validation_rows": 50, "test_n": 40,
          "covers": "3 seeds, 50 validation rows and 40 test rows"}
  est = export.estimate_of(best, "best", 16, {"n": 40, "accuracy": None, "loss": 0.35}, 0, 90,
                           num_eligible=13, refit_rows="every non-test row (the 60 training "
                           "and 30 validation rows)", gaps=gaps)
  assert est["line"] == (
      "validation loss 0.3000 (n=3 runs; best of 13 eligible points (16 in the grid), "
      "optimistically biased) vs test 0.3500 (n=40; refit on 90 rows: every non-test row (the "
      "60 training and 30 validation rows)): gap 0.0500 ± 0.0900; selection-only gap +0.1000 "
      "± 0.0400 (validation vs the chosen point's own 3 sweep runs on the test rows, 0.4000): "
      "the validation score was optimistic; refit gain +0.0500 ± 0.0800 (refit vs those runs, "
      "paired on the test rows): not distinguishable from 0 with n_test = 40 rows")
  assert "no optimism" not in est["line"]
  assert est["selection_gap_ci95"] == 0.04 and est["refit_gain"] == 0.05


def test_honest_gaps_signs_and_intervals_by_hand():
  # A loss: lower is better. One seed, one fold: the rows alone make the interval.
  val = [np.array([[0.2, 0.4, 0.3, 0.5]])]  # [S=1, n=4] validation rows' losses.
  test = np.array([[[0.6, 0.5, 0.7, 0.4, 0.3]]])  # [S=1, F=1, T=5]
  refit = np.array([0.4, 0.5, 0.5, 0.3, 0.3])
  g = gaps.honest_gaps(np.array([[0.35]]), val, test, refit, higher_is_better=False,
                         proportion=False)
  assert g["selection_gap"] == pytest.approx(0.5 - 0.35)  # test - validation: optimistic > 0
  assert g["refit_gain"] == pytest.approx(0.5 - 0.4)  # runs' loss - refit's: better > 0
  assert g["gap"] == pytest.approx(0.4 - 0.35)
  v_val, v_test = np.var([0.2, 0.4, 0.3, 0.5], ddof=1) / 4, np.var(test[0, 0], ddof=1) / 5
  df = (v_val + v_test) ** 2 / (v_val ** 2 / 3 + v_test ** 2 / 4)
  assert g["selection_gap_ci95"] == pytest.approx(
      scipy.stats.t.ppf(0.975, df) * math.sqrt(v_val + v_test), rel=1e-12)
  d = refit - test[0, 0]
  assert g["refit_gain_ci95"] == pytest.approx(
      scipy.stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5), rel=1e-12)
  assert g["covers"] == "one seed (seed variation unknown), 4 validation rows and 5 test rows"
  # Accuracy, every row right everywhere: "plus four" still gives the gap an interval.
  ones = gaps.honest_gaps(np.ones((2, 1)), [np.ones((2, 10))], np.ones((2, 1, 8)),
                            np.ones(8), higher_is_better=True, proportion=True)
  assert ones["selection_gap"] == 0 and ones["selection_gap_ci95"] > 0.1
  assert ones["refit_gain"] == 0 and ones["refit_gain_ci95"] == 0  # Identical on every row.


def test_optimism_caveat_names_the_eligible_points_and_the_command():
  caveat = report_estimate.optimism_caveat
  assert caveat(13, has_test=False, nested=False) == (
      "optimistically biased: it is the best of 13 eligible points' validation scores; measure "
      "the bias with `--test_fraction=0.2` (or `--outer_folds=3`)")
  assert caveat(13, has_test=True, nested=False) is None
  assert caveat(13, has_test=False, nested=True) is None
  assert caveat(0, has_test=False, nested=False) is None
  assert "chosen (rule one_se) from 5 eligible points'" in caveat(5, False, False, "one_se")
  assert caveat(1, False, False).startswith(
      "optimistically biased: each run's score is its best epoch's on these validation rows")


def test_regression_gaps_count_a_loss_the_other_way():
  data = lr_jax.DataConfig(dataset="linear", num_samples=100, test_fraction=0.2)
  result = lr_jax.run_sweep(_experiment(data), lr_jax.Grid(learning_rates=(0.03,),
                                                           seeds=(0, 1)))
  model = export.refit(result)
  g, est = result.groups[0], model.estimate
  ds, test = g.dataset, g.splits.test_idx
  runs = export._chosen_rows(result, 0)
  runs_T = np.mean([(result.predict(int(i), ds.x[test]) - ds.y[test]) ** 2 for i in runs], 0)
  refit_T = (model.predict(ds.x[test]) - ds.y[test]) ** 2
  assert est["metric"] == "loss" and est["test"] == pytest.approx(refit_T.mean(), rel=1e-6)
  assert est["selection_gap"] == pytest.approx(runs_T.mean() - result.best[0].mean, rel=1e-5)
  assert est["refit_gain"] == pytest.approx(runs_T.mean() - refit_T.mean(), rel=1e-5)
  d = refit_T - runs_T
  assert est["refit_gain_ci95"] == pytest.approx(
      scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)), rel=1e-4)
