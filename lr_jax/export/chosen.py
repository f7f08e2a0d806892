"""The chosen configuration refit on all the sweep's rows; its validation-vs-test estimate."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
from absl import logging

from lr_jax.config import Experiment
from lr_jax.errors import ConfigError
from lr_jax.export.folder import FORMAT
from lr_jax.export.gaps import _gaps, _metric_name, scores
from lr_jax.export.rows import refit_rows
from lr_jax.io import jsonable
from lr_jax.trained import TrainedModel

ENSEMBLE_RULE = ("the mean of the members' softmax probabilities (classification) or outputs "
                 "(regression); one member per training seed")


def _chosen_rows(result, group: int) -> np.ndarray:
  """Row indices of the group's selected grid point (all its seeds and folds)."""
  best, g = result.best[group], result.groups[group]
  sel = result.rows["group"] == group
  for k in g.points:
    sel &= np.asarray(result.rows[k], np.float64) == best.value(k)
  return np.flatnonzero(sel)


def refit(result, group: int | None = None) -> "TrainedModel":
  """Retrains the selected configuration on every row the sweep saw, and scores it on the test set.

  The selected point of `group` (`result.best`) is trained, with each of the sweep's seeds, on
  the union of its folds' training and validation rows (`refit_rows`: all non-test data when
  `train_size` is unset) for the median best epoch of its sweep runs (seeds x folds), without
  early stopping; a schedule that spans the training (cosine, onecycle) spans these epochs.
  The members form an ensemble (`ENSEMBLE_RULE`). model.json's `refit.rows` and the estimate's
  line say which rows those are, how many of the non-test rows, and their indices. With a test
  set (`DataConfig.test_fraction`) it is scored once on the test rows, which no fold saw, and
  the chosen point's own sweep runs too: `honest_gaps` parts the selection's optimism from the
  refit's gain, each with its interval.

  Args:
    result: from `run_sweep`.
    group: the compile group whose selection to refit; None for a one-group sweep.

  Returns:
    The model; `model.card` is what `save_model` writes to model.json, `model.estimate` the
    validation-vs-test line and numbers.

  Raises:
    ConfigError: several groups and no `group`, no point selected, or every refit run diverged.
  """
  group = _refit_group(result, group)
  g, best = result.groups[group], result.best[group]
  chosen = _chosen_rows(result, group)
  best_epochs = np.asarray(result.rows["best_epoch"])[chosen]
  epochs = _refit_epochs(best_epochs)
  rows, rows_about = refit_rows(g)
  refit_exp = _refit_experiment(g, rows, epochs)
  seeds = tuple(int(s) for s in dict.fromkeys(g.seeds.tolist()))
  hparams = _fixed_hparams(g, best)
  logging.info("refit: lr %.3g, %d epochs (median best epoch of %d runs), %d rows (%s), seeds %s",
               best.learning_rate, epochs, len(chosen), len(rows), rows_about["which"], seeds)
  model, diverged = _fit_ensemble(g, best, refit_exp, seeds, hparams, epochs)
  test, gaps = _tested(result, group, chosen, model)
  num_points, num_eligible = _num_points(result, group)
  estimate = estimate_of(best, result.select, num_points, test, group, len(rows),
                         num_eligible=num_eligible, refit_rows=rows_about["which"], gaps=gaps)
  about = {"epochs": epochs, "sweep_best_epochs": best_epochs.tolist(), "n": len(rows),
           "rows": rows_about,
           "seeds": [s for s, d in zip(seeds, diverged) if not d],
           "diverged_seeds": [s for s, d in zip(seeds, diverged) if d],
           "ensemble": ENSEMBLE_RULE}
  card = _card(result, group, model, about, test, estimate, num_points, num_eligible)
  logging.info("%s", estimate["line"])
  return dataclasses.replace(model, card=jsonable(card))


def _refit_group(result, group: int | None) -> int:
  """The compile group to refit (`group`, or the only one), checked to have a selection."""
  if not result.groups:
    raise ConfigError("this result carries no groups (it was not built by run_sweep)")
  if group is None:
    if len(result.groups) > 1:
      raise ConfigError(f"the sweep has {len(result.groups)} compile groups; choose the one to "
                        f"refit: refit(result, group=0..{len(result.groups) - 1})")
    group = 0
  if not 0 <= group < len(result.groups):
    raise ConfigError(f"group must be in 0..{len(result.groups) - 1}, got {group!r}")
  best = result.best[group]
  if not math.isfinite(best.learning_rate):
    raise ConfigError(f"group {group} has no selected learning rate to refit: "
                      f"{best.reason or 'none eligible'}")
  return group


