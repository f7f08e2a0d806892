"""The study's figures per budget: best learning rate vs size, and accuracy vs learning rate."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from lr_jax import report
from lr_jax.study.cells import CellRow
from lr_jax.study.config import StudyConfig
from lr_jax.study.phrases import budget_label, model_name


def ci_band(mean: Sequence[float], ci95: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """[P] lower and upper edges of a 95% band of accuracies, clipped to [0, 1]."""
  mean, ci = np.array(mean, float), np.nan_to_num(np.array(ci95, float))
  return np.clip(mean - ci, 0.0, 1.0), np.clip(mean + ci, 0.0, 1.0)


def draw_figures(cfg: StudyConfig, rows: Sequence[CellRow], out_dir: str) -> list[tuple[str, str]]:
  """Draws each budget's figures into `out_dir`: (file name, alt text) of each."""
  figures = []
  for budget in cfg.budgets:
    brows = [r for r in rows if r.budget == budget and r.main]
    label = budget_label(budget)
    panels = {}
    for width in cfg.widths:
      for schedule in cfg.schedules:
        curves = []
        for opt in cfg.optimizers:
          line = sorted((r for r in brows if r.line == (opt, width, schedule)),
                        key=lambda r: r.train_size)
          lo = [min(r.not_worse_lrs, default=math.nan) for r in line]
          hi = [max(r.not_worse_lrs, default=math.nan) for r in line]
          curves.append(report.Curve(
              opt, np.array([r.train_size for r in line]), np.array([r.best_lr for r in line]),
              np.array(lo), np.array(hi)))
        panels[f"{model_name(width)}, {schedule}"] = curves
    name = f"best_lr_{budget}.png"
    report.plot_best_lr(
        os.path.join(out_dir, name), panels,
        lr_range=(cfg.learning_rates[0], cfg.learning_rates[-1]),
        suptitle=f"{label}: best learning rate vs training-set size (band: not significantly "
                 "worse)")
    figures.append((name, f"best learning rate vs training-set size, {label}"))
    for opt in cfg.optimizers:
      panels = {}
      for width in cfg.widths:
        for schedule in cfg.schedules:
          panels[f"{opt}, {model_name(width)}, {schedule}"] = [
              report.Curve(f"n={r.train_size}", np.array(r.lrs), np.array(r.mean),
                           *ci_band(r.mean, r.ci95))
              for r in sorted(brows, key=lambda r: r.train_size)
              if r.line == (opt, width, schedule)]
      name = f"sensitivity_{budget}_{opt}.png"
      report.plot_lr_sensitivity(
          os.path.join(out_dir, name), panels, reference_lr=cfg.reference_lr,
          legend_title="training examples",
          suptitle=f"{opt}, {label}: mean validation accuracy vs learning rate (band: 95% CI)")
      figures.append((name, f"LR sensitivity, {opt}, {label}"))
  return figures
