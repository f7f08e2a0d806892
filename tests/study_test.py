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
from lr_jax.study import cells

GRID = log_spaced(10 ** -4.5, 10 ** 0.5, 11)  # half decades from 3.2e-5; GRID[1] = 1e-4
SIZES = (25, 50, 100, 200, 400, 1437)
# The article's cells alone: no label-noise or regularisation arm.
PLAIN = dict(regularisation=(), label_noise=(0.0,))
BUDGETS = ("epochs", "steps", "converge")  # every budget, for the tests that check each


def _quick(**changes):
  """`StudyConfig.quick` with its arms (when on) at the first training size: an arm's sizes
  must be training sizes, and quick's (400 and 25) need not be among a test's."""
  first = changes.get("train_sizes", (25, 400))[:1]
  return study.StudyConfig.quick(**{"regularisation_sizes": first, "noise_sizes": first,
                                    **changes})


def _peaked(best_lr, peak=0.9, drop=0.05):
  """Accuracy falling by `drop` per half decade away from `best_lr`: only the best is within a
  point of itself."""
  return [peak - drop * abs(math.log10(lr / best_lr)) * 2 for lr in GRID]


def _row(optimizer="adam", width=16, schedule="constant", n=25, best_lr=1e-3, peak=0.9,
         drop=0.05, ci=0.004, diverged=None, tolerance=0.01, budget="epochs", noise=0.0,
         unfinished=None, **extra):
  """A synthetic cell; the points within `noise` of the best are not significantly worse."""
  mean = _peaked(best_lr, peak, drop)
  p = [1.0 if math.isclose(lr, best_lr) else 0.0 for lr in GRID]
  return study.cell_row(
      optimizer=optimizer, width=width, schedule=schedule, train_size=n, runs=6, steps=2 * n,
      lrs=GRID, mean=mean, ci95=[ci] * len(GRID),
      diverged=diverged or [0] * len(GRID), reference_lr=1e-4, tolerance=tolerance,
      budget=budget, p_best=p, not_worse=[m >= max(mean) - noise - 1e-9 for m in mean],
      unfinished=unfinished, **extra)