def _refit_experiment(g, rows: np.ndarray, epochs: int) -> Experiment:
  """The refit's experiment: group `g`'s configuration on its [R] `rows` (a data set of their
  own), for `epochs` epochs, without early stopping."""
  from lr_jax.data import Dataset, DataConfig
  ds, exp = g.dataset, g.experiment
  x = ds.x[rows].reshape((len(rows),) + tuple(ds.feature_shape))
  if ds.task == "classification" and len(np.unique(ds.y[rows])) != ds.num_classes:
    raise ConfigError("the refit rows lack a class; use a larger train_size")
  # The rows validate themselves: nothing is selected on them (no early stopping, the last
  # epoch's parameters), so they only cost one forward pass per epoch.
  data = Dataset.from_arrays(
      x, ds.y[rows], x, ds.y[rows], task=ds.task, name=f"{ds.name} (refit)",
      feature_names=ds.feature_names or None,
      class_names=ds.class_names if ds.task == "classification" else None)
  return Experiment(
      data=DataConfig(dataset=data, standardize=exp.data.standardize,
                      data_seed=exp.data.data_seed),
      model=exp.model, optim=exp.optim,
      train=dataclasses.replace(exp.train, epochs=epochs, patience=0, restore_best=False))


def _fixed_hparams(g, best) -> tuple:
  """The selected point's values of group `g`'s swept numbers other than the learning rate, as
  `Grid.hparams` (("namespace.name", (value,)), ...)."""
  from lr_jax import engine  # Late: the engine imports this module lazily.
  # Qualified: a user model's own number is known only by its namespace until planned.
  namespaces = {k: a.namespace for k, a in engine.programs._group_axes(g).items()}
  return tuple((f"{namespaces[k]}.{k}", (float(best.value(k)),))
               for k in g.points if k != "learning_rate")


def _fit_ensemble(g, best, refit_exp: Experiment, seeds: tuple, hparams: tuple,
                  epochs: int) -> tuple[TrainedModel, np.ndarray]:
  """Runs the refit (one run per seed) and ensembles the runs that did not diverge.

  Returns:
    (the ensemble, [S] whether each seed's run diverged).
  """
  from lr_jax import engine  # Late: the engine imports this module lazily.
  fit = engine.run_sweep(refit_exp, engine.Grid(learning_rates=(float(best.learning_rate),),
                                                seeds=seeds, hparams=hparams), model=g.model,
                        loss=g.loss, metrics=dict(g.metrics))
  diverged = np.asarray(fit.rows["diverged"], bool)
  if diverged.all():
    raise ConfigError(f"every refit run diverged (lr {best.learning_rate:.3g}, {epochs} "
                      "epochs on all the sweep's rows); nothing to export")
  if diverged.any():
    logging.warning("refit: seed(s) %s diverged and are left out of the ensemble",
                    np.asarray(fit.rows["seed"])[diverged].tolist())
  members = [fit.params_of(i) for i in range(fit.num_variants) if not diverged[i]]
  splits = fit.groups[0].splits
  return TrainedModel.build(g, members, splits.mean[0], splits.std[0]), diverged


def _tested(result, group: int, chosen: np.ndarray, model: TrainedModel):
  """The refit's `scores` on the test rows and the `honest_gaps` of the chosen point's [C]
  `chosen` runs beside it; (None, None) without a test set."""
  g = result.groups[group]
  ds = g.dataset
  test_idx = g.splits.test_idx
  test = gaps = None
  if len(test_idx):
    test = scores(model, ds.x[test_idx], ds.y[test_idx])
    gaps = _gaps(result, group, chosen, model)
  return test, gaps


def _num_points(result, group: int) -> tuple[int, int]:
  """The group's grid points, and how many of them could be selected (`Aggregate.eligible`)."""
  points = [a for a in result.aggregates if a.group == group]
  return len(points), sum(1 for a in points if a.eligible)


