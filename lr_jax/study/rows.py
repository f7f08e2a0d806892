"""The study's table from a finished sweep: one `CellRow` per row of each cell."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lr_jax import stats
from lr_jax.results.aggregates import subset_aggregates
from lr_jax.results.subsets import subset_selection
from lr_jax.study.cells import CellRow, cell_row
from lr_jax.study.config import StudyConfig
from lr_jax.study.plan import Cell, StudyPlan, schedule_rates

if TYPE_CHECKING:
  from lr_jax.results import SweepResult


def row_keys(cfg: StudyConfig, cell: Cell) -> list[tuple[str, float, str]]:
  """The (schedule, label noise, regularisation) of each table row of a cell, in table order."""
  noise = cfg.label_noise if cell.noisy else (0.0,)
  regs = ("", "tuned") if cell.regularised else ("",)
  return [(s, v, r) for r in regs for v in noise for s in cell.schedules]


def _close(a, b) -> bool:
  return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)


def _off(entry: Mapping[str, float], name: str) -> float:
  """An aggregate's value of an axis; 0 (off) where its group does not sweep it (NaN)."""
  value = float(entry.get(name, math.nan))
  return 0.0 if math.isnan(value) else value


def study_rows(plan: StudyPlan, sweep: SweepResult) -> list[CellRow]:
  """The study's table: one `CellRow` per (cell, schedule, label noise, regularisation).

  P(best) and the not-worse set are the row's own, from its runs paired by stream
  (`results.subset_selection`): the aggregates' are over the whole compile group, every schedule,
  noise level and regularisation together. A row without regularisation is the subset of
  its group's points where every regularisation axis is 0; a tuned row has all of them,
  and reports per learning rate its best point (`CellRow.regularisation`). The runs still
  training at the end of the budget (neither stopped early nor diverged) come from the
  sweep's rows too. Where the cell has a test set, the best point's runs are scored on it.
  """
  cfg = plan.config
  runs = sweep.rows
  unfinished_N = ~np.asarray(runs["stopped_early"], bool) & ~np.asarray(runs["diverged"], bool)
  reg_names = [name for name, _ in cfg.regularisation]
  # The score of the sweep's aggregates, so a cell's P(best) ranks what its means show.
  score = next((a["score"] for a in sweep.aggregates if "score" in a), "best_epoch")
  rows = []
  for gi, cell in enumerate(plan.cells):
    # The noise arm's runs are scored twice: at the epoch clean validation labels chose, and
    # at the last epoch they trained (`CellRow.score`).
    for scored in (score, "last_epoch") if cell.noisy else (score,):
      mine = (subset_aggregates(sweep, np.asarray(runs["group"]) == gi, gi, scored)
              if scored != score else [a for a in sweep.aggregates if a["group"] == gi])
      outcomes = getattr(sweep, "outcomes", {}).get(scored)
      # The group's own axes: another group's are NaN in its entries and rows.
      points = [k for k in ("learning_rate", "decay_rate", "label_noise", *reg_names)
                if mine and math.isfinite(mine[0].get(k, math.nan))]
      in_group = np.asarray(runs["group"]) == gi
      for schedule, noise, reg in row_keys(cfg, cell):
        def wanted(a):
          return (_close(a["decay_rate"], schedule_rates(cell)[schedule])
                  and _close(_off(a, "label_noise"), noise)
                  and (reg or all(_close(_off(a, k), 0.0) for k in reg_names)))
        entries = [a for a in mine if wanted(a)]
        masks = []
        for a in entries:
          sel = in_group.copy()
          for k in points:
            sel &= np.isclose(np.asarray(runs[k], float), a[k], rtol=1e-6, atol=1e-12)
          masks.append(sel)
        row = _row_of(cfg, cell, runs, entries, masks, unfinished_N, schedule=schedule,
                      label_noise=noise, regularisation=reg, reg_names=reg_names,
                      outcomes=outcomes, score=scored,
                      label="" if scored == score else scored)
        if cell.tested and getattr(sweep, "groups", None) and scored == score:
          row = _with_test(row, sweep, gi, entries, masks)
        rows.append(row)
  return rows


