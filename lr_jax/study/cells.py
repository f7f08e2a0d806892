"""One cell of the study's table (`CellRow`): its numbers, and what one or two cells say."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


BUDGETS = {
    "epochs": "fixed epochs",
    "steps": "fixed steps",
    "converge": "to convergence",
}
"""The study's training budgets, by name (see `StudyConfig`): the same epochs at every size;
the same optimizer steps at every size (early stopping off); and a generous step budget with
early stopping on the validation loss."""


@dataclasses.dataclass(frozen=True)
class CellRow:
  """One cell of the study: an LR sweep of one (budget, optimizer, width, schedule, size).

  Attributes:
    optimizer: optimizer family.
    width: hidden width of the one-layer MLP.
    schedule: "constant" or "exponential".
    train_size: training examples (before the k-fold split).
    runs: runs per learning rate (seeds x folds).
    steps: optimizer steps of a run that trains to the end of its budget.
    lrs: [P] learning rates, increasing.
    mean: [P] mean validation accuracy (the sweep's score) over the runs.
    ci95: [P] 95% confidence half-width of `mean`.
    diverged: [P] runs that diverged.
    best_lr: the best learning rate (highest mean, among points where no run diverged).
    best_mean: its mean accuracy.
    best_ci: its 95% half-width.
    ref_mean: mean accuracy at the reference learning rate (NaN if not in the grid).
    ref_ci: its 95% half-width.
    near_lo: smallest learning rate whose mean is within `tolerance` of the best.
    near_hi: largest such learning rate.
    num_near: how many grid points are within `tolerance` of the best.
    budget: the training budget, a key of `BUDGETS`.
    p_best: [P] share of paired bootstrap resamples in which the point is the best (NaN where
      unknown: fewer than 2 streams).
    not_worse: [P] not significantly worse than the best (`lr_jax.stats.compare`); True at
      the best.
    unfinished: [P] runs that neither stopped early nor diverged: still training when the
      budget ran out.
    regularisation: "" for the cell without regularisation (dropout and weight decay off);
      "tuned" for the same cell's runs with them tuned (`StudyConfig.regularisation`): each
      learning rate's entries are its best (dropout, weight decay) point's, P(best) sums over
      its points, and it is not worse when any of its points is not.
    label_noise: the fraction of training labels replaced by a random other class.
    best_setting: the hyperparameters of the best point besides the learning rate and the
      schedule, e.g. `(("dropout_rate", 0.2), ("weight_decay", 0.01))`; empty when none.
    plain_worse: tuned rows only: the best point without regularisation is significantly
      worse than the best point with it (paired by stream); None elsewhere or when unknown.
    test_mean: the best point's runs (trained on their folds) scored on the held-out test
      set, mean accuracy over the runs (NaN without a test set, `StudyConfig.test_up_to`).
    test_ci: its 95% half-width over the runs.
    test_n: examples in the test set (0 without one).
    folds: k of the cell's k-fold cross-validation (0: not known); a run trains on the other
      k - 1 folds of the `train_size` examples (`train_rows`).
    arm: "" for a factor line's cell, "label noise" or "regularisation" for an arm's (its
      clean, unregularised subset included: it pairs with the arm's other rows).
    score: "" for the study's score (cross-fitted at the epoch of lowest validation loss, the
      parameters early stopping restores), "last_epoch" for the same runs scored at the last
      epoch they trained (what a practitioner without clean validation labels keeps).
  """

  optimizer: str
  width: int
  schedule: str
  train_size: int
  runs: int
  steps: int
  lrs: tuple[float, ...]
  mean: tuple[float, ...]
  ci95: tuple[float, ...]
  diverged: tuple[int, ...]
  best_lr: float
  best_mean: float
  best_ci: float
  ref_mean: float
  ref_ci: float
  near_lo: float
  near_hi: float
  num_near: int
  budget: str = "epochs"
  p_best: tuple[float, ...] = ()
  not_worse: tuple[bool, ...] = ()
  unfinished: tuple[int, ...] = ()
  regularisation: str = ""
  label_noise: float = 0.0
  best_setting: tuple[tuple[str, float], ...] = ()
  plain_worse: bool | None = None
  test_mean: float = math.nan
  test_ci: float = math.nan
  test_n: int = 0
  folds: int = 0
  arm: str = ""
  score: str = ""

  @property
  def train_rows(self) -> str:
    """The rows one run trains on, e.g. "12-13" for n=25 in 2 folds; `train_size` without
    folds (stratified folds hold floor or ceil of n / k rows each)."""
    if self.folds < 2:
      return str(self.train_size)
    low = self.train_size - math.ceil(self.train_size / self.folds)
    high = self.train_size - self.train_size // self.folds
    return str(low) if low == high else f"{low}–{high}"

  @property
  def rows_trained(self) -> float:
    """The mean rows a run trains on: `train_size` x (k - 1) / k (for axes and sorting)."""
    return self.train_size * (self.folds - 1) / self.folds if self.folds >= 2 else self.train_size

  @property
  def main(self) -> bool:
    """A cell of the article's question: a factor line's, clean labels, regularisation off,
    the study's score."""
    return not self.arm and not self.regularisation and self.label_noise == 0 and not self.score

  @property
  def unconverged(self) -> tuple[bool, ...]:
    """[P] a run of the point was still improving when the to-convergence budget's cap ran
    out (neither stopped early nor diverged). Under a fixed budget nothing is marked: there
    running to the end is the design."""
    if self.budget != "converge":
      return tuple(False for _ in self.lrs)
    return tuple(bool(u) for u in self.unfinished) or tuple(False for _ in self.lrs)

  @property
  def best_unconverged(self) -> bool:
    i = index_of(self.lrs, self.best_lr) if math.isfinite(self.best_lr) else None
    return i is not None and self.unconverged[i]

  @property
  def line(self) -> tuple[str, int, str]:
    """The (optimizer, width, schedule) this cell belongs to, across training sizes."""
    return (self.optimizer, self.width, self.schedule)

  @property
  def best_at_edge(self) -> bool:
    return math.isfinite(self.best_lr) and (
        math.isclose(self.best_lr, self.lrs[0]) or math.isclose(self.best_lr, self.lrs[-1]))

  @property
  def not_worse_lrs(self) -> tuple[float, ...]:
    """The learning rates not significantly worse than the best (the best included)."""
    return tuple(lr for lr, keep in zip(self.lrs, self.not_worse) if keep)

  @property
  def best_p(self) -> float:
    """P(best) of the best learning rate (NaN when unknown or there is no best)."""
    i = index_of(self.lrs, self.best_lr) if math.isfinite(self.best_lr) else None
    return self.p_best[i] if i is not None and i < len(self.p_best) else math.nan


def index_of(lrs: Sequence[float], lr: float) -> int | None:
  for i, x in enumerate(lrs):
    if math.isclose(x, lr, rel_tol=1e-6):
      return i
  return None


def cell_row(*, optimizer: str, width: int, schedule: str, train_size: int, runs: int, steps: int,
             lrs: Sequence[float], mean: Sequence[float], ci95: Sequence[float],
             diverged: Sequence[int], reference_lr: float, tolerance: float,
             budget: str = "epochs", p_best: Sequence[float] | None = None,
             not_worse: Sequence[bool] | None = None,
             unfinished: Sequence[int] | None = None, regularisation: str = "",
             label_noise: float = 0.0, best_setting: Sequence[tuple[str, float]] = (),
             folds: int = 0, plain_worse: bool | None = None, arm: str = "",
             score: str = "") -> CellRow:
  """Summarizes one cell's LR sweep: best LR, accuracy at the reference LR, near-best range.

  The best point follows `lr_jax.results.best_points`: a learning rate where any run diverged
  is not eligible; when no point is, there is no best.

  Args:
    optimizer, width, schedule, train_size, runs, steps, budget: the cell (see `CellRow`).
    lrs: [P] learning rates.
    mean: [P] mean validation accuracy (the sweep's score).
    ci95: [P] 95% half-widths.
    diverged: [P] diverged runs.
    reference_lr: the learning rate to report separately (the article's 1e-4).
    tolerance: accuracy difference that counts as "within one point" (0.01).
    p_best: [P] P(best) from the aggregates; default NaN (unknown).
    not_worse: [P] not significantly worse than the best, from the aggregates; default the
      best alone. Whatever is given, the best point is in the set and ineligible points not.
    unfinished: [P] runs still training at the end of the budget; default 0.
    regularisation, label_noise, best_setting, plain_worse, folds, arm, score: see
      `CellRow`.

  Returns:
    The `CellRow`, points sorted by learning rate.
  """
  num = len(lrs)
  order = np.argsort(np.asarray(lrs, float))
  lrs_P = np.asarray(lrs, float)[order]
  mean_P = np.asarray(mean, float)[order]
  ci_P = np.asarray(ci95, float)[order]
  div_P = np.asarray(diverged, int)[order]
  p_P = np.asarray(p_best if p_best is not None else [math.nan] * num, float)[order]
  keep_P = np.asarray([bool(k) for k in not_worse] if not_worse is not None else [False] * num,
                      bool)[order]
  left_P = np.asarray(unfinished if unfinished is not None else [0] * num, int)[order]
  finite = np.isfinite(mean_P)
  eligible = finite & (div_P == 0)
  if eligible.any():
    best = int(np.flatnonzero(eligible)[np.argmax(mean_P[eligible])])
    near = eligible & (mean_P >= mean_P[best] - tolerance)
    best_lr, best_mean, best_ci = float(lrs_P[best]), float(mean_P[best]), float(ci_P[best])
    near_lo, near_hi = float(lrs_P[near].min()), float(lrs_P[near].max())
    num_near = int(near.sum())
    keep_P = keep_P & eligible
    keep_P[best] = True
  else:
    best_lr = best_mean = best_ci = near_lo = near_hi = math.nan
    num_near = 0
    keep_P = np.zeros(num, bool)
  ref = index_of(lrs_P, reference_lr)
  return CellRow(
      optimizer=optimizer, width=int(width), schedule=schedule, train_size=int(train_size),
      runs=int(runs), steps=int(steps), lrs=tuple(map(float, lrs_P)),
      mean=tuple(map(float, mean_P)), ci95=tuple(map(float, ci_P)),
      diverged=tuple(map(int, div_P)), best_lr=best_lr, best_mean=best_mean, best_ci=best_ci,
      ref_mean=float(mean_P[ref]) if ref is not None else math.nan,
      ref_ci=float(ci_P[ref]) if ref is not None else math.nan,
      near_lo=near_lo, near_hi=near_hi, num_near=num_near, budget=budget,
      p_best=tuple(map(float, p_P)), not_worse=tuple(map(bool, keep_P)),
      unfinished=tuple(map(int, left_P)), regularisation=regularisation,
      label_noise=float(label_noise),
      best_setting=tuple((k, float(v)) for k, v in best_setting), plain_worse=plain_worse,
      folds=int(folds), arm=arm, score=score)


def small_lr_ok(row: CellRow, reference_lr: float) -> bool:
  """A learning rate <= `reference_lr` is within the noise of the best (in the not-worse set)."""
  return any(lr <= reference_lr * (1 + 1e-6) for lr in row.not_worse_lrs)


def decided(row: CellRow, reference_lr: float) -> bool:
  """Whether the cell's answer to the article's question rests only on converged points.

  "A small learning rate was not good enough" rests on every point <= `reference_lr`: if one
  of them was still improving at the cap, it was under-trained, not worse. "It was necessary"
  rests on every larger point likewise. "It was not significantly worse than the best" rests
  on a larger best being done: still improving, more training could leave the small one
  behind. A cell that does not rest on an unconverged point is decided (always so under a
  fixed budget: its claims are about that budget).
  """
  return not undecided_why(row, reference_lr)


def undecided_why(row: CellRow, reference_lr: float) -> str:
  """Why a cell is not `decided`: "small" when no learning rate <= `reference_lr` is within
  the noise of the best and one of them was still improving at the cap (under-trained, not
  worse); "large" when only such small ones are and a larger one was still improving (the
  small ones may not be needed); "best" when a small one is within the noise of a larger best
  that was still improving (it may yet fall behind); "" when the cell is decided."""
  marks = row.unconverged
  small = any(m for lr, m in zip(row.lrs, marks) if lr <= reference_lr * (1 + 1e-6))
  large = any(m for lr, m in zip(row.lrs, marks) if lr > reference_lr * (1 + 1e-6))
  if not small_lr_ok(row, reference_lr):
    return "small" if small else ""
  if small_lr_needed(row, reference_lr):
    return "large" if large else ""
  if row.best_lr > reference_lr * (1 + 1e-6) and row.best_unconverged:
    return "best"
  return ""


def reference_line(rows: Sequence[CellRow]) -> tuple[str, int, str, str] | None:
  """The reference line (optimizer, width, schedule, budget) of a table, read off its main
  cells (`CellRow.main`): each factor's most frequent value, the first met on a tie.

  Under the "union" design the reference line runs every schedule and budget and each other
  value of a factor is one line more, so each reference value is the most frequent one; under
  "product" they tie and the first met is the study's first (its rows are in plan order), as
  `StudyConfig.reference`.

  Returns:
    The reference, or None without main cells.
  """
  main = [r for r in rows if r.main]
  if not main:
    return None

  def mode(values: list) -> object:
    order = list(dict.fromkeys(values))
    return max(order, key=values.count)  # max keeps the first of equals

  return (mode([r.optimizer for r in main]), mode([r.width for r in main]),
          mode([r.schedule for r in main]), mode([r.budget for r in main]))


def small_lr_needed(row: CellRow, reference_lr: float) -> bool:
  """Every learning rate not significantly worse than the best is <= `reference_lr`."""
  kept = row.not_worse_lrs
  return bool(kept) and all(lr <= reference_lr * (1 + 1e-6) for lr in kept)


def direction(a: CellRow, b: CellRow) -> str:
  """Whether `a`'s best learning rate is "larger" or "smaller" than `b`'s, or "undecided".

  Undecided where the two not-worse sets overlap: the data cannot tell the two apart (the
  same best learning rate is undecided too, not "the same").
  """
  if any(index_of(b.not_worse_lrs, lr) is not None for lr in a.not_worse_lrs):
    return "undecided"
  return "larger" if a.best_lr > b.best_lr else "smaller"