def _card(result, group: int, model: TrainedModel, refit_about: dict, test: dict | None,
          estimate: dict, num_points: int, num_eligible: int) -> dict:
  """What model.json says (before `jsonable`): the experiment, the data's task, shape and
  names, the standardization, the selection, the refit (`refit_about`), the test scores and
  the estimate."""
  g, best = result.groups[group], result.best[group]
  ds, exp = g.dataset, g.experiment
  return {
      "format": FORMAT,
      "experiment": result.config["experiments"][group],
      "user_model": g.model.name if g.model is not None else None,
      "task": ds.task, "feature_shape": list(ds.feature_shape),
      "feature_names": list(ds.feature_names), "label_column": _label_name(exp, ds),
      "class_names": list(ds.class_names),
      "standardization": {"mean": model.mean.tolist(), "std": model.std.tolist()},
      "selection": {
          "group": group, "rule": result.select, "num_points": num_points,
          "num_eligible": num_eligible,
          "hyperparameters": {k: float(best.value(k)) for k in g.points},
          "validation": {"metric": best.metric, "mean": best.mean, "ci95": best.ci95,
                         "n": best.n}},
      "refit": refit_about,
      "test": test, "estimate": estimate,
  }


def estimate_of(best, select: str, num_points: int, test: dict | None, group: int,
                refit_n: int, sweep_test: float | None = None, *,
                num_eligible: int | None = None, refit_rows: str | None = None,
                gaps: dict | None = None) -> dict:
  """The selected point's validation score beside its test score, the gaps between them.

  The gap is how much worse the test score is (validation - test for accuracy, test -
  validation for a loss): positive when the validation score was optimistic, as the best of
  many noisy scores tends to be (the winner's curse). The refit trains on more rows than each
  sweep run (the validation rows too), which pulls the other way. `gaps` (`honest_gaps`)
  separates the two, each with its 95% interval: `selection_gap`, the chosen point's own runs'
  validation score against their test score (the selection's optimism alone), and
  `refit_gain`, the refit's test score against those runs' (paired on the test rows). A gap
  is called optimistic (or the refit better) only when its interval excludes 0; otherwise it
  is "not distinguishable from 0" at these sizes (`report.estimate.gap_verdict`).

  Args:
    best: the selected point (`Aggregate`: `mean`, `n`, `higher_is_better`, `metric`).
    select: the selection rule.
    num_points: the group's grid points.
    test: the refit's `scores` on the test rows; None without a test set.
    group: the compile group.
    refit_n: the rows the refit trained on.
    sweep_test: the chosen point's runs' mean test score, without `gaps` (older callers).
    num_eligible: the points that could be selected (`Aggregate.eligible`); the line says
      "best of {num_eligible} eligible points ({num_points} in the grid)". None: unknown.
    refit_rows: which rows the refit trained on, in words (`refit_rows`).
    gaps: `honest_gaps` of the chosen runs and the refit on the test rows.

  Returns:
    `line` and its numbers: `group`, `metric`, `validation`, `validation_n`, `num_points`,
    `num_eligible`, `rule`, `test`, `test_n`, `test_ci95`, `gap`, `gap_ci95`, `refit_n`,
    `refit_rows`, `sweep_test`, `sweep_runs`, `selection_gap`, `selection_gap_ci95`,
    `refit_gain`, `refit_gain_ci95`, `validation_rows`, `covers` (None where not known).
  """
  classification = best.higher_is_better
  ranked = _metric_name(best)
  metric = ranked or ("accuracy" if classification else "loss")
  val = float(best.mean)
  how = "best" if select == "best" else f"rule {select}"
  points = f"{num_points} point{'s' if num_points != 1 else ''}"
  if num_eligible is not None:
    points = (f"{num_eligible} eligible point{'s' if num_eligible != 1 else ''} "
              f"({num_points} in the grid)")
  # The validation score is a mean over the chosen point's runs (seeds x folds): its n, as
  # the test score's n is its rows.
  val_n = int(best.n)
  biased = "optimistic" if num_eligible is None else "optimistically biased"
  ranks = ranked or str(best.metric).removeprefix("val_")  # What the validation score is.
  line = (f"validation {ranks} {val:.4f} (n={val_n} run{'s' if val_n != 1 else ''}; {how} of "
          f"{points}, {biased})")
  out = {"group": group, "metric": metric, "validation": val, "validation_n": val_n,
         "num_points": num_points, "num_eligible": num_eligible, "rule": select, "test": None,
         "test_n": 0, "test_ci95": None, "gap": None, "gap_ci95": None, "refit_n": refit_n,
         "refit_rows": refit_rows, "sweep_test": None, "sweep_runs": None,
         "selection_gap": None, "selection_gap_ci95": None, "refit_gain": None,
         "refit_gain_ci95": None, "validation_rows": None, "covers": None}
  refit_text = f"refit on {refit_n} rows" + (f": {refit_rows}" if refit_rows else "")
  if test is None:
    out["line"] = line + "; no test set (--test_fraction, --test_dataset)"
    if refit_rows:
      out["line"] += f"; {refit_text}"
    return out
  score = test[metric]
  if ranked is None:  # A user metric: the test rows are scored on the task's, not on it.
    out.update(test=score, test_n=test["n"])
    out["line"] = (f"{line} vs test {metric} {score:.4f} (n={test['n']}; {refit_text}): no "
                   f"gap, the selection ranks {best.metric}, which the test rows are not "
                   "scored on")
    return out
  gap = val - score if classification else score - val
  out.update(test=score, test_n=test["n"], gap=gap)
  line += f" vs test {score:.4f} (n={test['n']}; {refit_text}): gap {_num(gap)}"
  if gaps is not None:
    out.update({k: gaps[k] for k in ("test_ci95", "gap_ci95", "sweep_test", "sweep_runs",
                                     "selection_gap", "selection_gap_ci95", "refit_gain",
                                     "refit_gain_ci95", "validation_rows", "covers")})
    line += _gaps_text(gaps, test["n"])
  elif sweep_test is not None:
    selection_gap = val - sweep_test if classification else sweep_test - val
    out.update(sweep_test=sweep_test, selection_gap=selection_gap)
    line += (f"; the chosen point's sweep runs score {sweep_test:.4f} on the test rows: "
             f"gap {selection_gap:.4f}")
  out["line"] = line
  return out


