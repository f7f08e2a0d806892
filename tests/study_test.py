"""The study's numbers and sentences, on synthetic tables whose right conclusion is known."""

import dataclasses
import math
import re
import types

import numpy as np
import pytest

from lr_jax import article, results, study
from lr_jax.config import log_spaced
from lr_jax.errors import ConfigError

GRID = log_spaced(10 ** -4.5, 10 ** 0.5, 11)  # half decades from 3.2e-5; GRID[1] = 1e-4
SIZES = (25, 50, 100, 200, 400, 1437)


def _peaked(best_lr, peak=0.9, drop=0.05):
  """Accuracy falling by `drop` per half decade away from `best_lr`: only the best is within a
  point of itself."""
  return [peak - drop * abs(math.log10(lr / best_lr)) * 2 for lr in GRID]


def _row(optimizer="adam", width=16, schedule="constant", n=25, best_lr=1e-3, peak=0.9,
         drop=0.05, ci=0.004, diverged=None, tolerance=0.01):
  return study.cell_row(
      optimizer=optimizer, width=width, schedule=schedule, train_size=n, runs=6, steps=2 * n,
      lrs=GRID, mean=_peaked(best_lr, peak, drop), ci95=[ci] * len(GRID),
      diverged=diverged or [0] * len(GRID), reference_lr=1e-4, tolerance=tolerance)


def _table(best_lr_of, peak_of=lambda *a: 0.9, optimizers=("sgd", "adam"), widths=(16, 128),
           schedules=("constant", "exponential"), sizes=SIZES):
  return [_row(o, w, s, n, best_lr_of(o, w, s, n), peak_of(o, w, s, n))
          for o in optimizers for w in widths for s in schedules for n in sizes]


def _sentence(sentences, start):
  found = [s for s in sentences if s.startswith(start)]
  assert len(found) == 1, (start, sentences)
  return found[0]


def test_cell_row_finds_best_reference_and_near_range():
  mean = [0.10, 0.895, 0.50, 0.90, 0.95, 0.945, 0.60, 0.99, 0.30, 0.20, 0.10]
  diverged = [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]  # the highest mean diverged: not eligible
  row = study.cell_row(optimizer="sgd", width=16, schedule="constant", train_size=100, runs=6,
                       steps=200, lrs=GRID[::-1], mean=mean[::-1], ci95=[0.01] * 11,
                       diverged=diverged[::-1], reference_lr=1e-4, tolerance=0.01)
  assert row.lrs == tuple(sorted(GRID))
  assert row.best_lr == pytest.approx(GRID[4]) and row.best_mean == pytest.approx(0.95)
  assert row.ref_mean == pytest.approx(0.895)  # 1e-4 = GRID[1]
  assert (row.near_lo, row.near_hi, row.num_near) == (pytest.approx(GRID[4]),
                                                      pytest.approx(GRID[5]), 2)
  assert not row.best_at_edge
  assert _row(best_lr=GRID[-1]).best_at_edge and _row(best_lr=GRID[0]).best_at_edge


def test_cell_row_without_the_reference_or_any_finite_point():
  row = study.cell_row(optimizer="sgd", width=16, schedule="constant", train_size=100, runs=1,
                       steps=1, lrs=(1e-3, 1e-2), mean=(math.nan, math.nan), ci95=(0, 0),
                       diverged=(1, 1), reference_lr=1e-4, tolerance=0.01)
  assert math.isnan(row.best_lr) and math.isnan(row.ref_mean) and row.num_near == 0
  assert study.conclusion([row]) == ["No cell has a finite result: nothing can be concluded."]


@pytest.mark.parametrize("ratio,text", [
    (10.0, "10x larger"), (0.1, "10x smaller"), (1.0, "unchanged"), (10 ** 0.5, "3.2x larger"),
    (10 ** -1.5, "32x smaller"), (100.0, "100x larger"), (math.nan, "n/a")])
def test_format_ratio(ratio, text):
  assert study.format_ratio(ratio) == text


