"""A sweep's grid points as its report reads them: group titles, rule picks, runs, names."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax.report.markdown import format_lr
from lr_jax.stats import best_mean_text  # noqa: F401  (the report's modules import it here)


def group_title(result, group: int) -> str:
  """'adam / constant / mlp(128) on digits': a compile group's optimizer, schedule, model, data.

  `lr_jax.results.group_title`: from the group's `Experiment`.
  """
  from lr_jax.results import group_title as title
  return title(result, group)


def _extra_keys(entries: Sequence) -> list[str]:
  """The swept hyperparameters besides the learning rate (weight decay, momentum)."""
  return [k for k, _ in entries[0].hparams] if entries else []


def rule_points(result, group: int) -> dict[str, dict | None]:
  """The aggregate entry each selection rule picks in a compile group, whatever rule selected.

  Args:
    result: a `SweepResult`.
    group: the compile group.

  Returns:
    `stats.SELECT_RULES` -> the entry it picks, or None where the group has no selection
    (no eligible point, or all tie: `SweepResult.best`'s "reason").
  """
  from lr_jax import stats
  entries = [a for a in result.aggregates if a.group == group]
  eligible = [a for a in entries if a.eligible]
  best = result.best[group] if group < len(result.best) else {}
  if not eligible or not math.isfinite(getattr(best, "learning_rate", math.nan)):
    return {rule: None for rule in stats.SELECT_RULES}
  picked = {}
  for rule in stats.SELECT_RULES:
    i = stats.select_index(
        rule, np.array([a.learning_rate for a in eligible], np.float64),
        np.array([a.mean for a in eligible], np.float64),
        np.array([a.se for a in eligible], np.float64), np.ones(len(eligible), bool),
        eligible[0].higher_is_better)
    picked[rule] = eligible[i] if i is not None else None
  return picked


def _point_rows(result, group: int, entry, keys: Sequence[str]) -> np.ndarray:
  """[runs] indices of the rows (variants) of one aggregate entry."""
  sel = np.asarray(result.rows["group"]) == group
  for k in keys:
    column = np.asarray(result.rows[k], np.float64)
    value = entry.value(k)
    sel &= (column == value) | (np.isnan(column) & np.isnan(value))
  return np.flatnonzero(sel)


def _lines(entries: Sequence[dict], extra: Sequence[str]) -> list[tuple[str, list[dict]]]:
  """A group's entries split by their other hyperparameters, each line sorted by learning rate."""
  combos: dict[tuple, list[dict]] = {}
  for a in entries:
    combos.setdefault(tuple(a.value(k) for k in extra), []).append(a)
  out = []
  for combo, line in sorted(combos.items(), key=lambda kv: np.nan_to_num(kv[0], nan=-1.0).tolist()):
    label = ", ".join(f"{k} {v:g}" for k, v in zip(extra, combo)) or "mean, 95% CI"
    out.append((label, sorted(line, key=lambda a: a.learning_rate)))
  return out


def _score_rows(result, group: int, entry, keys: Sequence[str]) -> np.ndarray:
  """[n] indices of a point's runs with a score, the runs its mean and `n` are over.

  As `results.aggregate` counts them: not diverged, and a finite score (`best_<metric>`, or
  the column of the epoch the entry's `score` names).
  """
  from lr_jax.results.files import score_column_of
  idx = _point_rows(result, group, entry, keys)
  keep = ~np.asarray(result.rows["diverged"], bool)[idx]
  score = result.rows.get(score_column_of(entry))
  if score is not None:
    keep &= np.isfinite(np.asarray(score, np.float64)[idx])
  return idx[keep]


def _run_summary(result, group: int, entry, keys: Sequence[str], column: str):
  """`stats.Summary` of a point's `column` over its runs with a score (not diverged, finite)."""
  from lr_jax import stats
  idx = _point_rows(result, group, entry, keys)
  values = np.asarray(result.rows[column], np.float64)[idx]
  diverged = np.asarray(result.rows["diverged"], bool)[idx]
  return stats.summarize(values[~diverged])


def _point_name(a, extra: Sequence[str]) -> str:
  """'lr 0.01' or 'lr 0.01 (weight_decay 0.1)': a grid point as the text names it."""
  others = ", ".join(f"{k} {a.value(k):g}" for k in extra)
  return f"lr {format_lr(a.learning_rate)}" + (f" ({others})" if others else "")
