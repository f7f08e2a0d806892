"""The study's Markdown table, one line per cell."""
from __future__ import annotations

import math
from collections.abc import Sequence

from lr_jax import report
from lr_jax.study.cells import CellRow
from lr_jax.study.phrases import budget_label, count, model_name, score_label, setting_text


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


ARMS = ("", "label noise", "regularisation")
"""`CellRow.arm`s in table order: the factor lines first, then the arms."""


def _best_text(row: CellRow) -> str:
  """The best learning rate, marked where it lies at the grid's edge or was unconverged."""
  return (report.format_lr(row.best_lr) + (" (edge)" if row.best_at_edge else "")
          + (" (unconverged)" if row.best_unconverged else ""))


def study_table(rows: Sequence[CellRow], *, reference_lr: float = 1e-4) -> str:
  """The study's Markdown table, one line per cell and score.

  Columns: the budget, the arm ("-" for a factor line; the arm's clean, unregularised row
  included), the line, label noise, regularisation, the score (`phrases.SCORES`), the size
  and the rows a run trains on, then the statistics; *unconverged points*: the learning
  rates with a run still improving at the to-convergence cap ("-" under a fixed budget,
  where running to the end is the design).

  Args:
    rows: the table's `CellRow`s.
    reference_lr: the article's learning rate, whose accuracy has a column.

  Returns:
    The table, budgets in the study's order, within a budget the factor lines first.
  """
  ref = report.format_lr(reference_lr)
  headers = ["budget", "arm", "optimizer", "model", "schedule", "label noise", "regularisation",
             "score", "n", "rows trained per run", "runs", "steps", "best LR",
             "accuracy ± 95% CI", "test accuracy", f"accuracy at lr={ref}",
             "not worse than the best", "P(best) by LR", "unconverged points",
             "still training", "diverged runs"]
  body = []
  order = list(dict.fromkeys(r.budget for r in rows))  # The study's, as the figures'.
  arm = lambda r: ARMS.index(r.arm) if r.arm in ARMS else len(ARMS)
  for r in sorted(rows, key=lambda r: (order.index(r.budget), arm(r))):
    reg = f"tuned: {setting_text(r.best_setting)}" if r.regularisation else "off"
    test = report.format_ci(r.test_mean, r.test_ci) if math.isfinite(r.test_mean) else "-"
    unconverged = count(r.unconverged) if r.budget == "converge" else "-"
    body.append([budget_label(r.budget), r.arm or "-", r.optimizer, model_name(r.width),
                 r.schedule, f"{r.label_noise:g}", reg, score_label(r.score), r.train_size,
                 r.train_rows, r.runs, r.steps, _best_text(r),
                 report.format_ci(r.best_mean, r.best_ci), test,
                 report.format_ci(r.ref_mean, r.ref_ci), _not_worse_text(r), _p_best_text(r),
                 unconverged, sum(r.unfinished), sum(r.diverged)])
  return report.markdown_table(headers, body, align=["l"] * 8 + ["r"] * 13)
