"""The sweep report's panels: the metric against learning rate, and the selected point's curves."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from lr_jax.report.markdown import format_lr
from lr_jax.report.panels import Curve, Marker
from lr_jax.report.points import (_extra_keys, _lines, _point_name, _point_rows,
                                  _run_summary, group_title, rule_points)


def metric_range(result, group: int, column: str) -> tuple[float, float] | None:
  """The values `column` can take in a compile group, or None where they are not known.

  Validation accuracy lies in [0, 1] and the built-in losses (cross-entropy, squared error)
  in [0, inf); a user's metric in the `bounds` it declares (`Metric.bounds`), if it does. A
  user's loss (`run_sweep(loss=)`), a metric without bounds, or a group whose plan the result
  does not carry may take any value: None.

  Args:
    result: a `SweepResult`.
    group: the compile group.
    column: a per-run column or history key: "best_val_accuracy", "val_loss", ...
  """
  name = column[len("best_"):] if column.startswith("best_") else column
  if name in ("val_accuracy", "train_accuracy"):
    return (0.0, 1.0)
  if group >= len(result.groups):
    return None
  g = result.groups[group]
  if name in ("val_loss", "train_loss"):
    return (0.0, math.inf) if getattr(g, "loss", None) is None else None
  user = dict(getattr(g, "metrics", ())).get(name[len("val_"):] if name.startswith("val_")
                                              else None)
  bounds = getattr(user, "bounds", None)
  return (float(bounds[0]), float(bounds[1])) if bounds is not None else None


def is_score(a, column: str) -> bool:
  """`column` is the point's score (its metric at its scored epoch): the table's interval."""
  from lr_jax.results import score_column
  return column == score_column(a.metric, getattr(a, "score", "best_epoch"))


def _band(mean: np.ndarray, ci: np.ndarray, span: tuple[float, float] | None
          ) -> tuple[np.ndarray, np.ndarray]:
  """[P] edges of the band mean ± ci, cut to `span` (None: not cut).

  A Student-t interval over a few runs reaches past what the metric can take (an accuracy
  of 0.99 ± 0.05); the values beyond are not possible results, so the band stops at the edge.
  """
  lo, hi = mean - ci, mean + ci
  if span is not None:
    lo, hi = np.clip(lo, *span), np.clip(hi, *span)
  return lo, hi


def _sensitivity_panels(result, groups: Sequence[int], column: str
                        ) -> tuple[dict[str, list[Curve]], dict[str, list[Marker]]]:
  """Per group: mean `column` against learning rate with its 95% band, and the marked points.

  The line joins eligible points only: a point where a run diverged is marked as such, at its
  survivors' mean (or on the worst edge when every run diverged), not joined as a result.
  The band is cut to the metric's range where it is known (`metric_range`).
  """
  edge = "top" if "loss" in column else "bottom"
  panels, markers = {}, {}
  for gi in groups:
    entries = [a for a in result.aggregates if a.group == gi]
    extra = _extra_keys(entries)
    keys = ["learning_rate", *extra]
    summary = {id(a): _run_summary(result, gi, a, keys, column) for a in entries}
    curves = []
    for label, line in _lines(entries, extra):
      lr = np.array([a.learning_rate for a in line])
      mean = np.array([summary[id(a)].mean if a.eligible else math.nan for a in line])
      if all(is_score(a, column) for a in line):  # The table's own interval, by the design.
        lo = np.array([a.ci_low if a.eligible else math.nan for a in line])
        hi = np.array([a.ci_high if a.eligible else math.nan for a in line])
      else:
        ci = np.array([summary[id(a)].ci95 for a in line])
        lo, hi = _band(mean, ci, metric_range(result, gi, column))
      curves.append(Curve(label, lr, mean, lo, hi))
    title = f"group {gi}: {group_title(result, gi)}"
    panels[title] = curves
    marks = []
    picked = rule_points(result, gi)
    # The selected point first: the legend reads in drawing order.
    for rule in sorted(picked, key=lambda rule: rule != result.select):
      a = picked[rule]
      if a is None:
        continue
      y = [summary[id(a)].mean]
      if rule == result.select:
        marks.append(Marker(f"selected ({rule}): lr {format_lr(a.learning_rate)}",
                            [a.learning_rate], y, "selected"))
      else:
        marks.append(Marker(f"the {rule} rule's: lr {format_lr(a.learning_rate)}",
                            [a.learning_rate], y, "alternative"))
    bad = [a for a in entries if not a.eligible]
    if bad:
      label = ("a run diverged: ineligible" if all(a.n_diverged for a in bad)
               else "a run diverged or has no score: ineligible")
      marks.append(Marker(label, [a.learning_rate for a in bad],
                          [summary[id(a)].mean for a in bad], "diverged", edge))
    markers[title] = marks
  return panels, markers


def _trajectory(curves_RxE: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, min and max over runs per epoch, while at least half the runs are still training.

  A run stops early and its history turns NaN; a mean over the runs that are left would jump
  as they drop out, so the curve ends where fewer than half remain.
  """
  c = np.asarray(curves_RxE, np.float64)
  running = np.isfinite(c).sum(axis=0)
  enough = running * 2 >= max(c.shape[0], 1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # An epoch no run reached: NaN is right.
    mean, lo, hi = np.nanmean(c, axis=0), np.nanmin(c, axis=0), np.nanmax(c, axis=0)
  return (np.where(enough, mean, np.nan), np.where(enough, lo, np.nan),
          np.where(enough, hi, np.nan))


def _curve_panels(result, groups: Sequence[int], metric: str) -> dict[str, list[Curve]]:
  """Per group: training and validation `metric` per epoch of the selected point and its
  neighbours on the learning-rate grid (mean over runs, band from the lowest to the highest)."""
  panels = {}
  for gi in groups:
    entries = [a for a in result.aggregates if a.group == gi]
    chosen = rule_points(result, gi).get(result.select)
    if chosen is None:
      continue
    extra = _extra_keys(entries)
    keys = ["learning_rate", *extra]
    line = next(line for _, line in _lines(entries, extra) if any(a is chosen for a in line))
    at = next(i for i, a in enumerate(line) if a is chosen)
    shown = line[max(at - 1, 0):at + 2]
    for phase in ("train", "val"):
      history = result.history.get(f"{phase}_{metric}")
      if history is None:
        continue
      curves = []
      for a in shown:
        runs = np.asarray(history)[_point_rows(result, gi, a, keys)]
        mean, lo, hi = _trajectory(runs)
        last = np.flatnonzero(np.isfinite(mean))
        if last.size == 0:
          continue
        end = last[-1] + 1
        note = " (selected)" if a is chosen else (
            f" (diverged {a.n_diverged}/{a.n_total})" if a.n_diverged else "")
        curves.append(Curve(f"{_point_name(a, extra)}{note}",
                            np.arange(1, end + 1), mean[:end], lo[:end], hi[:end],
                            emphasis=a is chosen))
      if curves:
        name = "training" if phase == "train" else "validation"
        panels[f"group {gi}, {name}" if len(groups) > 1 else name] = curves
  return panels
