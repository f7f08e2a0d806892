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
from lr_jax.io import jsonable
from lr_jax.trained import TrainedModel

ENSEMBLE_RULE = ("the mean of the members' softmax probabilities (classification) or outputs "
                 "(regression); one member per training seed")


def scores(model: TrainedModel, x, y_ids: np.ndarray) -> dict:
  """Accuracy and loss of `model` on raw features `x` and class ids (or targets) `y_ids`.

  The loss is the cross-entropy of the ensemble's probabilities, or the squared error of its
  mean output for regression: the sweep's validation loss, for one member.
  """
  out = model.outputs(x).astype(np.float64)
  y = np.asarray(y_ids)
  if model.task == "classification":
    p = out[np.arange(len(y)), y.astype(int)]
    return {"n": int(len(y)), "accuracy": float(np.mean(np.argmax(out, -1) == y)),
            "loss": float(np.mean(-np.log(np.maximum(p, 1e-30))))}
  return {"n": int(len(y)), "accuracy": None, "loss": float(np.mean((out[:, 0] - y) ** 2))}


def _chosen_rows(result, group: int) -> np.ndarray:
  """Row indices of the group's selected grid point (all its seeds and folds)."""
  best, g = result.best[group], result.groups[group]
  sel = result.rows["group"] == group
  for k in g.points:
    sel &= np.asarray(result.rows[k], np.float64) == best.value(k)
  return np.flatnonzero(sel)


def _seen_rows(splits) -> np.ndarray:
  """Every row some fold trained or validated on: the data the sweep saw."""
  return np.union1d(splits.train_idx[splits.train_mask], splits.val_idx[splits.val_mask])


def refit(result, group: int | None = None) -> "TrainedModel":
  """Retrains the selected configuration on every row the sweep saw, and scores it on the test set.

  The selected point of `group` (`result.best`) is trained, with each of the sweep's seeds, on
  the union of its folds' training and validation rows (all non-test data when `train_size`
  is unset) for the median best epoch of its sweep runs (seeds x folds), without early
  stopping; a schedule that spans the training (cosine, onecycle) spans these epochs. The
  members form an ensemble (`ENSEMBLE_RULE`). With a test set (`DataConfig.test_fraction`) it
  is scored once on the test rows, which no fold saw.

  Args:
    result: from `run_sweep`.
    group: the compile group whose selection to refit; None for a one-group sweep.

  Returns:
    The model; `model.card` is what `save_model` writes to model.json, `model.estimate` the
    validation-vs-test line and numbers.

  Raises:
    ConfigError: several groups and no `group`, no point selected, or every refit run diverged.
  """
  from lr_jax import engine  # Late: the engine imports this module lazily.
  from lr_jax.data import Dataset, DataConfig
  if not result.groups:
    raise ConfigError("this result carries no groups (it was not built by run_sweep)")
  if group is None:
    if len(result.groups) > 1:
      raise ConfigError(f"the sweep has {len(result.groups)} compile groups; choose the one to "
                        f"refit: refit(result, group=0..{len(result.groups) - 1})")
    group = 0
  if not 0 <= group < len(result.groups):
    raise ConfigError(f"group must be in 0..{len(result.groups) - 1}, got {group!r}")
  g, best = result.groups[group], result.best[group]
  if not math.isfinite(best.learning_rate):
    raise ConfigError(f"group {group} has no selected learning rate to refit: "
                      f"{best.reason or 'none eligible'}")
  chosen = _chosen_rows(result, group)
  best_epochs = np.asarray(result.rows["best_epoch"])[chosen]
  epochs = _refit_epochs(best_epochs)

  ds, exp = g.dataset, g.experiment
  rows = _seen_rows(g.splits)
  x = ds.x[rows].reshape((len(rows),) + tuple(ds.feature_shape))
  if ds.task == "classification" and len(np.unique(ds.y[rows])) != ds.num_classes:
    raise ConfigError("the refit rows lack a class; use a larger train_size")
  # The rows validate themselves: nothing is selected on them (no early stopping, the last
  # epoch's parameters), so they only cost one forward pass per epoch.
  data = Dataset.from_arrays(
      x, ds.y[rows], x, ds.y[rows], task=ds.task, name=f"{ds.name} (refit)",
      feature_names=ds.feature_names or None,
      class_names=ds.class_names if ds.task == "classification" else None)
  refit_exp = Experiment(
      data=DataConfig(dataset=data, standardize=exp.data.standardize,
                      data_seed=exp.data.data_seed),
      model=exp.model, optim=exp.optim,
      train=dataclasses.replace(exp.train, epochs=epochs, patience=0, restore_best=False))
  seeds = tuple(int(s) for s in dict.fromkeys(g.seeds.tolist()))
  # Qualified: a user model's own number is known only by its namespace until planned.
  namespaces = {k: a.namespace for k, a in engine.programs._group_axes(g).items()}
  hparams = tuple((f"{namespaces[k]}.{k}", (float(best.value(k)),))
                  for k in g.points if k != "learning_rate")
  logging.info("refit: lr %.3g, %d epochs (median best epoch of %d runs), %d rows, seeds %s",
               best.learning_rate, epochs, len(chosen), len(rows), seeds)
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
  model = TrainedModel.build(g, members, splits.mean[0], splits.std[0])

  test_idx = g.splits.test_idx
  test = sweep_test = None
  if len(test_idx):
    test = scores(model, ds.x[test_idx], ds.y[test_idx])
    # The chosen point's own sweep runs, trained on the rows their validation scores come from:
    # validation minus this is the optimism of selection alone.
    key = "accuracy" if ds.task == "classification" else "loss"
    sweep_test = float(np.mean([scores(result.model_of(int(i)), ds.x[test_idx],
                                       ds.y[test_idx])[key] for i in chosen]))
  num_points = sum(1 for a in result.aggregates if a.group == group)
  estimate = estimate_of(best, result.select, num_points, test, group, len(rows), sweep_test)
  card = {
      "format": FORMAT,
      "experiment": result.config["experiments"][group],
      "user_model": g.model.name if g.model is not None else None,
      "task": ds.task, "feature_shape": list(ds.feature_shape),
      "feature_names": list(ds.feature_names), "label_column": _label_name(exp, ds),
      "class_names": list(ds.class_names),
      "standardization": {"mean": model.mean.tolist(), "std": model.std.tolist()},
      "selection": {
          "group": group, "rule": result.select, "num_points": num_points,
          "hyperparameters": {k: float(best.value(k)) for k in g.points},
          "validation": {"metric": best.metric, "mean": best.mean, "ci95": best.ci95,
                         "n": best.n}},
      "refit": {"epochs": epochs, "sweep_best_epochs": best_epochs.tolist(), "n": len(rows),
                "seeds": [s for s, d in zip(seeds, diverged) if not d],
                "diverged_seeds": [s for s, d in zip(seeds, diverged) if d],
                "ensemble": ENSEMBLE_RULE},
      "test": test, "estimate": estimate,
  }
  logging.info("%s", estimate["line"])
  return dataclasses.replace(model, card=jsonable(card))