def test_best_lr_growing_tenfold_with_data_is_reported_as_10x():
  # adam's best LR is 1e-3 at n <= 100 and 1e-2 above; sgd's stays at 0.1.
  table = _table(lambda o, w, s, n: (1e-3 if n <= 100 else 1e-2) if o == "adam" else 0.1)
  sentences = study.conclusion(table)
  adam = _sentence(sentences, "For adam, from n=25 to n=1437")
  assert adam.count("1e-3 -> 0.01 (10x larger)") == 4  # every width x schedule line
  sgd = _sentence(sentences, "For sgd")
  assert sgd.count("0.1 -> 0.1 (unchanged)") == 4 and "10x" not in sgd
  overall = _sentence(sentences, "Over the 8 (optimizer, width, schedule) lines")
  assert "smaller than at n=1437 in 4, the same in 4 and larger in 0" in overall


def test_reference_lr_never_near_the_best_says_0_of_n():
  table = _table(lambda *a: 1e-2)  # 1e-4 is two decades away: 0.2 below the best
  sentences = study.conclusion(table)
  n = len(table)
  ref = _sentence(sentences, "lr=1e-4 is within 1 point")
  assert ref.startswith(f"lr=1e-4 is within 1 point (0.01 accuracy) of the best learning rate "
                        f"in 0 of {n} cells")
  assert "(0 of 8 at n=25, 0 of 8 at n=1437)" in ref
  assert (f"1e-4 or smaller in 0 of {n} cells; its median over all cells is 0.01"
          in _sentence(sentences, "The best learning rate is"))
  assert sentences[0].endswith(f"was 1e-4 or smaller) in 0 of {n} cells.")


def test_reference_lr_best_only_with_little_data():
  table = _table(lambda o, w, s, n: 1e-4 if n <= 50 else 1e-3)
  sentences = study.conclusion(table)
  assert sentences[0] == ("A learning rate of 1e-4 or smaller was necessary (every learning "
                          "rate within 1 point of the best was 1e-4 or smaller) in 16 of 48 "
                          "cells.")
  assert ("in 16 of 48 cells (8 of 8 at n=25, 0 of 8 at n=1437)"
          in _sentence(sentences, "lr=1e-4 is within"))
  assert "1e-4 or smaller in 16 of 48 cells" in _sentence(sentences, "The best learning rate is")
  assert "1e-4 -> 1e-3 (10x larger)" in _sentence(sentences, "For adam")


def test_schedule_width_resolution_and_edge_counts():
  # exponential is 2 points better everywhere; MLP(128)'s best LR is a half decade lower;
  # sgd's best sits at the top of the grid.
  def best(o, w, s, n):
    lr = GRID[-1] if o == "sgd" else 1e-3
    return lr / 10 ** 0.5 if (w == 128 and o != "sgd") else lr

  table = _table(best, peak_of=lambda o, w, s, n: 0.92 if s == "exponential" else 0.90)
  sentences = study.conclusion(table)
  schedule = _sentence(sentences, "Exponential decay beats the constant schedule")
  assert "in 24 of 24 cells and loses by more than 1 point in 0" in schedule
  assert "its best learning rate is larger in 0 and smaller in 0" in schedule
  width = _sentence(sentences, "MLP(128)'s best learning rate is smaller than MLP(16)'s")
  assert "in 12 of 24 paired cells, the same in 12 and larger in 0" in width
  last = sentences[-1]
  assert last.startswith("In 0 of 48 cells another learning rate's mean lies inside")
  assert "edge of the grid in 24 cells" in last  # every sgd cell: 2 widths x 2 schedules x 6
  assert _sentence(sentences, "The learning rates within 1 point") == (
      "The learning rates within 1 point of the best span a median of 0 decades at n=25 and "
      "0 decades at n=1437.")
  assert "at most 50 optimizer steps at n=25 and 2874 at n=1437" in _sentence(
      sentences, "Every cell had the same epoch budget")