def _gaps_text(gaps: dict, test_n: int) -> str:
  """The estimate line's words on `gaps` (`honest_gaps`), after the gap: its interval, the
  selection-only gap and the refit gain, each with its interval and verdict."""
  from lr_jax.report.estimate import gap_verdict
  n_test = f"n_test = {test_n} rows"
  return (f" ± {gaps['gap_ci95']:.4f}; selection-only gap {_num(gaps['selection_gap'], '+')} "
          f"± {gaps['selection_gap_ci95']:.4f} (validation vs the chosen point's own "
          f"{gaps['sweep_runs']} sweep run{'s' if gaps['sweep_runs'] != 1 else ''} on the test "
          f"rows, {gaps['sweep_test']:.4f}): "
          + gap_verdict(gaps["selection_gap"], gaps["selection_gap_ci95"], n_test,
                        "the validation score was optimistic",
                        "the validation score was pessimistic")
          + f"; refit gain {_num(gaps['refit_gain'], '+')} ± {gaps['refit_gain_ci95']:.4f} "
          f"(refit vs those runs, paired on the test rows): "
          + gap_verdict(gaps["refit_gain"], gaps["refit_gain_ci95"], n_test,
                        "the refit scores better", "the refit scores worse"))


def _num(x: float, sign: str = "") -> str:
  """`x` to 4 decimals, never "-0.0000" (a difference of equal scores, in float)."""
  return f"{round(float(x), 4) + 0.0:{sign}.4f}"


def _refit_epochs(best_epochs: np.ndarray) -> int:
  """The refit's epochs: the median best epoch of the chosen point's runs, half up, >= 1."""
  return max(1, math.floor(float(np.median(best_epochs)) + 0.5))  # Half up, not to even.


def _label_name(exp: Experiment, ds) -> str | None:
  """The label column's name in a .csv training file (predictions may carry it), else None."""
  path = exp.data.dataset
  if not isinstance(path, str) or not path.lower().endswith(".csv") or not ds.feature_names:
    return None
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      header = [h.strip() for h in next(csv.reader(f), [])]
  except OSError:
    return None
  rest = [h for h in header if h not in ds.feature_names]
  return rest[0] if len(rest) == 1 else None