def estimate_of(best, select: str, num_points: int, test: dict | None, group: int,
                refit_n: int, sweep_test: float | None = None) -> dict:
  """The selected point's validation score beside its test score, and the gap between them.

  The gap is how much worse the test score is (validation - test for accuracy, test -
  validation for a loss): positive when the validation score was optimistic, as the best of
  many noisy scores tends to be (the winner's curse). The refit trains on more rows than each
  sweep run (the validation rows too), which pulls the other way; `sweep_test`, the mean
  test score of the chosen point's own sweep runs, separates the two: `selection_gap` is the
  gap between their validation and test scores, from selection (and sampling) alone.
  """
  classification = best.higher_is_better
  metric = "accuracy" if classification else "loss"
  val = float(best.mean)
  how = "best" if select == "best" else f"rule {select}"
  points = f"{num_points} point{'s' if num_points != 1 else ''}"
  # The validation score is a mean over the chosen point's runs (seeds x folds): its n, as
  # the test score's n is its rows.
  val_n = int(best.n)
  line = (f"validation {metric} {val:.4f} (n={val_n} run{'s' if val_n != 1 else ''}; {how} of "
          f"{points}, optimistic)")
  out = {"group": group, "metric": metric, "validation": val, "validation_n": val_n,
         "num_points": num_points, "rule": select, "test": None, "test_n": 0, "gap": None,
         "refit_n": refit_n, "sweep_test": None, "selection_gap": None}
  if test is None:
    out["line"] = line + "; no test set (--test_fraction, --test_dataset)"
    return out
  score = test[metric]
  gap = val - score if classification else score - val
  out.update(test=score, test_n=test["n"], gap=gap)
  out["line"] = (f"{line} vs test {score:.4f} (n={test['n']}; refit on {refit_n} rows): "
                 f"gap {gap:.4f}")
  if sweep_test is not None:
    selection_gap = val - sweep_test if classification else sweep_test - val
    out.update(sweep_test=sweep_test, selection_gap=selection_gap)
    out["line"] += (f"; the chosen point's sweep runs score {sweep_test:.4f} on the test rows: "
                    f"gap {selection_gap:.4f}")
  return out


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
