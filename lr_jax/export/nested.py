"""Nested cross-validation's estimate: each outer fold's choice refit, scored on its test part."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from absl import logging

from lr_jax.export.chosen import _refit_epochs
from lr_jax.export.gaps import scores
from lr_jax.trained import TrainedModel


def nested_estimates(result) -> list:
  """Scores each outer fold's choice on its test part: nested cross-validation's estimate.

  For every group with outer folds (`DataConfig.outer_folds`), each outer fold's inner
  selection (`results.outer_selection`: its own aggregates and rule) picks a point; the point
  is refit on the outer fold's training part, with each of the sweep's seeds, for the median
  best epoch of its inner runs, as `refit` does, and the ensemble is scored once on the outer
  test part. The outer folds' refits are streams of one compiled program (one per distinct
  epoch count: the epochs are a static shape of the program); each trains every chosen point,
  and only its own choice is scored.

  Args:
    result: from `run_sweep` on nested splits.

  Returns:
    One `results.NestedEstimate` per group with outer folds.
  """
  out = []
  for gi, g in enumerate(result.groups):
    if not g.splits.num_outer:
      continue
    choices, folds = _outer_choices(result, gi)
    by_epochs = {}
    for o, (_, epochs, _) in choices.items():
      by_epochs.setdefault(epochs, []).append(o)
    for epochs, outers in sorted(by_epochs.items()):
      folds.update(_refit_outer_folds(g, choices, outers, epochs))
    estimate = _nested_estimate(result, gi, folds)
    logging.info("%s", estimate.line)
    out.append(estimate)
  return out


def _outer_choices(result, gi: int) -> tuple[dict, dict]:
  """Each outer fold's inner selection in group `gi`: what to refit, or why nothing is.

  Returns:
    ({outer: (point tuple, epochs, inner validation mean)} of the folds with a selected point,
     {outer: `results.OuterFold`} of those without one).
  """
  from lr_jax import results  # Late: the engine imports this module lazily.
  g = result.groups[gi]
  splits = g.splits
  metric = "accuracy" if g.dataset.task == "classification" else "loss"
  names = list(g.points)
  choices = {}  # outer -> (point tuple, epochs, inner validation mean)
  folds = {}
  for o in range(splits.num_outer):
    train, test = splits.outer_rows(o)
    _, best = results.outer_selection(result, gi, o)
    base = dict(outer=o, train_n=len(train), test_n=len(test))
    if not math.isfinite(best.learning_rate):
      folds[o] = results.OuterFold(**base, hyperparameters={}, validation=math.nan, epochs=0,
                                   score=math.nan, reason=best.reason or "none selected")
      continue
    inner = splits.inner_folds
    sel = (result.rows["group"] == gi) & (result.rows["fold"] // inner == o)
    for k in names:
      sel &= np.asarray(result.rows[k], np.float64) == best.value(k)
    point = tuple(float(best.value(k)) for k in names)
    # The selection's own score, where it is the metric the outer folds are scored by.
    validation = float(best.mean) if best.metric == f"val_{metric}" else math.nan
    choices[o] = (point, _refit_epochs(np.asarray(result.rows["best_epoch"])[sel]),
                  validation)
  return choices, folds


def _refit_outer_folds(g, choices: dict, outers: list, epochs: int) -> dict:
  """Refits the choices of `outers` (the outer folds whose choice trains for `epochs` epochs),
  as streams of one program, and scores each fold's own choice on its test part.

  Returns:
    {outer: `results.OuterFold`}.
  """
  from lr_jax import engine, results  # Late: the engine imports this module lazily.
  from lr_jax.data import fold_splits
  splits, ds = g.splits, g.dataset
  metric = "accuracy" if ds.task == "classification" else "loss"
  names = list(g.points)
  seeds = tuple(int(s) for s in dict.fromkeys(g.seeds.tolist()))
  folds = {}
  parts = [splits.outer_rows(o) for o in outers]
  refit_splits = fold_splits(ds, g.experiment.data.standardize, [p[0] for p in parts],
                             [p[1] for p in parts])
  points = list(dict.fromkeys(choices[o][0] for o in outers))
  exp = g.experiment
  exp = dataclasses.replace(exp, train=dataclasses.replace(
      exp.train, epochs=epochs, patience=0, restore_best=False))
  group = dataclasses.replace(
      g, experiment=exp, splits=refit_splits,
      points={k: np.array([p[i] for p in points], np.float64) for i, k in enumerate(names)},
      seeds=np.repeat(np.array(seeds, np.int32), len(outers)),
      folds=np.tile(np.arange(len(outers), dtype=np.int32), len(seeds)))
  logging.info("nested CV: refitting outer fold(s) %s for %d epochs", outers, epochs)
  fit = engine.run_planned(
      [group], engine.Grid(learning_rates=tuple(dict.fromkeys(p[0] for p in points)),
                           seeds=seeds))
  diverged = np.asarray(fit.rows["diverged"], bool)
  for j, o in enumerate(outers):
    point, _, validation = choices[o]
    sel = np.asarray(fit.rows["fold"]) == j
    for k, v in zip(names, point):
      sel &= np.asarray(fit.rows[k], np.float64) == v
    members = [fit.params_of(int(i)) for i in np.flatnonzero(sel & ~diverged)]
    train, test = parts[j]
    base = dict(outer=o, train_n=len(train), test_n=len(test),
                hyperparameters=dict(zip(names, point)), validation=validation,
                epochs=epochs)
    if not members:
      folds[o] = results.OuterFold(**base, score=math.nan,
                                   reason="every refit seed diverged")
      continue
    model = TrainedModel.build(g, members, refit_splits.mean[j], refit_splits.std[j])
    folds[o] = results.OuterFold(**base, score=float(
        scores(model, ds.x[test], ds.y[test])[metric]))
  return folds


def _nested_estimate(result, gi: int, folds: dict):
  """Group `gi`'s `results.NestedEstimate` of its outer folds' `folds` ({outer: OuterFold})."""
  from lr_jax import results, stats  # Late: the engine imports this module lazily.
  g = result.groups[gi]
  classification = g.dataset.task == "classification"
  metric = "accuracy" if classification else "loss"
  ordered = tuple(folds[o] for o in range(g.splits.num_outer))
  summary = stats.summarize([f.score for f in ordered])
  counts = {}
  for f in ordered:
    if f.hyperparameters:
      lr = f.hyperparameters["learning_rate"]
      counts[lr] = counts.get(lr, 0) + 1
  return results.NestedEstimate(
      group=gi, metric=metric, higher_is_better=classification, rule=result.select,
      folds=ordered, n=summary.n, mean=summary.mean, std=summary.std, ci95=summary.ci95,
      validation=stats.summarize([f.validation for f in ordered]).mean,
      selected=tuple(sorted(counts.items())))