def test_near_best_range_in_decades():
  # A flat curve: every point within a point of the best, 5 decades of grid.
  flat = study.cell_row(optimizer="adam", width=16, schedule="constant", train_size=25, runs=6,
                        steps=50, lrs=GRID, mean=[0.9] * 11, ci95=[0.01] * 11, diverged=[0] * 11,
                        reference_lr=1e-4, tolerance=0.01)
  one = _row(n=1437, drop=0.008)  # half-decade neighbours 0.008 below: a decade in all
  one = dataclasses.replace(one, near_hi=one.near_hi * (1 - 1e-12))  # float error in a grid
  sentence = _sentence(study.conclusion([flat, one]), "The learning rates within")
  assert "a median of 5 decades at n=25 and 1 decade at n=1437" in sentence


def test_unresolved_best_is_counted():
  wide_ci = [_row(n=n, ci=0.2) for n in (25, 1437)]  # neighbours 0.05 below, CI 0.2
  narrow_ci = [_row(n=n, ci=0.01) for n in (25, 1437)]
  assert study.conclusion(wide_ci)[-1].startswith("In 2 of 2 cells another")
  assert study.conclusion(narrow_ci)[-1].startswith("In 0 of 2 cells another")


def test_conclusion_of_a_one_size_table_has_no_size_claims():
  sentences = study.conclusion([_row(n=100), _row(n=100, optimizer="sgd")])
  assert not [s for s in sentences if "from n=" in s or s.startswith("Over the")]
  assert _sentence(sentences, "lr=1e-4 is within") == (
      "lr=1e-4 is within 1 point (0.01 accuracy) of the best learning rate in 0 of 2 cells.")


def test_every_number_in_the_conclusion_comes_from_the_table():
  # The same table shape with other numbers must give other sentences.
  a = " ".join(study.conclusion(_table(lambda *x: 1e-4)))
  b = " ".join(study.conclusion(_table(lambda *x: 1e-2)))
  assert a != b
  numbers = lambda s: re.findall(r"\d+ of \d+", s)
  assert numbers(a) != numbers(b)


def test_study_table_is_markdown_with_one_line_per_cell():
  table = study.study_table([_row(n=25), _row(n=1437, best_lr=GRID[-1])])
  lines = table.splitlines()
  assert len(lines) == 4 and all(line.count(" | ") == 9 for line in lines)
  assert "| adam | MLP(16) | constant | 25 | 6 | 1e-3 | 0.900 ± 0.004 | 0.800 ± 0.004 |" in table
  assert "3.2 (edge)" in lines[3]


def test_estimate_remaining_recovers_overhead_and_rate():
  # Groups cost 2 s of compilation plus 1 us per unit of work; the first chunk is a fifth.
  def timing(work, executed=1.0):
    run = 2.0 + 1e-6 * work * executed
    return {"work": work, "chunk_fraction": 0.2, "executed_fraction": executed,
            "compile_s": 2.0 + 1e-6 * work * 0.2, "run_s": run}

  done = [timing(1e6), timing(4e6)]
  assert study.estimate_remaining(done, [2e6, 3e6]) == pytest.approx(2 * 2.0 + 5.0)
  assert math.isnan(study.estimate_remaining([], [1e6]))
  # Early exits shorten the forecast in proportion.
  half = [timing(1e6, 0.5), timing(4e6, 0.5)]
  assert study.estimate_remaining(half, [2e6]) == pytest.approx(2.0 + 1.0)


def test_keras_batch():
  assert study.keras_batch(32, 12, 13) == 0      # smaller than a batch: one full batch
  assert study.keras_batch(32, 900, 901) == 32
  assert study.keras_batch(32, 31, 33) == 31     # between the folds' sizes: the smallest


