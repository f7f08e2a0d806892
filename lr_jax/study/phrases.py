"""The words the study's sentences, table and figures share: ratios, counts, medians, names."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax.study.cells import BUDGETS


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


def budget_label(budget: str) -> str:
  return BUDGETS.get(budget, budget)


def setting_text(setting: Sequence[tuple[str, float]]) -> str:
  return ", ".join(f"{k} {v:g}" for k, v in setting) or "none"