def _row_of(cfg: StudyConfig, cell: Cell, runs: Mapping[str, np.ndarray], entries: list[dict],
            masks: list[np.ndarray], unfinished_N: np.ndarray, *, schedule: str,
            label_noise: float, regularisation: str, reg_names: Sequence[str],
            outcomes: Sequence[np.ndarray] | None = None, score: str = "best_epoch",
            label: str = "") -> CellRow:
  """One table row from its grid points' aggregates and run masks (several per learning rate
  when tuned: each learning rate shows its best point's numbers, and is not worse than the
  best when that point is: testing each of its settings and keeping it when any passes would
  keep a learning rate by chance more often the more settings it has).

  `score` is the epoch its runs are scored at (`results.SCORES`), `label` the row's
  `CellRow.score`."""
  eligible = [bool(a["eligible"]) for a in entries]
  p_point, keep_point = subset_selection(runs, masks, eligible, outcomes, score)
  by_lr: dict[float, list[int]] = {}
  for i, a in enumerate(entries):
    by_lr.setdefault(float(a["learning_rate"]), []).append(i)
  lrs, chosen, p_best, keep = [], [], [], []
  for lr, idx in by_lr.items():
    ok = [i for i in idx if eligible[i] and math.isfinite(entries[i]["mean"])]
    chosen.append(max(ok, key=lambda i: entries[i]["mean"]) if ok else idx[0])
    lrs.append(lr)
    p = [p_point[i] for i in idx]
    p_best.append(math.nan if any(math.isnan(x) for x in p) else float(sum(p)))
    keep.append(keep_point[chosen[-1]])
  pick = [entries[i] for i in chosen]
  setting, plain_worse = (), None
  finite = [i for i, a in zip(chosen, pick) if a["eligible"] and math.isfinite(a["mean"])]
  if finite and regularisation:
    best = max(finite, key=lambda i: entries[i]["mean"])
    setting = tuple((k, _off(entries[best], k)) for k in reg_names)
    if regularisation:
      plain = [i for i in range(len(entries)) if eligible[i]
               and all(_close(_off(entries[i], k), 0.0) for k in reg_names)]
      if plain and not any(math.isnan(p_point[i]) for i in plain):
        top = max(plain, key=lambda i: entries[i]["mean"])
        # The tuned best is the best of `settings` settings: Bonferroni over them, so a
        # "significantly worse" survives having picked the luckiest one.
        settings = len(by_lr[float(entries[best]["learning_rate"])])
        _, kept = subset_selection(runs, [masks[best], masks[top]], [True, True], outcomes,
                                   score, alpha=stats.ALPHA / settings)
        plain_worse = best != top and not kept[1]
  return cell_row(
      optimizer=cell.optimizer, width=cell.width, schedule=schedule,
      train_size=cell.train_size, runs=max(a["n_total"] for a in entries), steps=cell.steps,
      lrs=lrs, mean=[a["mean"] for a in pick], ci95=[a["ci95"] for a in pick],
      diverged=[a["diverged"] for a in pick], reference_lr=cfg.reference_lr,
      tolerance=cfg.tolerance, budget=cell.budget, p_best=p_best, not_worse=keep,
      unfinished=[int(np.sum(unfinished_N & masks[i])) for i in chosen],
      regularisation=regularisation, label_noise=label_noise, best_setting=setting,
      plain_worse=plain_worse, folds=cell.folds, arm=cell.arm, score=label)


def _with_test(row: CellRow, sweep: SweepResult, group: int, entries: list[dict],
               masks: list[np.ndarray]) -> CellRow:
  """The row with its best point's runs scored on the group's held-out test rows."""
  from lr_jax import export
  from lr_jax.stats import summarize
  g = sweep.groups[group]
  test_idx = g.splits.test_idx
  if not len(test_idx) or not math.isfinite(row.best_lr):
    return row
  at_best = [i for i, a in enumerate(entries)
             if _close(a["learning_rate"], row.best_lr) and _close(a["mean"], row.best_mean)
             and a["eligible"]]
  if not at_best:
    return row
  x, y = g.dataset.x[test_idx], g.dataset.y[test_idx]
  scores = [export.scores(sweep.model_of(int(i)), x, y)["accuracy"]
            for i in np.flatnonzero(masks[at_best[0]])]
  summary = summarize(scores)
  return dataclasses.replace(row, test_mean=summary.mean, test_ci=summary.ci95,
                             test_n=int(len(test_idx)))