def test_compare_to_reference_by_hand():
  lr = np.repeat([1e-4, 1e-3, 1e-2], 3)
  seed = np.tile([0, 1, 2], 3)
  score = np.array([0.80, 0.82, 0.78, 0.90, 0.93, 0.90, 0.95, 0.20, 0.99])
  diverged = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0], bool)
  c = article.compare_to_reference(lr, seed, score, score - 0.01, diverged, 1e-4)
  assert c.lrs == (1e-4, 1e-3, 1e-2)
  assert c.best_lr == 1e-3  # 1e-2 had a divergence: not eligible
  assert (c.rank, c.num_eligible) == (2, 2)
  diff = results.mean_ci(np.array([0.10, 0.11, 0.12]))
  assert c.diff_mean == pytest.approx(diff[0]) and c.diff_ci == pytest.approx(diff[2])
  assert c.ref_mean == pytest.approx(0.80) and c.final_mean[0] == pytest.approx(0.79)
  sentence = article.comparison_sentence(article.ARTICLE_CONFIGS["A"], c)
  assert "ranks 2 of 2 learning rates (1 more excluded" in sentence
  assert "the best is lr=1e-3 (10x larger) at 0.910 ± " in sentence
  assert "significant at 95%." in sentence and "not significant" not in sentence
  assert ("The learning rates within 0.01 of the best run from 1e-3 to 1e-3 (1 of 3); the "
          "article's is not among them.") in sentence
  healthy = np.where(diverged, 0.97, score)  # 1e-2 without its divergence: the best, at the edge
  edge = article.compare_to_reference(lr, seed, healthy, healthy, np.zeros(9, bool), 1e-4)
  assert edge.best_lr == 1e-2 and "(100x larger; the top of the sweep: the optimum may" in (
      article.comparison_sentence(article.ARTICLE_CONFIGS["A"], edge))
  best = article.compare_to_reference(lr, seed, score, score, diverged, 1e-3)
  assert best.rank == 1 and "it is the best learning rate" in article.comparison_sentence(
      article.ARTICLE_CONFIGS["B"], best)


def test_mean_curves_average_the_runs_still_training():
  nan = np.nan
  sweep = types.SimpleNamespace(
      rows={"learning_rate": np.array([1e-3, 1e-3, 1e-2, 1e-2])},
      history={"val_loss": np.array([[2.0, 1.0, nan], [4.0, 3.0, 2.0],
                                     [1.0, nan, nan], [3.0, nan, nan]])})
  lrs, curves = article.mean_curves(sweep)
  np.testing.assert_allclose(lrs, [1e-3, 1e-2])
  np.testing.assert_allclose(curves, [[3.0, 2.0, 2.0], [2.0, nan, nan]])


def test_article_grids_hold_the_article_rate_exactly():
  lrs = article.article_lrs(1e-4, 13, 100.0)
  assert len(lrs) == 13 and lrs[6] == 1e-4
  assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1e-2)
  assert lrs == tuple(sorted(lrs))


@pytest.mark.parametrize("changes,needles", [
    ({"optimizers": ("adam", "adamax")}, ["adamax", "sgd", "rmsprop"]),
    ({"schedules": ("cosine",)}, ["cosine", "constant, exponential"]),
    ({"learning_rates": (1e-3, 1e-2)}, ["reference_lr", "0.001, 0.01"]),
    ({"widths": (0,)}, ["width", "0"]),
    ({"train_sizes": ()}, ["train_sizes", "empty"]),
    ({"folds": 1}, ["folds", "1"]),
    ({"final_lr_fraction": 1.5}, ["final_lr_fraction", "1.5"]),
])
def test_study_config_refuses_bad_values(changes, needles):
  with pytest.raises(ConfigError) as e:
    study.StudyConfig(**changes)
  for needle in needles:
    assert needle in str(e.value)


@pytest.mark.parametrize("changes,needles", [
    ({"train_sizes": (25, 5000)}, ["5000", "1437"]),
    ({"train_sizes": (15,)}, ["15", "20"]),  # a class with one example: no 2-fold split
    ({"train_sizes": (1437, None)}, ["1437"]),  # "all" is 1437: the same cell twice
    ({"dataset": "linear"}, ["linear", "regression"]),
])
def test_plan_study_refuses_what_the_data_cannot_give(changes, needles):
  with pytest.raises(ConfigError) as e:
    study.plan_study(study.StudyConfig.quick(**changes))
  for needle in needles:
    assert needle in str(e.value)


