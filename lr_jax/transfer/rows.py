"""The experiment's table: one `ArmRow` per (training size, arm), from its sweeps."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from lr_jax import stats
from lr_jax.results import subset_selection
from lr_jax.results.aggregates import point_runs, score_column
from lr_jax.transfer.config import FineTuneConfig


@dataclasses.dataclass(frozen=True)
class ArmRow:
  """One arm's learning-rate sweep at one training size.

  Attributes:
    size, arm, scale: the target images trained on; the arm's name and backbone scale (None:
      from scratch).
    runs: runs per learning rate (seeds); val_rows: the validation images each run is
      scored on (the same images for every arm).
    lrs, means, cis: per learning rate, the mean cross-fitted validation accuracy and its 95%
      half-width (over seeds and validation images, `lr_jax.stats`).
    p_best: per learning rate, P(best) within the arm; not_worse: not significantly worse
      than the arm's best (a one-sided paired test, seeds and validation images).
    diverged: per learning rate, runs that diverged.
    unfinished: per learning rate, runs neither stopped early nor diverged: still improving
      when the steps ran out (under-trained, not necessarily worse).
    best: index of the arm's best eligible learning rate (-1: none).
    ref: index of the reference learning rate (the article's 1e-4).
    vs_scratch: (mean, 95% half-width) of this arm's best minus from scratch's best, paired by
      seed and validation image (both sweeps have the same seeds and validation images);
      NaN for the scratch arm or where either has no best.
  """

  size: int
  arm: str
  scale: float | None
  runs: int
  val_rows: int
  lrs: tuple[float, ...]
  means: tuple[float, ...]
  cis: tuple[float, ...]
  p_best: tuple[float, ...]
  not_worse: tuple[bool, ...]
  diverged: tuple[int, ...]
  unfinished: tuple[int, ...]
  best: int
  ref: int
  vs_scratch: tuple[float, float] = (math.nan, math.nan)

  @property
  def best_lr(self) -> float:
    return self.lrs[self.best] if self.best >= 0 else math.nan

  @property
  def small_needed(self) -> bool:
    """A small learning rate was needed: the best is at or below the reference, and every
    larger learning rate is significantly worse than it."""
    return self.best >= 0 and self.best <= self.ref and not any(self.not_worse[self.ref + 1:])

  @property
  def not_worse_range(self) -> tuple[float, float]:
    """The smallest and largest learning rate not significantly worse than the best."""
    kept = [lr for lr, k in zip(self.lrs, self.not_worse) if k]
    return (min(kept), max(kept)) if kept else (math.nan, math.nan)


def _close(a: float, b: float) -> bool:
  return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)


def _value(entry, name: str) -> float:
  try:
    return float(entry.value(name))
  except KeyError:
    return math.nan


def _runs(sweep, mask: np.ndarray, score: str) -> stats.Runs:
  """One point's runs (`mask` over the sweep's rows) as a `stats.Runs` design."""
  runs = sweep.rows
  idx = np.flatnonzero(mask)
  idx = idx[np.lexsort((runs["fold"][idx], runs["seed"][idx]))]
  column = np.asarray(runs[score_column("val_accuracy", score)], np.float64)
  return point_runs(runs, idx, column[idx], sweep.outcomes.get(score), True)


def _versus(a: stats.Runs, b: stats.Runs) -> tuple[float, float]:
  d = stats.paired(a, b)
  ci = stats.t_quantile_975(d.df) * d.se if math.isfinite(d.df) and d.df > 0 else math.nan
  return d.mean, ci


def arm_rows(cfg: FineTuneConfig, size: int, sweeps: Mapping[str, object]) -> list[ArmRow]:
  """The table's rows of one size: each arm's points, their P(best) and not-worse set among
  the arm's own learning rates (`results.subset_selection`), and its best against from
  scratch's best (`stats.paired`)."""
  rows, best_runs = [], {}
  for arm, scale in cfg.arms.items():
    sweep = sweeps["scratch" if scale is None else "pretrained"]
    runs = sweep.rows
    entries = sorted((a for a in sweep.aggregates if math.isfinite(a.learning_rate)
                      and (scale is None or _close(_value(a, "backbone_lr_scale"), scale))),
                     key=lambda a: a.learning_rate)
    masks = []
    for a in entries:
      sel = np.isclose(np.asarray(runs["learning_rate"], float), a.learning_rate, rtol=1e-6)
      if scale is not None:
        sel &= np.isclose(np.asarray(runs["backbone_lr_scale"], float), scale, rtol=1e-6,
                          atol=1e-12)
      masks.append(sel)
    score = entries[0].score
    eligible = [bool(a.eligible) for a in entries]
    p_best, keep = subset_selection(runs, masks, eligible, sweep.outcomes.get(score), score)
    ok = [i for i, a in enumerate(entries) if eligible[i] and math.isfinite(a.mean)]
    best = max(ok, key=lambda i: entries[i].mean) if ok else -1
    still = ~np.asarray(runs["stopped_early"], bool) & ~np.asarray(runs["diverged"], bool)
    if best >= 0:
      best_runs[arm] = _runs(sweep, masks[best], score)
    versus = (math.nan, math.nan)
    if scale is not None and arm in best_runs and "scratch" in best_runs:
      versus = _versus(best_runs[arm], best_runs["scratch"])
    rows.append(ArmRow(
        size=size, arm=arm, scale=scale, runs=max(a.n_total for a in entries),
        val_rows=max(a.n_rows for a in entries), lrs=tuple(a.learning_rate for a in entries),
        means=tuple(a.mean for a in entries), cis=tuple(a.ci95 for a in entries),
        p_best=tuple(p_best), not_worse=tuple(keep),
        diverged=tuple(a.n_diverged for a in entries),
        unfinished=tuple(int(np.sum(still & m)) for m in masks), best=best,
        ref=next(i for i, a in enumerate(entries) if _close(a.learning_rate, cfg.reference_lr)),
        vs_scratch=versus))
  return rows
