"""Aggregates, selection and the printed table, on hand-made sweeps whose right answer is known."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest

import lr_jax
from lr_jax import results
from lr_jax.errors import ConfigError
from lr_jax.io import jsonable

LRS = (1e-4, 1e-3, 1e-2, 1e-1)


def _sweep(scores_SxP, diverged_SxP=None, lrs=LRS, *, classification=True, select="best"):
  """A one-group `SweepResult` with these scores: S seeds (fold 0) x P learning rates."""
  scores_SxP = np.asarray(scores_SxP, np.float64)
  num_streams, num_points = scores_SxP.shape
  if diverged_SxP is None:
    diverged_SxP = np.zeros_like(scores_SxP, bool)
  n = num_streams * num_points
  metric = "best_val_accuracy" if classification else "best_val_loss"
  rows = {
      "group": np.zeros(n, int), "learning_rate": np.tile(np.asarray(lrs, float), num_streams),
      "seed": np.repeat(np.arange(num_streams), num_points), "fold": np.zeros(n, int),
      "best_val_accuracy": np.full(n, np.nan), "best_val_loss": np.full(n, 0.3),
      "diverged": np.asarray(diverged_SxP, bool).reshape(n), "epochs_run": np.full(n, 10),
      "epochs_to_target": np.zeros(n, int), "steps_to_target": np.zeros(n, int)}
  rows[metric] = scores_SxP.reshape(n)
  group = types.SimpleNamespace(
      dataset=types.SimpleNamespace(task="classification" if classification else "regression"),
      points={"learning_rate": np.asarray(lrs, float)},
      experiment=types.SimpleNamespace(optim=types.SimpleNamespace(name="adam")))
  aggregates = results.aggregate(rows, [group], [], score="best_epoch")
  config = {"experiments": [{"optim": {"name": "adam", "schedule": "constant"},
                             "model": {"name": "mlp", "hidden": [8]},
                             "data": {"dataset": "digits"}}],
            "grid": {}, "target": None, "select": select}
  return results.SweepResult(rows=rows, history={}, aggregates=aggregates,
                             best=results.best_points(aggregates, 1, select), config=config,
                             timings=[], params=[], select=select)


def _line(table, lr):
  return next(line for line in table.splitlines() if line.split()[:1] == [f"{lr:.3g}"])


def test_every_aggregate_carries_its_counts():
  diverged = np.zeros((3, 4), bool)
  diverged[1, 3] = True
  result = _sweep([[0.80, 0.90, 0.91, 0.95], [0.82, 0.92, 0.93, 0.60], [0.81, 0.91, 0.95, 0.94]],
                  diverged)
  counts = [(a["n"], a["n_diverged"], a["n_total"], a["diverged"]) for a in result.aggregates]
  assert counts == [(3, 0, 3, 0)] * 3 + [(2, 1, 3, 1)]
  assert [a["eligible"] for a in result.aggregates] == [True, True, True, False]


def test_a_diverged_point_is_never_best_and_the_table_says_why():
  # 0.1 has the highest mean of its survivors (0.945) but one seed diverged there.
  diverged = np.zeros((3, 4), bool)
  diverged[1, 3] = True
  result = _sweep([[0.80, 0.90, 0.91, 0.95], [0.82, 0.92, 0.93, 0.30], [0.81, 0.91, 0.95, 0.94]],
                  diverged)
  top = result.aggregates[3]
  # The diverged run's pre-divergence value (0.30) is not in the mean.
  assert top["mean"] == pytest.approx(0.945) and top["n"] == 2
  assert result.best[0]["learning_rate"] == 1e-2
  assert top["p_best"] == 0.0 and not top["not_worse"] and not top["selected"]
  table = results.format_table(result)
  assert "diverged 1/3, ineligible; mean over 2 survivors" in _line(table, 1e-1)
  assert _line(table, 1e-2).endswith(" *") and not _line(table, 1e-1).endswith("*")
  assert "best learning rate: 0.01 " in table


def test_no_eligible_point_means_no_best_learning_rate():
  diverged = np.zeros((2, 4), bool)
  diverged[0, :] = True  # Seed 0 diverged at every learning rate.
  result = _sweep([[0.5, 0.6, 0.7, 0.8], [0.8, 0.9, 0.95, 0.9]], diverged)
  assert math.isnan(result.best[0]["learning_rate"])
  table = results.format_table(result)
  assert "best learning rate: none eligible (every grid point had a diverged run)" in table
  assert " *" not in table


def test_a_point_where_every_run_diverged_has_no_mean():
  diverged = np.zeros((3, 4), bool)
  diverged[:, 3] = True
  result = _sweep([[0.80, 0.90, 0.91, 0.89], [0.82, 0.92, 0.93, 0.89],
                   [0.81, 0.91, 0.95, 0.89]], diverged)
  gone = result.aggregates[3]
  assert (gone["n"], gone["n_diverged"], gone["n_total"]) == (0, 3, 3)
  assert math.isnan(gone["mean"]) and math.isnan(gone["ci95"])
  line = _line(results.format_table(result), 1e-1)
  assert "n/a" in line and "diverged 3/3, ineligible" in line and "±" not in line


def test_one_run_has_no_interval_and_prints_n_1():
  result = _sweep([[0.80, 0.90, 0.93, 0.85]])
  assert all(a["n"] == 1 and math.isnan(a["ci95"]) and math.isnan(a["std"])
             for a in result.aggregates)
  table = results.format_table(result)
  assert "± 0" not in table and "±" not in table.split("best learning rate")[1]
  assert "0.9300, n=1" in _line(table, 1e-2)
  assert "best learning rate: 0.01 (rule best: highest mean), mean val_accuracy 0.9300 " \
         "(n=1, no interval)" in table
  assert "no test could run" in table
  # One stream resamples only to itself: no P(best) either.
  assert all(math.isnan(a["p_best"]) for a in result.aggregates) and "P(best) 1" not in table


def test_table_shows_n_interval_and_p_best():
  result = _sweep([[0.80, 0.90, 0.93, 0.85], [0.82, 0.92, 0.95, 0.86],
                   [0.84, 0.88, 0.94, 0.84]])
  table = results.format_table(result)
  assert "n" in table.splitlines()[2].split() and "P(best)" in table
  best = result.aggregates[2]
  assert f"{best['mean']:.4f} ± {best['ci95']:.4f}" in _line(table, 1e-2)
  assert _line(table, 1e-2).split()[4:6] == ["3", "1.00"]  # n, P(best): 0.01 wins every stream.
  assert "(95% CI ± " in table and "; n=3 runs), P(best) 1.00" in table


def test_all_points_tie_so_nothing_is_resolved():
  # Constant features: every learning rate predicts the majority class.
  result = _sweep(np.full((3, 4), 0.25))
  assert math.isnan(result.best[0]["learning_rate"])
  np.testing.assert_allclose([a["p_best"] for a in result.aggregates], [0.25] * 4)
  assert "best learning rate: unresolved: all 4 eligible points tie at 0.2500" in \
      results.format_table(result)


def test_one_se_picks_the_largest_learning_rate_within_one_se():
  # Means 0.80, 0.95, 0.96, 0.949; the SE at 0.01 is 0.02 / sqrt(3) = 0.0115: 0.1 is within it.
  scores = np.array([[0.80, 0.94, 0.94, 0.939], [0.80, 0.95, 0.96, 0.949],
                     [0.80, 0.96, 0.98, 0.959]])
  best = _sweep(scores)
  one_se = _sweep(scores, select="one_se")
  assert best.best[0]["learning_rate"] == 1e-2
  assert one_se.best[0]["learning_rate"] == 1e-1
  assert one_se.aggregates[2]["se"] == pytest.approx(0.02 / math.sqrt(3))
  table = results.format_table(one_se)
  assert "(rule one_se: largest LR within one SE of the highest mean, 0.9600 at 0.01)" in table
  assert _line(table, 1e-1).endswith(" *")
  with pytest.raises(ConfigError, match="select must be one of best, one_se, got 'min'"):
    results.best_points(best.aggregates, 1, "min")


def test_p_best_and_not_worse_in_aggregates_and_summary():
  scores = np.array([[0.80, 0.90, 0.93, 0.70], [0.82, 0.94, 0.92, 0.72],
                     [0.81, 0.92, 0.95, 0.71], [0.80, 0.93, 0.92, 0.70]])
  diverged = np.zeros((4, 4), bool)
  diverged[2, 0] = True
  result = _sweep(scores, diverged)
  agg = result.aggregates
  assert sum(a["p_best"] for a in agg if a["eligible"]) == pytest.approx(1.0)
  assert agg[0]["p_best"] == 0.0  # ineligible
  assert 0.0 < agg[1]["p_best"] < 1.0 and 0.0 < agg[2]["p_best"] < 1.0
  # 0.01 (mean 0.93) is the best; 0.001 (0.9225) is not significantly worse; 0.1 (0.7075) is.
  assert [a["not_worse"] for a in agg] == [False, True, True, False]
  summary = json.loads(json.dumps(results.summary_dict(result)))
  assert summary["config"]["select"] == "best"
  assert [a["p_best"] for a in summary["aggregates"]] == [a["p_best"] for a in agg]
  assert [a["n_total"] for a in summary["aggregates"]] == [4] * 4
  table = results.format_table(result)
  assert "2 of 3 eligible, lr 0.001, 0.01" in table


def test_loss_scores_for_regression():
  result = _sweep([[0.5, 0.3, 0.2, 0.9], [0.6, 0.35, 0.25, 0.8]], classification=False)
  assert result.best[0]["learning_rate"] == 1e-2
  assert result.aggregates[2]["p_best"] == 1.0


def test_tiny_real_sweep_with_a_diverging_learning_rate(tmp_path):
  experiment = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits", train_size=120),
      model=lr_jax.ModelConfig(hidden=(8,)),
      train=lr_jax.TrainConfig(epochs=3, patience=0))
  grid = lr_jax.Grid(learning_rates=(3e-3, 3e-2, 1e3), seeds=(0, 1))
  with pytest.raises(ConfigError, match="select must be one of"):
    lr_jax.run_sweep(experiment, grid, select="median")
  result = lr_jax.run_sweep(experiment, grid, select="one_se")
  by_lr = {a["learning_rate"]: a for a in result.aggregates}
  assert by_lr[1e3]["n_diverged"] == 2 and not by_lr[1e3]["eligible"]
  assert result.best[0]["learning_rate"] in (3e-3, 3e-2)
  assert result.select == "one_se" and result.config["select"] == "one_se"
  assert sum(by_lr[lr]["p_best"] for lr in (3e-3, 3e-2)) == pytest.approx(1.0)
  assert "diverged 2/2, ineligible" in _line(results.format_table(result), 1e3)
  lr_jax.write_outputs(result, str(tmp_path))
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  assert summary["best"][0]["learning_rate"] == result.best[0]["learning_rate"]
  assert {"n", "n_diverged", "n_total", "p_best", "not_worse", "eligible"} <= \
      set(summary["aggregates"][0])


def test_select_by_a_user_metric_picks_the_best_mean_in_its_direction():
  # Two seeds x four learning rates; accuracy favours lr 1e-1, the user metric "cost" (lower
  # is better) lr 1e-3, "gain" (higher is better) lr 1e-2.
  acc_SxP = np.array([[0.5, 0.6, 0.7, 0.9], [0.5, 0.6, 0.7, 0.9]])
  cost_SxP = np.array([[3.0, 1.0, 2.0, 4.0], [3.0, 1.2, 2.0, 4.0]])
  gain_SxP = np.array([[0.1, 0.2, 0.8, 0.3], [0.2, 0.2, 0.6, 0.3]])
  base = _sweep(acc_SxP)
  rows = dict(base.rows, best_val_cost=cost_SxP.reshape(-1), best_val_gain=gain_SxP.reshape(-1))
  metric = lambda higher: lr_jax.Metric(lambda out, y, w: 0.0, higher_is_better=higher)
  group = types.SimpleNamespace(
      dataset=types.SimpleNamespace(task="classification"),
      points={"learning_rate": np.asarray(LRS, float)},
      experiment=types.SimpleNamespace(optim=types.SimpleNamespace(name="adam")),
      metrics=(("cost", metric(False)), ("gain", metric(True))))
  picked = {}
  for select_by in (None, "val_cost", "val_gain"):
    aggregates = results.aggregate(rows, [group], [], select_by, "best_epoch")
    best = results.best_points(aggregates, 1)[0]
    picked[select_by] = best["learning_rate"]
    assert best["metric"] == (select_by or "val_accuracy")
    assert [a["metric_means"]["val_cost"] for a in aggregates] == pytest.approx([3.0, 1.1, 2.0, 4.0])
  assert picked == {None: 1e-1, "val_cost": 1e-3, "val_gain": 1e-2}
  assert results.aggregate(rows, [group], [], "val_cost", "best_epoch")[1]["mean"] == pytest.approx(1.1)


def test_aggregates_are_typed_records_read_by_attribute_and_by_summary_key():
  result = _sweep([[0.90, 0.95, 0.80, 0.10], [0.92, 0.94, 0.85, 0.12]],
                  diverged_SxP=[[False, False, False, True], [False, False, False, False]])
  a = result.aggregates[1]
  assert isinstance(a, results.Aggregate) and a.learning_rate == 1e-3 and a.n == 2
  assert a.mean == pytest.approx(0.945) and a.selected and a is result.best[0]
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.mean = 1.0  # A result's numbers are not edited in place.
  bad = result.aggregates[3]
  assert (bad.n_diverged, bad["diverged"], bad.eligible, bad.n) == (1, 1, False, 1)
  # The same record in summary.json's layout, as before: readers by key keep working.
  summary = json.loads(json.dumps(results.summary_dict(result)))
  assert summary["aggregates"][1] == jsonable(dict(a))
  assert summary["aggregates"][1]["mean"] == a["mean"] == a.mean
  assert summary["best"][0]["learning_rate"] == 1e-3
  # A group without a selection is a record too, with the reason.
  none = _sweep([[0.5, 0.6]], [[True, True]], lrs=(0.1, 1.0)).best[0]
  assert isinstance(none, results.Aggregate) and "diverged" in none.reason
  assert dict(none) == {"group": 0, "learning_rate": none.learning_rate, "mean": none.mean,
                        "ci95": none.ci95, "n": 0, "reason": none.reason}


def test_weight_decay_is_a_typed_hyperparameter_of_each_record():
  result = _sweep([[0.9, 0.8]], lrs=(0.01, 0.1))
  assert result.aggregates[0].hparams == () and result.aggregates[0].value("learning_rate") == 0.01
  rows = dict(result.rows, weight_decay=np.array([0.0, 1e-4]))
  group = types.SimpleNamespace(
      dataset=types.SimpleNamespace(task="classification"),
      points={"learning_rate": np.array([0.01, 0.1]), "weight_decay": np.array([0.0, 1e-4])},
      experiment=types.SimpleNamespace(optim=types.SimpleNamespace(name="adamw")))
  entries = results.aggregate(rows, [group], ["weight_decay"], score="best_epoch")
  assert [a.value("weight_decay") for a in entries] == [0.0, 1e-4]
  assert [a["weight_decay"] for a in entries] == [0.0, 1e-4]


def test_the_table_describes_each_group_from_its_experiment_not_the_json():
  result = _sweep([[0.9, 0.8]], lrs=(0.01, 0.1))
  assert "group 0: adam / constant / mlp(8) on digits" in results.format_table(result)
  exp = lr_jax.Experiment(model=lr_jax.ModelConfig(hidden=(32, 16)),
                          optim=lr_jax.OptimConfig(name="sgd", schedule="cosine"))
  result.groups = [types.SimpleNamespace(experiment=exp, model=None,
                                         dataset=types.SimpleNamespace(name="wine"))]
  result.config["experiments"][0]["optim"]["name"] = "edited"  # JSON: not what ran.
  assert "group 0: sgd / cosine / mlp(32,16) on wine" in results.format_table(result)


def test_the_selection_names_the_best_point_by_every_number_that_varies():
  # Learning rate x weight decay: 2 x 2 points, 3 seeds; (0.01, wd 0.1) is best on every seed.
  lrs, wds = np.array([1e-3, 1e-3, 1e-2, 1e-2]), np.array([0.0, 0.1, 0.0, 0.1])
  scores_SxP = np.array([[0.80, 0.81, 0.90, 0.95], [0.81, 0.80, 0.91, 0.96],
                         [0.79, 0.82, 0.92, 0.97]])
  n = scores_SxP.size
  rows = {"group": np.zeros(n, int), "learning_rate": np.tile(lrs, 3),
          "weight_decay": np.tile(wds, 3), "seed": np.repeat(np.arange(3), 4),
          "fold": np.zeros(n, int), "best_val_accuracy": scores_SxP.reshape(n),
          "best_val_loss": np.full(n, 0.3), "diverged": np.zeros(n, bool),
          "epochs_run": np.full(n, 10), "epochs_to_target": np.zeros(n, int),
          "steps_to_target": np.zeros(n, int)}
  group = types.SimpleNamespace(
      dataset=types.SimpleNamespace(task="classification"),
      points={"learning_rate": lrs, "weight_decay": wds},
      experiment=types.SimpleNamespace(optim=types.SimpleNamespace(name="adamw")))
  aggregates = results.aggregate(rows, [group], ["weight_decay"], score="best_epoch")
  config = {"experiments": [{"optim": {"name": "adamw", "schedule": "constant"},
                             "model": {"name": "mlp", "hidden": [8]},
                             "data": {"dataset": "digits"}}],
            "grid": {}, "target": None, "select": "best"}
  result = results.SweepResult(rows=rows, history={}, aggregates=aggregates,
                               best=results.best_points(aggregates, 1, "best"), config=config,
                               timings=[], params=[], select="best")
  table = results.format_table(result)
  assert "best point: lr 0.01, weight_decay 0.1 (rule best" in table, table
  assert "best learning rate" not in table
  assert "1 of 4 eligible, lr 0.01, weight_decay 0.1" in table, table