def _table(best_lr_of, peak_of=lambda *a: 0.9, optimizers=("sgd", "adam"), widths=(16, 128),
           schedules=("constant", "exponential"), sizes=SIZES, budget="epochs", noise=0.0):
  return [_row(o, w, s, n, best_lr_of(o, w, s, n), peak_of(o, w, s, n), budget=budget,
               noise=noise)
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
  # Without a not-worse set from the aggregates, the best alone is in it.
  assert row.not_worse_lrs == pytest.approx((GRID[4],))


def test_cell_row_keeps_the_best_and_drops_ineligible_points_from_the_not_worse_set():
  row = study.cell_row(optimizer="sgd", width=16, schedule="constant", train_size=100, runs=6,
                       steps=200, lrs=(1e-4, 1e-3, 1e-2), mean=(0.8, 0.9, 0.95),
                       ci95=(0.01,) * 3, diverged=(0, 0, 1), reference_lr=1e-4, tolerance=0.01,
                       p_best=(0.3, 0.7, 0.0), not_worse=(True, False, True))
  assert row.best_lr == pytest.approx(1e-3) and row.best_p == pytest.approx(0.7)
  assert row.not_worse_lrs == pytest.approx((1e-4, 1e-3))
  assert study.small_lr_ok(row, 1e-4) and not study.small_lr_needed(row, 1e-4)


def test_cell_row_without_the_reference_or_any_finite_point():
  row = study.cell_row(optimizer="sgd", width=16, schedule="constant", train_size=100, runs=1,
                       steps=1, lrs=(1e-3, 1e-2), mean=(math.nan, math.nan), ci95=(0, 0),
                       diverged=(1, 1), reference_lr=1e-4, tolerance=0.01)
  assert math.isnan(row.best_lr) and math.isnan(row.ref_mean) and row.num_near == 0
  assert study.conclusion([row]) == (
      ("No cell has a finite result: nothing can be concluded.",), ())


@pytest.mark.parametrize("ratio,text", [
    (10.0, "10x larger"), (0.1, "10x smaller"), (1.0, "unchanged"), (10 ** 0.5, "3.2x larger"),
    (10 ** -1.5, "32x smaller"), (100.0, "100x larger"), (math.nan, "n/a")])
def test_format_ratio(ratio, text):
  assert study.format_ratio(ratio) == text


def _three_budgets():
  """Small learning rates win only under the fixed-steps budget, and only with little data."""
  return (_table(lambda *a: 1e-2, budget="epochs")
          + _table(lambda o, w, s, n: 1e-4 if n <= 50 else 1e-3, budget="steps")
          + _table(lambda *a: 1e-3, budget="converge"))


def test_small_lrs_winning_only_under_the_steps_budget_is_said_per_budget():
  answer, findings = study.conclusion(_three_budgets())
  assert answer[0] == (
      "A learning rate of 1e-4 or smaller was necessary (every learning rate not significantly "
      "worse than the best was that small) in 0 of 48 cells under fixed epochs, 16 of 48 cells "
      "under fixed steps, 0 of 48 cells trained to convergence.")
  assert answer[1].startswith("It was not significantly worse than the best in 0 of 48 cells "
                              "under fixed epochs, 16 of 48 cells under fixed steps, 0 of 48")
  # A fixed budget's answer is about that budget: a small learning rate may be under-trained.
  assert answer[2] == (
      "Under fixed epochs (50–2874 steps a run) the answer is about that budget: a small "
      "learning rate can be under-trained there. Under fixed steps (50–2874 steps a run) the "
      "answer is about that budget: a small learning rate can be under-trained there.")
  # The budgets compared cell by cell (same line and size), not by their shares: the steps
  # budget differs from the reference (fixed epochs, met first) at n=25 and 50 of 8 lines.
  assert answer[3] == ("The budget changes this answer in 16 of 96 pairs of cells run under two "
                       "budgets (the same line and size).")
  assert _sentence(findings, "Fixed steps: a learning rate <= 1e-4") == (
      "Fixed steps: a learning rate <= 1e-4 is not significantly worse than the best in 16 of "
      "48 cells (8 of 8 at n=25, 0 of 8 at n=1437; 6 runs per point); a claim about this "
      "budget (50–2874 steps a run): a small learning rate can be under-trained there.")
  for budget in ("Fixed epochs", "To convergence"):
    assert "in 0 of 48 cells (0 of 8 at n=25, 0 of 8 at n=1437; 6 runs per point)" in _sentence(
        findings, f"{budget}: a learning rate <= 1e-4")
  assert "a claim about" not in _sentence(findings, "To convergence: a learning rate <= 1e-4")
  # The best LR grows tenfold with the data only under the steps budget; elsewhere the sets
  # overlap (the same best at both ends): undecided, not ranked.
  assert _sentence(findings, "Fixed steps: at n=25") == (
      "Fixed steps: at n=25 the best learning rate is larger than at n=1437 in 0 of 8 "
      "(optimizer, width, schedule) lines and smaller in 8; in the other 0 the not-worse sets "
      "overlap, so the data cannot decide the direction (6 runs per point).")
  assert "larger than at n=1437 in 0 of 8 (optimizer, width, schedule) lines and smaller in " \
         "0; in the other 8" in _sentence(findings, "Fixed epochs: at n=25")


def test_the_same_answer_under_every_budget_is_said_once():
  table = [dataclasses.replace(r, budget=b) for b in ("epochs", "steps") for r in
           _table(lambda *a: 1e-4)]
  answer, _ = study.conclusion(table)
  assert answer[1].startswith("It was not significantly worse than the best in 48 of "
                              "48 cells under fixed epochs, 48 of 48 cells under fixed steps")
  assert answer[3] == ("The budget does not change this answer in any of 48 pairs of cells run "
                       "under two budgets (the same line and size).")


def test_larger_best_lr_with_less_data_counts_only_where_the_sets_do_not_overlap():
  # At n=25 the best is 0.1, at n=1437 1e-3; with wide not-worse sets (2 decades each way)
  # the two overlap in every line.
  best = lambda o, w, s, n: 0.1 if n == 25 else 1e-3
  narrow = study.conclusion(_table(best, sizes=(25, 1437)))[1]
  wide = study.conclusion(_table(best, sizes=(25, 1437), noise=0.45))[1]
  assert "larger than at n=1437 in 8 of 8 (optimizer, width, schedule) lines and smaller in 0;" \
      in _sentence(narrow, "Fixed epochs: at n=25")
  undecided = ("in 0 of 8 (optimizer, width, schedule) lines and smaller in 0; in the other 8 "
               "the not-worse sets overlap, so the data cannot decide")
  assert undecided in _sentence(wide, "Fixed epochs: at n=25")


def test_the_optimizer_changing_the_answer_is_said_with_its_counts():
  # A product table: the reference is each factor's first value met (sgd, MLP(16), constant).
  table = _table(lambda o, w, s, n: 1e-4 if o == "adam" else 0.1)
  findings = study.conclusion(table)[1]
  assert _sentence(findings, "Optimizer: adam") == (
      "Optimizer: adam against the reference line's sgd (24 pairs of cells, same size and other "
      "factors; 6 runs per point): a learning rate <= 1e-4 is within the noise of the best in "
      "24 of 24 with adam and 0 with sgd, so the answer changes at 24 of 24 pairs (at n=25, "
      "50, 100, 200, 400, 1437); with adam the best learning rate is larger than with sgd at "
      "0, smaller at 24, and the not-worse sets overlap at 0.")
  assert ("in 12 of 24 with MLP(128) and 12 with MLP(16), so the answer changes at 0 of 24 "
          "pairs; with MLP(128) the best learning rate is larger than with MLP(16) at 0, "
          "smaller at 0, and the not-worse sets overlap at 24.") in _sentence(
              findings, "Width: MLP(128) against the reference line's MLP(16)")
  assert "changes at 0 of 24 pairs" in _sentence(findings, "Schedule: exponential")


def _union(best_lr_of, sizes=SIZES, budgets=("converge", "steps"), unfinished_of=None):
  """A union-design table in plan order: the reference line (adam MLP(128) constant) and its
  exponential schedule under every budget; sgd and MLP(16) at the reference budget alone."""
  lines = [("adam", 128, s, b) for s in ("constant", "exponential") for b in budgets]
  lines += [("sgd", 128, "constant", budgets[0]), ("adam", 16, "constant", budgets[0])]
  unfinished_of = unfinished_of or (lambda *a: None)
  return [_row(o, w, s, n, best_lr_of(o, w, s, b, n), budget=b,
               unfinished=unfinished_of(o, w, s, b, n)) for o, w, s, b in lines for n in sizes]


def test_the_union_design_pairs_each_factor_with_the_reference_line_by_size():
  # Adam's best is 1e-4 up to n=50, 1e-3 above; SGD's is 0.1 everywhere. At n=25 three SGD
  # runs at 3.2e-5 were still improving at the cap: that cell is left out, with its pair.
  best = lambda o, w, s, b, n: 0.1 if o == "sgd" else 1e-4 if n <= 50 else 1e-3
  left = [3] + [0] * 10
  table = _union(best, unfinished_of=lambda o, w, s, b, n: left if (o, n) == ("sgd", 25)
                 else None)
  assert cells.reference_line(table) == ("adam", 128, "constant", "converge")
  answer, findings = study.conclusion(table)
  assert answer[0] == (
      "A learning rate of 1e-4 or smaller was necessary (every learning rate not significantly "
      "worse than the best was that small) in 6 of 23 cells trained to convergence (1 cell "
      "left out: a learning rate <= 1e-4 there was still improving at the 50-step cap: "
      "under-trained, not worse), 4 of 12 cells under fixed steps.")
  assert _sentence(findings, "Optimizer: sgd") == (
      "Optimizer: sgd against the reference line's adam (5 pairs of cells, same size and other "
      "factors; 6 runs per point): a learning rate <= 1e-4 is within the noise of the best in "
      "0 of 5 with sgd and 1 with adam, so the answer changes at 1 of 5 sizes (at n=50); with "
      "sgd the best learning rate is larger than with adam at 5, smaller at 0, and the "
      "not-worse sets overlap at 0; 1 cell left out with the cell it pairs with: a learning "
      "rate <= 1e-4 there was still improving at the 50-step cap: under-trained, not worse.")
  assert "(6 pairs of cells" in _sentence(findings, "Width: MLP(16)")
  assert "changes at 0 of 6 sizes;" in _sentence(findings, "Width: MLP(16)")
  # The schedule and the budget vary on the reference line: pairs under two budgets and two
  # schedules, so more pairs than sizes.
  assert "(12 pairs of cells" in _sentence(findings, "Schedule: exponential")
  budget = _sentence(findings, "Budget: fixed steps against the reference line's to convergence")
  assert ("in 4 of 12 under fixed steps and 4 trained to convergence, so the answer changes "
          "at 0 of 12 pairs;") in budget
  # Each line's move is counted on its own ends: 4 lines under convergence, 2 under steps.
  assert "in 0 of 4 (optimizer, width, schedule) lines and smaller in 3" in _sentence(
      findings, "To convergence: at n=25")
  assert "in 0 of 2 (optimizer, width, schedule) lines and smaller in 2" in _sentence(
      findings, "Fixed steps: at n=25")


def test_unconverged_points_leave_their_cells_out_and_say_why():
  # adam: at n=25 1e-3 is best and 1e-4 was still improving (under-trained: left out); at
  # n=1437 1e-4 alone is best and 0.01 was still improving (maybe not needed: left out).
  # sgd: at n=25 the best (0.01) was still improving: the cell is decided (1e-4 is worse and
  # converged), but its line's move is not counted.
  at = lambda i, k: [k if j == i else 0 for j in range(11)]
  rows = [_row("adam", n=25, best_lr=1e-3, budget="converge", unfinished=at(1, 3)),
          _row("adam", n=1437, best_lr=1e-4, budget="converge", unfinished=at(5, 2)),
          _row("sgd", n=25, best_lr=1e-2, budget="converge", unfinished=at(5, 1)),
          _row("sgd", n=1437, best_lr=1e-3, budget="converge")]
  assert [cells.decided(r, 1e-4) for r in rows] == [False, False, True, True]
  assert [cells.undecided_why(r, 1e-4) for r in rows] == ["small", "large", "", ""]
  assert rows[2].best_unconverged and not rows[0].best_unconverged
  answer, findings = study.conclusion(rows)
  assert answer[0].endswith(
      "in 0 of 2 cells trained to convergence (2 cells left out, a point still improving at "
      "the cap (50–2874 steps): in 1 a learning rate <= 1e-4 (under-trained, not worse), in 1 "
      "a larger one (the small one may not be needed)).")
  assert _sentence(findings, "To convergence: a learning rate <= 1e-4") == (
      "To convergence: a learning rate <= 1e-4 is not significantly worse than the best in 0 "
      "of 2 cells (0 of 1 at n=25, 0 of 1 at n=1437; 6 runs per point); 2 cells left out, a "
      "point still improving at the cap (50–2874 steps): in 1 a learning rate <= 1e-4 "
      "(under-trained, not worse), in 1 a larger one (the small one may not be needed).")
  assert _sentence(findings, "To convergence: at n=25") == (
      "To convergence: at n=25 the best learning rate is larger than at n=1437 in 1 of 1 "
      "(optimizer, width, schedule) lines and smaller in 0; in the other 0 the not-worse sets "
      "overlap, so the data cannot decide the direction (6 runs per point); 1 line left out: "
      "a best point at one end was still improving at the cap (50–2874 steps).")
  assert _sentence(findings, "To convergence: 6 of") == (
      "To convergence: 6 of 264 runs (2%) were still improving at the cap (50–2874 steps), at "
      "3 of 44 points (in 3 of 4 cells; 1 of those points at a learning rate <= 1e-4): those "
      "points are unconverged, and no finding rests on them.")
  # 1e-4 within the noise of a larger best that was still improving: not "not worse" yet.
  chasing = _row("adam", n=400, best_lr=1e-3, budget="converge", noise=0.15,
                 unfinished=at(3, 2))
  assert cells.small_lr_ok(chasing, 1e-4) and chasing.best_unconverged
  assert not cells.decided(chasing, 1e-4) and cells.undecided_why(chasing, 1e-4) == "best"
  answer, _ = study.conclusion([chasing, rows[3]])
  assert "1 cell left out: the best learning rate, larger than 1e-4, was still improving at " \
         "the 800-step cap, so the small one within its noise may yet fall behind" in \
         answer[0], answer[0]
  # Every line's best unconverged at an end: the move is not said at all.
  stuck = [rows[2], _row("sgd", n=1437, best_lr=1e-3, budget="converge", unfinished=at(4, 1))]
  assert _sentence(study.conclusion(stuck)[1], "To convergence: how the best") == (
      "To convergence: how the best learning rate moves with the size is not said: the 1 line "
      "left out, a best point at one end was still improving at the cap (50–2874 steps).")
  done = [_row(n=n, budget="converge") for n in (25, 1437)]
  assert study.conclusion(done)[1][-1] == (
      "To convergence: 0 of 132 runs (0%) were still improving at the cap (50–2874 steps), so "
      "every run converged (stopped early or diverged).")
  # Under a fixed budget nothing is unconverged: running to the end is the design.
  fixed = dataclasses.replace(rows[0], budget="steps")
  assert cells.decided(fixed, 1e-4) and not any(fixed.unconverged)


def _regularised_table():
  """The regularisation arm on adam MLP(128) at n=25 and 400, both schedules: without
  regularisation the best learning rate is 1e-4 at n=25 and 1e-3 at n=400; with dropout and
  weight decay tuned it is 1e-2 at n=25 (3 points better, the plain best significantly worse)
  and unchanged at n=400. The factor line's own cells (best 0.01) are not the arm's."""
  arm = dict(arm="regularisation")
  rows = []
  for s in ("constant", "exponential"):
    rows += [_row("adam", 128, s, 25, 1e-2, 0.70), _row("adam", 128, s, 400, 1e-2, 0.90)]
    rows += [_row("adam", 128, s, 25, 1e-4, 0.80, **arm),
             _row("adam", 128, s, 400, 1e-3, 0.95, **arm),
             _row("adam", 128, s, 25, 1e-2, 0.83, regularisation="tuned",
                  best_setting=(("dropout_rate", 0.5), ("weight_decay", 0.1)), plain_worse=True,
                  **arm),
             _row("adam", 128, s, 400, 1e-3, 0.95, regularisation="tuned", noise=0.06,
                  best_setting=(("dropout_rate", 0.0), ("weight_decay", 0.0)),
                  plain_worse=False, **arm)]
  return rows


def test_regularisation_moving_the_best_lr_at_small_n_is_said_with_its_numbers():
  answer, findings = study.conclusion(_regularised_table(), settings=9)
  assert _sentence(findings, "Fixed epochs, regularisation") == (
      "Fixed epochs, regularisation (adam MLP(128) constant/exponential, n=25, 400; 4 cells, 6 "
      "runs per point; dropout and weight decay tuned, each learning rate at the best of its 9 "
      "settings): against no regularisation the best learning rate with it tuned is larger in "
      "2 of 4 cells and smaller in 0; in the other 2 the not-worse sets overlap, so the data "
      "cannot decide (at n=25: constant: 1e-4 without, 0.01 with (dropout_rate 0.5, "
      "weight_decay 0.1); exponential: 1e-4 without, 0.01 with (dropout_rate 0.5, "
      "weight_decay 0.1)).")
  gain = _sentence(findings, "Fixed epochs: tuning the regularisation")
  assert gain.startswith("Fixed epochs: tuning the regularisation changed the validation "
                         "accuracy by a median of +1.5 points (from +0.0 to +3.0; the tuned "
                         "score is the best of its 9 settings, so optimistic)")
  # Taking the best of 9 settings: the "significantly worse" test runs at 5% / 9.
  assert ("the best point without it is significantly worse than the best with it in 2 of 4 "
          "cells (a test Bonferroni-corrected for taking the best setting: 5% / 9 = 0.56%; at "
          "n=25: constant: 0.800 ± 0.004 without, 0.830 ± 0.004 with;") in gain
  # Unknown settings: said, not invented.
  unknown = _sentence(study.conclusion(_regularised_table())[1],
                      "Fixed epochs: tuning the regularisation")
  assert "the best of its settings" in unknown and "5% / the number of settings" in unknown
  # 1e-4 is the arm's plain best at n=25 only; with regularisation it is worse than 1e-2.
  assert _sentence(findings, "Fixed epochs: a learning rate <= 1e-4 is within the noise of the "
                             "best in 2 of 4 cells without") == (
      "Fixed epochs: a learning rate <= 1e-4 is within the noise of the best in 2 of 4 cells "
      "without regularisation and 0 of 4 with it tuned.")
  # The arm's rows do not enter the article's counts: the factor line's 4 cells.
  assert "in 0 of 4 cells (0 of 2 at n=25, 0 of 2 at n=400" in _sentence(
      findings, "Fixed epochs: a learning rate <= 1e-4 is not significantly worse")


def _noise_arm(budget="steps", last_peak=0.6, last_ci=0.004, last_best=1e-4):
  """The label-noise arm on adam MLP(128) at n=50 and 200, both scores, and the factor line's
  own cells (best 0.01, not the arm's clean cells). At the best epoch noise 0.4 costs 10
  points and leaves the best at 1e-3 (the not-worse sets overlap); at the last epoch it costs
  29 points and the best falls to `last_best`."""
  noisy = dict(arm="label noise", label_noise=0.4)
  clean = dict(arm="label noise")
  rows = []
  for n in (50, 200):
    rows += [_row("adam", 128, n=n, best_lr=1e-2, budget=budget),
             _row("adam", 128, n=n, best_lr=1e-3, peak=0.9, budget=budget, **clean),
             _row("adam", 128, n=n, best_lr=1e-3, peak=0.8, budget=budget, **noisy),
             _row("adam", 128, n=n, best_lr=1e-3, peak=0.89, budget=budget, score="last_epoch",
                  **clean),
             _row("adam", 128, n=n, best_lr=last_best, peak=last_peak, ci=last_ci,
                  budget=budget, score="last_epoch", **noisy)]
  return rows


def test_label_noise_is_said_at_both_scores_each_against_its_own_clean_row():
  answer, findings = study.conclusion(_noise_arm())
  assert _sentence(findings, "Fixed steps, label noise 0.4") == (
      "Fixed steps, label noise 0.4 (n=50, 200; 2 cells, 6 runs per point): at the "
      "clean-validation best epoch, the median accuracy is 0.900 clean and 0.800 noisy, and "
      "the best learning rate under noise is larger in 0, smaller in 0, the not-worse sets "
      "overlapping in 2 of 2 cells; at the last epoch, the median accuracy is 0.890 clean and "
      "0.600 noisy, and the best learning rate under noise is larger in 0, smaller in 2, the "
      "not-worse sets overlapping in 0 of 2 cells.")
  assert _sentence(findings, "Fixed steps, label noise: the best learning rate's move") == (
      "Fixed steps, label noise: the best learning rate's move is stated only where the "
      "not-worse sets do not overlap: scored at the clean-validation best epoch, the data "
      "cannot decide the direction in any of its 2 cells; scored at the last epoch, it is "
      "smaller under noise in 2 of 2 cells (the not-worse sets overlap in the rest).")
  assert _sentence(findings, "Fixed steps, label noise: the best epoch's accuracy").startswith(
      "Fixed steps, label noise: the best epoch's accuracy minus the last epoch's (each at its "
      "own best learning rate) is a median of +1.0 points with clean labels, +20.0 at noise "
      "0.4 (2 cells);")
  assert _sentence(findings, "Fixed steps, label noise: a learning rate <= 1e-4") == (
      "Fixed steps, label noise: a learning rate <= 1e-4 is within the noise of the best at "
      "the clean-validation best epoch in 0 of 2 cells with clean labels, 0 of 2 at noise 0.4; "
      "at the last epoch in 0 of 2 cells with clean labels, 2 of 2 at noise 0.4.")
  # The arm's rows leave the article's answer alone: the factor line's 2 cells.
  assert answer[0].endswith("in 0 of 2 cells under fixed steps.")
  # A best point still improving at the cap leaves its pair out of the move, and says so.
  converge = _noise_arm("converge")
  converge[4] = dataclasses.replace(converge[4], unfinished=tuple(
      3 if math.isclose(lr, 1e-4) else 0 for lr in GRID))
  assert converge[4].best_unconverged
  sentence = _sentence(study.conclusion(converge)[1], "To convergence, label noise 0.4")
  assert sentence.endswith("larger in 0, smaller in 1, the not-worse sets overlapping in 0 of 1 "
                           "cell; 1 pair left out: a best point was still improving at the "
                           "cap.")


def test_the_held_out_test_score_beside_the_winners_validation_score():
  rows = [dataclasses.replace(_row(n=25, schedule=s, peak=0.8), test_mean=0.8 - gap,
                              test_ci=0.01, test_n=360)
          for s, gap in (("constant", 0.1), ("exponential", 0.04))]
  rows.append(dataclasses.replace(_row(n=25, peak=0.85, regularisation="tuned",
                                       arm="regularisation"),
                                  test_mean=0.7, test_ci=0.01, test_n=360))
  # The noise arm's clean cell is the same runs as the line's: not counted twice.
  rows.append(dataclasses.replace(rows[0], arm="label noise"))
  rows.append(_row(n=400))  # no test set there
  sentence = _sentence(study.conclusion(rows)[1], "Fixed epochs: at n=25 the chosen")
  assert sentence == (
      "Fixed epochs: at n=25 the chosen learning rate's validation accuracy (median 0.800) "
      "overstates the same runs' accuracy on 360 held-out test examples (median 0.730) by a "
      "median of 7.0 points (gap from +4.0 to +10.0 across 2 cells, 6 runs per point; the "
      "test interval lies wholly below the validation one in 2); with the regularisation "
      "tuned too (more points to choose from) the median gap is +15.0 points.")
  assert not any("at n=400 the chosen" in f for f in study.conclusion(rows)[1])


def test_selection_uncertainty_and_edges_are_counted():
  rows = [_row(n=25, noise=0.11), _row(n=1437, best_lr=GRID[-1])]
  sentence = _sentence(study.conclusion(rows)[1], "Fixed epochs: the best learning rate has")
  # n=25: 1e-3 and its two half-decade neighbours each side (0.1 below): 5 points, 2 decades;
  # n=1437: the best alone.
  assert sentence == (
      "Fixed epochs: the best learning rate has a median P(best) of 1.00, and a median of 3 "
      "learning rates spanning 1 decade are not significantly worse than it, with 6 runs per "
      "point; the best lies at the edge of the grid in 1 of 2 cells.")


def test_conclusion_of_a_one_size_table_has_no_size_claims():
  _, findings = study.conclusion([_row(n=100), _row(n=100, optimizer="sgd")])
  assert not [s for s in findings if "n=" in s]
  assert _sentence(findings, "Fixed epochs: a learning rate <= 1e-4") == (
      "Fixed epochs: a learning rate <= 1e-4 is not significantly worse than the best in 0 of "
      "2 cells (6 runs per point); a claim about this budget (200 steps a run): a small "
      "learning rate can be under-trained there.")


def test_every_number_in_the_conclusion_comes_from_the_table():
  # The same table shape with other numbers must give other sentences.
  a = study.conclusion(_table(lambda *x: 1e-4)).text()
  b = study.conclusion(_table(lambda *x: 1e-2)).text()
  numbers = lambda s: re.findall(r"\d+ of \d+", s)
  assert numbers(a) != numbers(b)


def _stance(stances, topic):
  found = [s for s in stances if s.topic.startswith(topic)]
  assert len(found) == 1, (topic, stances)
  return found[0]


def test_literature_agrees_disagrees_or_cannot_tell_from_the_table():
  from lr_jax.study import literature
  large = lambda rows: _stance(literature.stances(rows), "Large learning rates").stance
  converge = lambda best, noise=0.0: [_row(n=n, best_lr=best, budget="converge", noise=noise)
                                      for n in (25, 400)]
  # Trained to convergence, 1e-4 significantly worse everywhere (best 0.01): agrees; 1e-4
  # alone within the noise of the best: disagrees; wide not-worse sets: cannot tell.
  assert large(converge(1e-2)) == "agrees"
  assert large(converge(1e-4)) == "disagrees"
  assert large(converge(1e-3, noise=0.45)) == "cannot tell"
  # Under a fixed budget a small rate's lower score can be too few steps: cannot tell.
  steps_only = [dataclasses.replace(r, budget="steps") for r in converge(1e-2)]
  assert large(steps_only) == "cannot tell"
  assert "no cell was trained to convergence" in _stance(
      literature.stances(steps_only), "Large").evidence

  # The horizon: the same line and size under 5000 (to convergence) and 300 steps (fixed).
  def horizon(long_best, short_best, noise=0.0):
    return ([dataclasses.replace(r, steps=5000) for r in converge(long_best, noise)]
            + [dataclasses.replace(_row(n=n, best_lr=short_best, budget="steps", noise=noise),
                                   steps=300) for n in (25, 400)])
  falls = lambda rows: _stance(literature.stances(rows), "The optimal learning rate falls")
  assert falls(horizon(1e-3, 1e-2)).stance == "agrees"
  assert falls(horizon(1e-2, 1e-3)).stance == "disagrees"
  assert falls(horizon(1e-3, GRID[4], noise=0.45)).stance == "cannot tell"
  assert falls(horizon(1e-3, 1e-2)).evidence.startswith(
      "with the longer budget (to convergence, up to 5000 steps, against fixed steps, up to "
      "300) the best learning rate is smaller in 2 and larger in 0 of 2 pairs of cells")
  assert falls(converge(1e-3)).stance == "cannot tell"  # one budget: nothing to compare

  # Memorisation, under fixed steps: the last epoch loses 20 points under noise, 1 clean.
  memo = lambda rows: _stance(literature.stances(rows), "Noisy labels").stance
  assert memo(_noise_arm()) == "agrees"
  # No loss at the last epoch, with intervals tight enough to rule one out: disagrees.
  assert memo(_noise_arm(last_peak=0.8, last_best=1e-3)) == "disagrees"
  # A loss of 5 points inside intervals of 20: cannot tell.
  assert memo(_noise_arm(last_peak=0.75, last_ci=0.2, last_best=1e-3)) == "cannot tell"
  # Under to convergence early stopping ends a run near its best epoch: not evidence.
  assert memo(_noise_arm("converge")) == "cannot tell"

  fine = _stance(literature.stances([]), "Small learning rates in fine-tuning")
  assert fine.stance == "cannot tell" and "`experiments/fine_tune.py`" in fine.evidence
  text = literature.literature(converge(1e-2), reference_lr=1e-4)
  items = text.splitlines()
  assert len(items) == 4 and all(item.startswith("- **") for item in items)
  for cite in ("Li, Wei & Ma 2019", "Smith & Topin 2019", "Bjorck et al. 2025",
               "Mosbach, Andriushchenko & Klakow 2021", "Arpit et al. 2017"):
    assert cite in text
  assert "This study **agrees**: trained to convergence, every learning rate <= 1e-4 is " \
         "significantly worse than the best in 2 of 2 decided cells" in items[0]


def test_study_table_is_markdown_with_one_line_per_cell():
  tuned = dataclasses.replace(
      _row(n=25, label_noise=0.2, regularisation="tuned", arm="regularisation",
           best_setting=(("dropout_rate", 0.5), ("weight_decay", 0.01))),
      test_mean=0.85, test_ci=0.02, test_n=360)
  last = _row(n=25, budget="converge", arm="label noise", score="last_epoch",
              unfinished=[3 if math.isclose(lr, 1e-3) else 1 if lr < 1e-3 else 0
                          for lr in GRID])
  table = study.study_table([_row(n=25, noise=0.11), _row(n=1437, best_lr=GRID[-1]), tuned,
                             last])
  lines = table.splitlines()
  assert len(lines) == 6 and all(line.count(" | ") == 20 for line in lines)
  assert ("| fixed epochs | - | adam | MLP(16) | constant | 0 | off | best epoch | 25 | 25 | 6 | "
          "50 | 1e-3 | 0.900 ± 0.004 | - | 0.800 ± 0.004 | 1e-4 – 0.01 (5) | 1e-3: 1.00 | - | 0 "
          "| 0 |") in table
  assert "3.2 (edge)" in lines[3]
  assert ("| regularisation | adam | MLP(16) | constant | 0.2 | tuned: dropout_rate 0.5, "
          "weight_decay 0.01 | best epoch | 25 | 25 | 6 | 50 | 1e-3 | 0.900 ± 0.004 | "
          "0.850 ± 0.020 |") in lines[4]
  # The best point was still improving at the cap; so were the three below it: 4 points.
  assert ("| to convergence | label noise | adam | MLP(16) | constant | 0 | off | last epoch | "
          "25 | 25 | 6 | 50 | 1e-3 (unconverged) |") in lines[5]
  assert lines[5].endswith("| 4 | 6 | 0 |")


def test_figures_draw_the_lines_each_budget_has(tmp_path):
  from lr_jax import report
  from lr_jax.study import figures
  table = _union(lambda o, *a: 0.1 if o == "sgd" else 1e-3, sizes=(25, 400))
  table += [dataclasses.replace(r, arm="label noise") for r in table[:2]]  # not drawn
  drawn = figures.draw_figures(study.StudyConfig(), table, str(tmp_path))
  assert [name for name, _ in drawn] == [
      "best_lr_converge.png", "sensitivity_converge_adam.png", "sensitivity_converge_sgd.png",
      "best_lr_steps.png", "sensitivity_steps_adam.png"]
  for name, _ in drawn:
    assert report.is_png(str(tmp_path / name))
  lines = figures.lines_of([r for r in table if r.budget == "steps" and r.main])
  assert list(lines) == [("adam", 128, "constant"), ("adam", 128, "exponential")]
  # The x axis is rows trained per run: n = 25 in 2 folds trains on 12.5 rows on average.
  curve = figures.best_lr_curve([_row(n=25, folds=2), _row(n=400, folds=2)], "x")
  np.testing.assert_allclose(curve.x, [12.5, 200.0])


def test_estimate_remaining_recovers_overhead_and_rate():
  # Groups cost 2 s of compilation plus 1 us per unit of work.
  def timing(work, executed=1.0):
    return {"work": work, "executed_fraction": executed, "compile_s": 2.0,
            "run_s": 2.0 + 1e-6 * work * executed}

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
    ({"budgets": ("epochs", "forever")}, ["'forever'", "epochs, steps, converge"]),
    ({"steps": 0}, ["steps", "0"]),
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
    study.plan_study(_quick(**{**PLAIN, **changes}))
  for needle in needles:
    assert needle in str(e.value)


def test_plan_study_caps_folds_and_batches_and_scales_the_decay():
  plan = study.plan_study(_quick(train_sizes=(25, 400), optimizers=("adam",),
                                budgets=("epochs",), schedules=("constant", "exponential"),
                                **PLAIN))
  small, large = plan.cells
  assert (small.train_size, small.folds, small.batch_size) == (25, 2, 0)  # 2 of some classes
  assert (large.train_size, large.folds, large.batch_size) == (400, 2, 32)
  assert large.steps == 7 * 20  # ceil(200 / 32) steps x 20 epochs
  assert len(plan.groups) == 2
  for cell, group in zip(plan.cells, plan.groups):  # the decay reaches 0.1x at the last step
    assert group.experiment.optim.decay_steps == 1
    constant, exponential = sorted(set(group.points["decay_rate"]), reverse=True)
    assert constant == 1.0 and float(exponential) ** cell.steps == pytest.approx(0.1, rel=1e-5)


def test_plan_study_gives_each_budget_its_epochs_cap_and_patience():
  cfg = _quick(train_sizes=(25, 400), optimizers=("adam",), budgets=BUDGETS, steps=300,
               converge_steps=1000, **PLAIN)
  plan = study.plan_study(cfg)
  train = {(c.budget, c.train_size): g.experiment.train for c, g in zip(plan.cells, plan.groups)}
  assert len(plan.groups) == 6
  # Fixed epochs: today's. Fixed steps: capped at 300 updates, no early stopping; at n=25 one
  # full batch per epoch, at n=400 ceil(200 / 32) = 7 per epoch.
  assert (train["epochs", 400].epochs, train["epochs", 400].max_steps,
          train["epochs", 400].patience) == (20, 0, 5)
  assert (train["steps", 25].epochs, train["steps", 25].max_steps,
          train["steps", 25].patience) == (300, 300, 0)
  assert (train["steps", 400].epochs, train["steps", 400].max_steps) == (43, 300)
  # To convergence: whole epochs up to about 1000 steps, early stopping on.
  assert (train["converge", 400].epochs, train["converge", 400].max_steps,
          train["converge", 400].patience) == (143, 0, 5)
  steps = {(c.budget, c.train_size): c.steps for c in plan.cells}
  assert steps["steps", 25] == steps["steps", 400] == 300 and steps["converge", 400] == 1001
  # A size's three budgets, planned one after another, are one compiled program: two in all.
  from lr_jax import engine
  keys = [engine.programs._compile_key(g) for g in plan.groups]
  assert [c.train_size for c in plan.cells] == [25] * 3 + [400] * 3
  assert keys[0] == keys[1] == keys[2] != keys[3] == keys[4] == keys[5]


def test_a_sizes_calls_are_about_200_steps_and_its_budgets_share_their_length():
  # At n=25 an epoch is one step: calls as long as the shortest budget (50 epochs), not 200.
  # At n=400 (7 steps an epoch) ceil(200 / 7) = 29 epochs, under every budget's epochs.
  cfg = _quick(train_sizes=(25, 400), optimizers=("adam",), budgets=BUDGETS, epochs=50,
               steps=300, converge_steps=1000, **PLAIN)
  plan = study.plan_study(cfg)
  assert [c.train_size for c in plan.cells] == [25] * 3 + [400] * 3
  assert plan.call_epochs == (50,) * 3 + (29,) * 3
  assert study.epochs_per_call([20, 300], 1) == 20 and study.epochs_per_call([50], 45) == 5
  assert study.epochs_per_call([3], 1000) == 1


def test_a_budget_of_s_steps_gives_every_run_exactly_s_updates_and_the_report_all_budgets(
    tmp_path):
  # n=99 in 2 folds of 50 and 49 with batches of 49: the larger fold takes 2 updates an epoch,
  # the smaller 1 (its second batch is all padding). 7 steps is not a whole number of the larger
  # fold's epochs, so only a cap on updates gives both exactly 7.
  cfg = _quick(
      train_sizes=(99,), optimizers=("sgd",), widths=(8,), schedules=("constant",),
      learning_rates=(1e-4, 0.1), seeds=1, folds=2, batch_size=49, budgets=BUDGETS, epochs=3,
      steps=7, converge_steps=40, patience=2, **PLAIN)
  plan = study.plan_study(cfg)
  result = study.run_study(plan)
  rows = result.sweep.rows
  budget_N = np.array([plan.cells[g].budget for g in rows["group"]])
  fixed = (budget_N == "steps") & ~rows["diverged"].astype(bool)
  assert fixed.sum() == 4  # 2 folds x 2 learning rates
  np.testing.assert_array_equal(rows["steps_run"][fixed], 7)
  assert not rows["stopped_early"][budget_N == "steps"].any()
  # The fixed-epochs budget is not capped: the folds differ (3 x 2 and 3 x 1 updates).
  assert set(rows["steps_run"][(budget_N == "epochs") & (rows["stopped_early"] == 0)
                               & ~rows["diverged"].astype(bool)]) <= {3, 6}
  text = open(study.write_study_report(result, str(tmp_path))).read()
  for label in ("fixed epochs", "fixed steps", "to convergence"):
    assert f"*{label}*:" in text  # the setup says what each budget gives
    assert f"| {label} | - | sgd |" in text  # and the table has its cells
  assert "To convergence: " in text and "were still improving at the" in text
  assert [r.budget for r in result.rows] == ["epochs", "steps", "converge"]


def test_the_quick_study_reports_both_arms_at_both_scores_and_their_clean_cells_are_the_lines(
    tmp_path):
  # Both arms at n=25 under both budgets: 5 compile groups (the reference line's and the
  # noise arm's under each budget, the regularisation arm's under the reference budget).
  from lr_jax import engine
  cfg = _quick(
      train_sizes=(25,), widths=(8,), schedules=("constant",), learning_rates=(1e-4, 1e-2),
      seeds=1, epochs=3, steps=7, converge_steps=20, patience=2,
      regularisation={"dropout_rate": (0.0, 0.5), "weight_decay": (0.0, 0.1)},
      label_noise=(0.0, 0.4))
  result = study.run_study(study.plan_study(cfg))
  plan = result.plan
  assert [(c.budget, c.arm, c.family) for c in plan.cells] == [
      ("converge", "", ""), ("steps", "", ""), ("converge", "label noise", ""),
      ("steps", "label noise", ""), ("converge", "regularisation", "adamw")]
  assert all(c.tested for c in plan.cells)
  # A line's budgets share a program; each arm's axes make its own.
  assert len({engine.programs._compile_key(g) for g in plan.groups}) == 3
  keys = [(r.budget, r.arm, r.regularisation, r.label_noise, r.score) for r in result.rows]
  # The noise arm's runs scored twice: at the clean-validation best epoch, at the last.
  noise = [("label noise", "", v, s) for s in ("", "last_epoch") for v in (0.0, 0.4)]
  assert keys == ([("converge", "", "", 0.0, ""), ("steps", "", "", 0.0, "")]
                  + [(b, *k) for b in ("converge", "steps") for k in noise]
                  + [("converge", "regularisation", r, 0.0, "") for r in ("", "tuned")])
  text = open(study.write_study_report(result, str(tmp_path))).read()
  assert "To convergence, regularisation (adam MLP(8) constant, n=25; 1 cell" in text
  for label in ("Fixed steps", "To convergence"):
    sentence = text.split(f"{label}, label noise 0.4 (n=25; 1 cell")[1].split("\n")[0]
    assert "at the clean-validation best epoch, the median accuracy is" in sentence
    assert "at the last epoch, the median accuracy is" in sentence
    assert f"{label}: at n=25 the chosen learning rate's validation accuracy" in text
  assert "| tuned: dropout_rate" in text and "held-out test examples" in text
  assert "| last epoch |" in text
  for r in result.rows:  # the test set scores the restored (best-epoch) parameters only
    assert (r.test_n > 0 and 0 <= r.test_mean <= 1) if not r.score else math.isnan(r.test_mean)

  # Each arm is its own program (AdamW with dropout; label noise) on the reference line;
  # where its axes are 0 its runs must be the line's plain Adam runs, so that an arm's
  # contrasts pair with its own clean cell and that cell is the article's.
  m = result.sweep.rows
  assert plan.groups[0].experiment.optim.name == "adam"
  assert plan.groups[4].experiment.optim.name == "adamw"
  group = np.asarray(m["group"])
  line = group == 0
  clean = (group == 2) & (m["label_noise"] == 0)
  plain = (group == 4) & (m["weight_decay"] == 0) & (m["dropout_rate"] == 0)
  order = lambda sel: np.flatnonzero(sel)[np.lexsort((m["fold"][sel], m["learning_rate"][sel]))]
  i, j, k = order(line), order(clean), order(plain)
  assert len(i) == len(j) == len(k) == 4  # 2 learning rates x 2 folds
  for column in ("best_val_loss", "best_val_accuracy", "final_train_loss"):
    np.testing.assert_allclose(m[column][j], m[column][i], rtol=1e-5, err_msg=column)
    np.testing.assert_allclose(m[column][k], m[column][i], rtol=1e-5, err_msg=column)
  rows = {(r.budget, r.arm, r.regularisation, r.label_noise, r.score): r for r in result.rows}
  main = rows["converge", "", "", 0.0, ""]
  assert main.main and not rows["converge", "label noise", "", 0.0, ""].main
  for arm in ("label noise", "regularisation"):
    assert rows["converge", arm, "", 0.0, ""].mean == pytest.approx(main.mean)


def test_label_noise_changes_the_training_labels_and_leaves_validation_clean():
  from lr_jax import engine
  from lr_jax.config import DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig
  # At a learning rate of 1e-8 the model does not move in one epoch: every variant predicts
  # the same, so the validation loss differs only if the validation labels do.
  exp = Experiment(data=DataConfig(dataset="digits", train_size=200, folds=2),
                   model=ModelConfig(name="mlp", hidden=(8,)), optim=OptimConfig(name="adam"),
                   train=TrainConfig(epochs=1, batch_size=0, patience=0))
  result = engine.run_sweep(exp, engine.Grid(learning_rates=(1e-8,), seeds=(0, 1),
                                             hparams={"data.label_noise": (0.0, 0.2, 0.4)}))
  rows = result.rows
  by = lambda v, col: rows[col][np.isclose(rows["label_noise"], v)]
  clean = by(0.0, "final_train_loss")
  for v in (0.2, 0.4):
    np.testing.assert_allclose(by(v, "best_val_loss"), by(0.0, "best_val_loss"), rtol=1e-5)
    # The training loss is on the flipped labels: another loss in every run (an untrained
    # model is about as wrong on any label, so not a larger one).
    assert (np.abs(by(v, "final_train_loss") - clean) > 1e-3 * clean).all()


def test_study_rows_split_the_schedules_of_one_group():
  cfg = _quick(learning_rates=(1e-4, 1e-3), train_sizes=(25,), optimizers=("adam",),
               schedules=("constant", "exponential"))
  cell = study.Cell("adam", 128, 25, 2, 0, 20, 0.9, "converge", 20,  # 0.9 a step
                    schedules=("constant", "exponential"))
  plan = types.SimpleNamespace(config=cfg, cells=(cell,))

  def entry(lr, rate, mean, diverged=0):
    return {"group": 0, "learning_rate": lr, "decay_rate": rate, "n_total": 3, "mean": mean,
            "ci95": 0.01, "diverged": diverged, "eligible": diverged == 0,
            # The group's statistics, over both schedules: a cell must not use them.
            "p_best": 0.25, "not_worse": True}

  # The constant schedule is the decay rate 1.0 of the group's exponential schedule.
  aggregates = [entry(1e-4, 1.0, 0.5), entry(1e-4, 0.9, 0.4), entry(1e-3, 1.0, 0.81),
                entry(1e-3, 0.9, 0.7, 1)]
  # Runs: (learning rate, decay rate, seed, fold, accuracy, stopped early, diverged).
  runs = [(1e-4, 1.0, 0, 0, 0.50, 0, 0), (1e-4, 1.0, 0, 1, 0.52, 0, 0),
          (1e-4, 1.0, 1, 0, 0.48, 1, 0),
          (1e-3, 1.0, 1, 0, 0.81, 1, 0), (1e-3, 1.0, 0, 0, 0.80, 1, 0),
          (1e-3, 1.0, 0, 1, 0.82, 1, 0),
          (1e-4, 0.9, 0, 0, 0.40, 0, 0), (1e-4, 0.9, 0, 1, 0.41, 1, 0),
          (1e-4, 0.9, 1, 0, 0.39, 1, 0),
          (1e-3, 0.9, 0, 0, 0.70, 1, 0), (1e-3, 0.9, 0, 1, 0.70, 1, 0),
          (1e-3, 0.9, 1, 0, math.nan, 0, 1)]
  names = ("learning_rate", "decay_rate", "seed", "fold", "best_val_accuracy", "stopped_early",
           "diverged")
  columns = dict(zip(names, map(np.array, zip(*runs))))
  columns["group"] = np.zeros(len(runs), int)
  rows = study.study_rows(plan, types.SimpleNamespace(aggregates=aggregates, rows=columns))
  assert [(r.schedule, r.num_near, r.diverged) for r in rows] == [
      ("constant", 1, (0, 0)), ("exponential", 1, (0, 1))]
  for r in rows:
    assert r.lrs == pytest.approx((1e-4, 1e-3)) and r.runs == 3 and r.budget == "converge"
  assert rows[0].best_lr == pytest.approx(1e-3) and rows[1].best_lr == 1e-4  # 1e-3 diverged once
  # Each cell's own P(best) and not-worse set: 1e-3 beats 1e-4 in every stream of the constant
  # cell; the exponential cell's only eligible point is its best.
  assert rows[0].p_best == pytest.approx((0.0, 1.0)) and rows[0].not_worse == (False, True)
  assert rows[1].p_best == pytest.approx((1.0, 0.0)) and rows[1].not_worse == (True, False)
  assert rows[0].unfinished == (2, 0) and rows[1].unfinished == (1, 0)


def test_study_rows_split_the_regularisation_and_pick_each_lrs_best_setting():
  cfg = _quick(learning_rates=(1e-4, 1e-3), train_sizes=(25,), optimizers=("adam",),
               schedules=("constant",), regularisation={"dropout_rate": (0.0, 0.5)},
               label_noise=(0.0,))
  # Two cells of the regularisation arm (two sizes' groups, 0 and 1).
  cells_ = tuple(study.Cell("adam", 128, n, 2, 0, 20, 1, "epochs", 20, regularised=True,
                            family="adamw") for n in (25, 50))
  plan = types.SimpleNamespace(config=cfg, cells=cells_)
  # Accuracy per (group, learning rate, dropout) and stream (seeds 0-3, fold 0). Group 0:
  # dropout 0.5 helps at 1e-4 (0.70 vs 0.60) and hurts at 1e-3 (0.72 vs 0.80). Group 1: at
  # 1e-4 dropout 0.5 beats every plain point in every stream, by 4-5 points.
  acc = {(0, 1e-4, 0.0): (0.60, 0.61, 0.60, 0.61), (0, 1e-4, 0.5): (0.70, 0.72, 0.70, 0.72),
         (0, 1e-3, 0.0): (0.80, 0.81, 0.80, 0.81), (0, 1e-3, 0.5): (0.72, 0.71, 0.72, 0.71),
         (1, 1e-4, 0.0): (0.50, 0.52, 0.51, 0.50), (1, 1e-4, 0.5): (0.55, 0.56, 0.55, 0.55),
         (1, 1e-3, 0.0): (0.40, 0.41, 0.40, 0.41), (1, 1e-3, 0.5): (0.45, 0.44, 0.45, 0.44)}
  runs, aggregates = [], []
  for (group, lr, drop), scores in acc.items():
    for seed, a in enumerate(scores):
      runs.append((group, lr, 1.0, drop, seed, 0, a, 1, 0))
    aggregates.append({"group": group, "learning_rate": lr, "decay_rate": 1.0,
                       "dropout_rate": drop, "weight_decay": math.nan, "n_total": 4,
                       "mean": float(np.mean(scores)), "ci95": 0.05, "diverged": 0,
                       "eligible": True})
  names = ("group", "learning_rate", "decay_rate", "dropout_rate", "seed", "fold",
           "best_val_accuracy", "stopped_early", "diverged")
  columns = dict(zip(names, map(np.array, zip(*runs))))
  columns["weight_decay"] = np.full(len(runs), np.nan)  # another group's axis
  rows = study.study_rows(plan, types.SimpleNamespace(aggregates=aggregates, rows=columns))
  assert [(r.train_size, r.regularisation, r.arm) for r in rows] == [
      (25, "", "regularisation"), (25, "tuned", "regularisation"),
      (50, "", "regularisation"), (50, "tuned", "regularisation")]
  plain, tuned, plain_1, tuned_1 = rows
  # The arm's plain cell pairs with its tuned one; it is not a factor line's (main) cell.
  assert not plain.main and not tuned.main
  # Without regularisation: dropout 0 alone.
  assert plain.mean == pytest.approx((0.605, 0.805)) and plain.best_lr == pytest.approx(1e-3)
  assert plain_1.best_lr == pytest.approx(1e-4) and plain_1.mean == pytest.approx((0.5075,
                                                                                   0.405))
  # Tuned: each learning rate's best dropout; the best overall is still 1e-3 without dropout,
  # so the plain best is not worse than it.
  assert tuned.mean == pytest.approx((0.71, 0.805)) and tuned.best_lr == pytest.approx(1e-3)
  assert tuned.best_setting == (("dropout_rate", 0.0),) and tuned.plain_worse is False
  # Dropout 0.5 at 1e-4 beats every plain point in every stream: worse even at 5% / 2.
  assert tuned_1.best_setting == (("dropout_rate", 0.5),)
  assert tuned_1.best_lr == pytest.approx(1e-4) and tuned_1.plain_worse is True
  # P(best) sums over a learning rate's points; its not-worse flag is its chosen setting's.
  assert tuned.p_best == pytest.approx((0.0, 1.0))
  assert tuned_1.p_best == pytest.approx((1.0, 0.0))
  assert tuned_1.not_worse == (True, False)


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


def test_results_csv_names_the_constant_schedule_as_the_report_does():
  # One compile group holds both schedules as an exponential decay; decay rate 1.0 is the
  # constant one, and its rows say so (they said "exponential" before).
  from lr_jax.results import SweepResult
  from lr_jax.study import run as study_run
  sweep = SweepResult(rows={"decay_rate": np.array([1.0, 0.9, 1.0]),
                            "schedule": np.array(["exponential"] * 3, object)},
                      history={}, aggregates=[], best=[], config={}, timings=[], params=[])
  named = study_run._named_schedules(sweep)
  assert named.rows["schedule"].tolist() == ["constant", "exponential", "constant"]
  assert sweep.rows["schedule"].tolist() == ["exponential"] * 3  # the input is left as it was


def test_the_table_says_how_many_rows_a_run_trains_on():
  # n counts the training pool; k-fold cross-validation trains each run on k - 1 folds of it
  # (stratified folds of floor or ceil n / k rows): n = 25 in 2 folds is 12 or 13 rows a run.
  assert _row(n=25, folds=2).train_rows == "12–13"
  assert _row(n=100, folds=4).train_rows == "75"
  assert _row(n=25).train_rows == "25"  # Folds unknown: the pool.
  table = study.study_table([_row(n=25, folds=2)])
  header, _, line = table.splitlines()[:3]
  cells = [c.strip() for c in line.split("|")]
  assert cells[[c.strip() for c in header.split("|")].index("rows trained per run")] == "12–13"
