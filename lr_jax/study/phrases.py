"""The words the study's sentences, table and figures share: ratios, counts, medians, names,
and why a count left a cell out."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax import report
from lr_jax.study.cells import BUDGETS, CellRow, undecided_why


def format_ratio(ratio: float) -> str:
  """A factor between two learning rates: '10x larger', '3.2x smaller', 'unchanged'."""
  if not math.isfinite(ratio) or ratio <= 0:
    return "n/a"
  if math.isclose(ratio, 1.0, rel_tol=1e-3):
    return "unchanged"
  r, word = (ratio, "larger") if ratio > 1 else (1 / ratio, "smaller")
  return f"{r:.0f}x {word}" if r >= 10 else f"{r:.2g}x {word}"


def model_name(width: int) -> str:
  return f"MLP({width})"


def count(pred: Sequence[bool]) -> int:
  return int(sum(bool(p) for p in pred))


def median(values: Sequence[float]) -> float:
  values = [v for v in values if math.isfinite(v)]
  return float(np.median(values)) if values else math.nan


def decades_text(x: float) -> str:
  if not math.isfinite(x):
    return "n/a"
  text = f"{x:.2g}"  # log10 of grid ratios: 0.99999999 is one decade.
  return f"{text} decade" + ("" if text == "1" else "s")


def signed_points(x: float) -> str:
  """An accuracy difference in signed points, '+1.5'; a rounded zero is '+0.0', not '-0.0'."""
  return f"{round(100 * x, 1) + 0.0:+.1f}"


def budget_label(budget: str) -> str:
  return BUDGETS.get(budget, budget)


def setting_text(setting: Sequence[tuple[str, float]]) -> str:
  return ", ".join(f"{k} {v:g}" for k, v in setting) or "none"


SCORES = {"": "best epoch", "last_epoch": "last epoch"}
"""`CellRow.score` by name: the epoch of lowest clean validation loss (what early stopping
restores), or the last epoch a run trained (what a practitioner without clean labels keeps)."""


def score_label(score: str) -> str:
  return SCORES.get(score, score)


def plural(k: int, noun: str) -> str:
  """'1 cell', '3 cells'."""
  return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def runs_text(runs: Sequence[int]) -> str:
  """Runs per point of some cells: '6 runs per point', '4–6 runs per point'."""
  runs = sorted(set(int(r) for r in runs))
  if not runs:
    return "no runs"
  span = str(runs[0]) if runs[0] == runs[-1] else f"{runs[0]}–{runs[-1]}"
  return f"{span} run{'' if span == '1' else 's'} per point"


def sizes_text(sizes: Sequence[int]) -> str:
  """'n=25, 50, 400' (sorted, each once)."""
  return "n=" + ", ".join(str(n) for n in sorted(set(sizes)))


def steps_span(rows: Sequence[CellRow]) -> str:
  """'300 steps', '1000–1001 steps': the steps of a full run among `rows`."""
  lo, hi = min(r.steps for r in rows), max(r.steps for r in rows)
  return f"{lo} steps" if lo == hi else f"{lo}–{hi} steps"


def cap_text(rows: Sequence[CellRow]) -> str:
  """The to-convergence cap of `rows`: 'the 1001-step cap', 'the cap (1000–1001 steps)'."""
  lo, hi = min(r.steps for r in rows), max(r.steps for r in rows)
  return f"the {hi}-step cap" if lo == hi else f"the cap ({lo}–{hi} steps)"


def left_out(rows: Sequence[CellRow], reference_lr: float) -> str:
  """Why some cells are left out of a count: their answer rests on an unconverged point.

  Args:
    rows: the cells a count was asked of.
    reference_lr: the article's small learning rate.

  Returns:
    E.g. '2 cells left out: a learning rate <= 1e-4 there was still improving at the
    1001-step cap: under-trained, not worse'; "" when every cell is `decided`.
  """
  whys = [undecided_why(r, reference_lr) for r in rows]
  out = [r for r, w in zip(rows, whys) if w]
  if not out:
    return ""
  ref = report.format_lr(reference_lr)
  reasons = {
      "small": f"a learning rate <= {ref} (under-trained, not worse)",
      "large": "a larger one (the small one may not be needed)",
      "best": f"the best, larger than {ref}, with one <= {ref} within its noise (the small "
              "one may yet fall behind)",
  }
  head = f"{plural(len(out), 'cell')} left out"
  counts = {w: whys.count(w) for w in reasons if whys.count(w)}
  if list(counts) == ["small"]:
    return (f"{head}: a learning rate <= {ref} there was still improving at {cap_text(out)}: "
            "under-trained, not worse")
  if list(counts) == ["large"]:
    return (f"{head}: a learning rate > {ref} there was still improving at {cap_text(out)}, so "
            "the small one may not be needed")
  if list(counts) == ["best"]:
    return (f"{head}: the best learning rate, larger than {ref}, was still improving at "
            f"{cap_text(out)}, so the small one within its noise may yet fall behind")
  return (f"{head}, a point still improving at {cap_text(out)}: "
          + ", ".join(f"in {k} {reasons[w]}" for w, k in counts.items()))
