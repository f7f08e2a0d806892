"""Nested cross-validation: `OuterFold`, `NestedEstimate`, and one outer fold's selection."""

from __future__ import annotations

import dataclasses
import math


from lr_jax.io import jsonable
from lr_jax.results.aggregates import best_points, subset_aggregates
from lr_jax.results.result import SweepResult
from lr_jax.results.table import format_score


@dataclasses.dataclass(frozen=True)
class OuterFold:
  """One outer fold of nested cross-validation: what its inner selection chose, and its score.

  Attributes:
    outer: the outer fold's index, 0..K-1.
    train_n: rows of its training part (its inner folds' training and validation rows).
    test_n: rows of its test part, which its inner selection never saw.
    hyperparameters: the chosen point (`learning_rate` and any other swept value); {} when
      the inner selection chose nothing.
    validation: the chosen point's inner mean validation score (NaN when the selection
      scores another metric than `NestedEstimate.metric`).
    epochs: the refit's epochs, the median best epoch of the chosen point's inner runs.
    score: the refit's test score on the test part (accuracy, or loss for regression); NaN
      when nothing was chosen or every refit seed diverged.
    reason: why there is no score, else "".
  """

  outer: int
  train_n: int
  test_n: int
  hyperparameters: dict
  validation: float
  epochs: int
  score: float
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class NestedEstimate:
  """Nested cross-validation's estimate of a group's selection procedure.

  Each outer fold runs the whole inner selection on its training part; its choice is refit on
  that part (an ensemble of the sweep's seeds, as `lr_jax.export.refit`) and scored once on
  its test part. The scores estimate how well "sweep, select, refit" does on new data.

  Attributes:
    group: the compile group.
    metric: "accuracy" or "loss" (regression), of the outer test scores.
    higher_is_better: the metric's direction.
    rule: the selection rule (`SweepResult.select`).
    folds: the K outer folds.
    n: outer folds with a score.
    mean: mean outer test score.
    std: its standard deviation over the outer folds (NaN for n < 2).
    ci95: 95% Student-t half-width over the n outer scores (NaN for n < 2).
    validation: mean inner validation score of the choices: how optimistic selection is (NaN
      when the selection scores another metric, `select_by`).
    selected: (learning rate, times chosen) pairs, by learning rate; the counts sum to the
      outer folds that chose one.
  """

  group: int
  metric: str
  higher_is_better: bool
  rule: str
  folds: tuple[OuterFold, ...]
  n: int
  mean: float
  std: float
  ci95: float
  validation: float
  selected: tuple[tuple[float, int], ...]

  @property
  def line(self) -> str:
    """One line for the table and the log."""
    chosen = ", ".join(f"{lr:.3g} x{c}" for lr, c in self.selected) or "none"
    k = len(self.folds)
    interval = (f"; 95% CI over the {self.n} outer folds, each with its own training and test "
                "rows" if math.isfinite(self.ci95) else "")
    line = (f"nested CV ({k} outer folds, rule {self.rule}): outer test {self.metric} "
            f"{format_score(self.mean, self.ci95, self.n)} (n={self.n}{interval}); learning "
            f"rates chosen: {chosen}")
    if math.isfinite(self.validation):
      line += f"; the choices' inner validation {self.metric} {self.validation:.4f}"
    missing = [f.outer for f in self.folds if not math.isfinite(f.score)]
    if missing:
      line += f"; no score for outer fold(s) {', '.join(map(str, missing))}"
    return line

  def to_dict(self) -> dict:
    """JSON-ready, with the line and the selection counts by learning rate."""
    out = dataclasses.asdict(self)
    out["folds"] = [dataclasses.asdict(f) for f in self.folds]
    out["selected"] = [{"learning_rate": lr, "count": c} for lr, c in self.selected]
    out["line"] = self.line
    return jsonable(out)


def outer_selection(result: SweepResult, group: int, outer: int) -> tuple[list[dict], dict]:
  """The inner selection of one outer fold: its aggregates and selected point.

  Exactly what a sweep of that outer fold alone reports: `aggregate` and `best_points` over
  the runs of its inner folds only.

  Args:
    result: a sweep with nested cross-validation (`DataConfig.outer_folds`).
    group: the compile group.
    outer: the outer fold, 0..K-1.

  Returns:
    (aggregates, best), their `group` entries being `group`.
  """
  inner = result.groups[group].splits.inner_folds
  sel = (result.rows["group"] == group) & (result.rows["fold"] // inner == outer)
  entries = subset_aggregates(result, sel, group)
  best = best_points(entries, 1, result.select)[0]
  entries = [dataclasses.replace(a, group=group) for a in entries]
  best = next((a for a in entries if a.selected), None) or dataclasses.replace(best, group=group)
  return entries, best