def test_plan_study_caps_folds_and_batches_and_scales_the_decay():
  plan = study.plan_study(study.StudyConfig.quick(train_sizes=(25, 400), optimizers=("adam",)))
  small, large = plan.cells
  assert (small.train_size, small.folds, small.batch_size) == (25, 2, 0)  # 2 of some classes
  assert (large.train_size, large.folds, large.batch_size) == (400, 2, 32)
  assert large.steps == 7 * 20  # ceil(200 / 32) steps x 20 epochs
  for cell in plan.cells:  # the decay reaches 0.1x at the last step
    assert 0.9 ** (cell.steps / cell.decay_steps) == pytest.approx(0.1, rel=0.35)
  assert len(plan.groups) == 2
  np.testing.assert_allclose(sorted(set(plan.groups[0].points["decay_rate"])), [0.9, 1.0])


def test_study_rows_split_the_schedules_of_one_group():
  cfg = study.StudyConfig.quick(learning_rates=(1e-4, 1e-3), train_sizes=(25,),
                                optimizers=("adam",))
  cell = study.Cell("adam", 128, 25, 2, 0, 20, 1)
  plan = types.SimpleNamespace(config=cfg, cells=(cell,))

  def entry(lr, rate, mean, diverged=0):
    return {"group": 0, "learning_rate": lr, "decay_rate": rate, "n_total": 4, "mean": mean,
            "ci95": 0.01, "diverged": diverged}

  # The constant schedule is the decay rate 1.0 of the group's exponential schedule.
  aggregates = [entry(1e-4, 1.0, 0.5), entry(1e-4, 0.9, 0.4), entry(1e-3, 1.0, 0.8),
                entry(1e-3, 0.9, 0.7, 1)]
  rows = study.study_rows(plan, types.SimpleNamespace(aggregates=aggregates))
  assert [(r.schedule, r.num_near, r.diverged) for r in rows] == [
      ("constant", 1, (0, 0)), ("exponential", 1, (0, 1))]
  for r in rows:
    assert r.lrs == pytest.approx((1e-4, 1e-3)) and r.runs == 4
  assert rows[0].best_lr == pytest.approx(1e-3) and rows[1].best_lr == 1e-4  # 1e-3 diverged once


@pytest.mark.parametrize("changes,needles", [
    ({"configs": ("A", "D")}, ["'D'", "A, B, C"]),
    ({"configs": ()}, ["empty", "A, B, C"]),
    ({"num_lrs": 12}, ["12", "odd", "13"]),
    ({"span": 1.0}, ["span", "1.0"]),
    ({"seeds": 0}, ["seeds", "0"]),
    ({"train_size": 5000}, ["5000", "1437"]),
    ({"dataset": "linear"}, ["linear", "regression"]),
])
def test_examples_refuse_bad_values_before_compiling(changes, needles):
  with pytest.raises(ConfigError) as e:
    article.plan_examples(article.ExamplesConfig(**changes))
  for needle in needles:
    assert needle in str(e.value)


def test_article_configs_are_the_articles():
  a, b, c = (article.ARTICLE_CONFIGS[k] for k in "ABC")
  assert (a.width, a.optimizer, a.learning_rate, a.epochs, a.patience, a.schedule) == (
      128, "adam", 1e-4, 100, 0, "constant")
  assert (b.width, b.optimizer, b.learning_rate, b.epochs, b.patience, b.schedule) == (
      64, "rmsprop", 1e-3, 50, 5, "constant")
  assert (c.width, c.optimizer, c.learning_rate, c.epochs, c.patience, c.schedule,
          c.decay_steps, c.decay_rate) == (128, "adam", 1e-3, 50, 0, "exponential", 1000, 0.9)
  plan = article.plan_examples(article.ExamplesConfig(seeds=2, num_lrs=5, max_epochs=7))
  exps = [g.experiment for g in plan.groups]
  assert [e.train.epochs for e in exps] == [7, 7, 7]
  assert [e.train.batch_size for e in exps] == [32, 32, 32]
  assert exps[2].optim.decay_steps == 1000 and exps[1].train.patience == 5
  np.testing.assert_allclose(plan.groups[0].points["learning_rate"],
                             [1e-6, 1e-5, 1e-4, 1e-3, 1e-2])
