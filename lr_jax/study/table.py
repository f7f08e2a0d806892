"""The study's Markdown table, one line per cell."""
from __future__ import annotations

import math
from collections.abc import Sequence

from lr_jax import report
from lr_jax.study.cells import CellRow
from lr_jax.study.phrases import budget_label, model_name, setting_text


def _p_best_text(row: CellRow) -> str:
  """The learning rates with a P(best) of at least 0.05, e.g. '1e-3: 0.62, 3.2e-3: 0.31'."""
  shown = [f"{report.format_lr(lr)}: {p:.2f}" for lr, p in zip(row.lrs, row.p_best)
           if math.isfinite(p) and p >= 0.05]
  return ", ".join(shown) if shown else "n/a"


def _not_worse_text(row: CellRow) -> str:
  kept = row.not_worse_lrs
  if not kept:
    return "n/a"
  return f"{report.format_lr(min(kept))} – {report.format_lr(max(kept))} ({len(kept)})"


def study_table(rows: Sequence[CellRow], *, reference_lr: float = 1e-4) -> str:
  """The study's Markdown table, one line per cell."""
  ref = report.format_lr(reference_lr)
  headers = ["budget", "optimizer", "model", "schedule", "label noise", "regularisation", "n",
             "rows trained per run", "runs", "steps", "best LR", "accuracy ± 95% CI", "test accuracy",
             f"accuracy at lr={ref}", "not worse than the best", "P(best) by LR",
             "still training", "diverged runs"]
  body = []
  order = list(dict.fromkeys(r.budget for r in rows))  # The study's, as the figures'.
  for r in sorted(rows, key=lambda r: order.index(r.budget)):
    edge = " (edge)" if r.best_at_edge else ""
    reg = f"tuned: {setting_text(r.best_setting)}" if r.regularisation else "off"
    test = report.format_ci(r.test_mean, r.test_ci) if math.isfinite(r.test_mean) else "-"
    body.append([budget_label(r.budget), r.optimizer, model_name(r.width), r.schedule,
                 f"{r.label_noise:g}", reg, r.train_size, r.train_rows, r.runs, r.steps,
                 report.format_lr(r.best_lr) + edge, report.format_ci(r.best_mean, r.best_ci),
                 test, report.format_ci(r.ref_mean, r.ref_ci), _not_worse_text(r),
                 _p_best_text(r), sum(r.unfinished), sum(r.diverged)])
  return report.markdown_table(headers, body, align=["l"] * 6 + ["r"] * 12)
