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


def _sensitivity_panels(result, groups: Sequence[int], column: str
                        ) -> tuple[dict[str, list[Curve]], dict[str, list[Marker]]]:
  """Per group: mean `column` against learning rate with its 95% band, and the marked points.

  The line joins eligible points only: a point where a run diverged is marked as such, at its
  survivors' mean (or on the worst edge when every run diverged), not joined as a result.
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
      ci = np.array([summary[id(a)].ci95 for a in line])
      curves.append(Curve(label, lr, mean, mean - ci, mean + ci))
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
