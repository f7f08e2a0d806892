"""The study's figures per budget: best learning rate vs rows trained, accuracy vs learning rate.

Only the lines a budget has are drawn: under the "union" design the reference line runs
every budget and schedule, the other optimizers and widths the reference's alone.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from lr_jax import report
from lr_jax.study.cells import CellRow
from lr_jax.study.config import StudyConfig
from lr_jax.study.phrases import budget_label, model_name

ROWS_AXIS = "rows trained per run (n x (k - 1) / k)"
"""The x axis of the best-learning-rate figure: a run trains on k - 1 of the k folds of the
n examples, so n = 25 in 2 folds is 12.5 rows, not 25."""


def ci_band(mean: Sequence[float], ci95: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """[P] lower and upper edges of a 95% band of accuracies, clipped to [0, 1]."""
  mean, ci = np.array(mean, float), np.nan_to_num(np.array(ci95, float))
  return np.clip(mean - ci, 0.0, 1.0), np.clip(mean + ci, 0.0, 1.0)


def _title(line: tuple) -> str:
  optimizer, width, schedule = line
  return f"{optimizer}, {model_name(width)}, {schedule}"


def lines_of(rows: Sequence[CellRow]) -> dict[tuple, list[CellRow]]:
  """The (optimizer, width, schedule) lines present among `rows`, each its cells by size, in
  the order first met (the plan's: the reference line first)."""
  out: dict[tuple, list[CellRow]] = {}
  for r in rows:
    out.setdefault(r.line, []).append(r)
  return {k: sorted(v, key=lambda r: r.train_size) for k, v in out.items()}


def best_lr_curve(cells: Sequence[CellRow], label: str, *, band: bool = True,
                  emphasis: bool = False) -> report.Curve:
  """A line's best learning rate against rows trained per run ([N] points), with the band of
  learning rates not significantly worse than the best."""
  x = np.array([r.rows_trained for r in cells], float)
  y = np.array([r.best_lr for r in cells], float)
  if not band:
    return report.Curve(label, x, y, emphasis=emphasis)
  lo = np.array([min(r.not_worse_lrs, default=math.nan) for r in cells], float)
  hi = np.array([max(r.not_worse_lrs, default=math.nan) for r in cells], float)
  return report.Curve(label, x, y, lo, hi, emphasis=emphasis)


def draw_figures(cfg: StudyConfig, rows: Sequence[CellRow], out_dir: str) -> list[tuple[str, str]]:
  """Draws each budget's figures into `out_dir`: (file name, alt text) of each.

  Per budget, from its main cells (`CellRow.main`): best_lr_<budget>.png, a panel per line
  present (the reference line dashed beside each other line; a diamond where the best point
  was unconverged); and sensitivity_<budget>_<optimizer>.png per optimizer present, a panel
  per line of that optimizer, a curve per size labelled by the rows a run trains on.
  """
  figures = []
  reference = cfg.reference[:3]
  for budget in cfg.budgets:
    brows = [r for r in rows if r.budget == budget and r.main]
    lines = lines_of(brows)
    if not lines:
      continue
    label = budget_label(budget)
    panels, markers = {}, {}
    for line, cells in lines.items():
      curves = [best_lr_curve(cells, _title(line))]
      if line != reference and reference in lines:
        curves.append(best_lr_curve(lines[reference], f"reference: {_title(reference)}",
                                    band=False, emphasis=True))
      panels[_title(line)] = curves
      open_ = [r for r in cells if r.best_unconverged]
      if open_:
        markers[_title(line)] = [report.Marker(
            "best point unconverged", np.array([r.rows_trained for r in open_]),
            np.array([r.best_lr for r in open_]), kind="alternative")]
    name = f"best_lr_{budget}.png"
    lr_range = (cfg.learning_rates[0] / 2, cfg.learning_rates[-1] * 2)
    report.plot_panels(
        os.path.join(out_dir, name), panels, xlabel=ROWS_AXIS, ylabel="best learning rate",
        logx=True, logy=True, palette="categorical", ylim=lr_range, markers=markers,
        legend_title="line",
        suptitle=f"{label}: best learning rate vs rows trained per run (band: not "
                 "significantly worse)")
    figures.append((name, f"best learning rate vs rows trained per run, {label}"))
    for opt in dict.fromkeys(line[0] for line in lines):
      panels = {_title(line): [
          report.Curve(f"{r.train_rows} rows (n={r.train_size})", np.array(r.lrs),
                       np.array(r.mean), *ci_band(r.mean, r.ci95)) for r in cells]
          for line, cells in lines.items() if line[0] == opt}
      name = f"sensitivity_{budget}_{opt}.png"
      report.plot_lr_sensitivity(
          os.path.join(out_dir, name), panels, reference_lr=cfg.reference_lr,
          legend_title="rows trained per run",
          suptitle=f"{opt}, {label}: mean validation accuracy vs learning rate (band: 95% CI)")
      figures.append((name, f"LR sensitivity, {opt}, {label}"))
  return figures
