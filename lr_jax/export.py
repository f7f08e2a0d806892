"""A trained model out of a sweep: refit the chosen configuration, test it once, save it.

    result = run_sweep(Experiment(data=DataConfig(test_fraction=0.2)), grid)
    model = refit(result)            # the selected point, retrained on every row the sweep saw
    model.estimate["line"]           # "validation 0.962 (selected from 16 points, ...) vs test ..."
    save_model(model, "runs/model")  # params.msgpack + model.json
    load_model("runs/model").predict(x_raw)

The refit reuses the engine (`run_sweep` on the sweep's rows, a fixed number of epochs), so
there is one training loop. Parameters are saved with `flax.serialization` (msgpack): one small
file, bit-exact float32, read back without any async machinery; Orbax's checkpoint directories
solve sharded, asynchronous saving, which a model of a few thousand parameters does not need.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os

import jax
import numpy as np
from absl import logging

from lr_jax import hparams
from lr_jax.config import Experiment, ModelConfig
from lr_jax.errors import ConfigError
from lr_jax.io import UNREADABLE, atomic_write, jsonable
from lr_jax.models import Model
from lr_jax.trained import TrainedModel, built_model, non_finite, num_outputs

FORMAT = "lr_jax.model/1"
PARAMS_NAME = "params.msgpack"
CARD_NAME = "model.json"
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


# ----------------------------------------------------------------------------- refit


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


# ----------------------------------------------------------------------------- nested CV


def _refit_epochs(best_epochs: np.ndarray) -> int:
  """The refit's epochs: the median best epoch of the chosen point's runs, half up, >= 1."""
  return max(1, math.floor(float(np.median(best_epochs)) + 0.5))  # Half up, not to even.


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
  from lr_jax import engine, results, stats  # Late: the engine imports this module lazily.
  from lr_jax.data import fold_splits
  out = []
  for gi, g in enumerate(result.groups):
    splits = g.splits
    if not splits.num_outer:
      continue
    ds = g.dataset
    classification = ds.task == "classification"
    metric = "accuracy" if classification else "loss"
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
    seeds = tuple(int(s) for s in dict.fromkeys(g.seeds.tolist()))
    by_epochs = {}
    for o, (_, epochs, _) in choices.items():
      by_epochs.setdefault(epochs, []).append(o)
    for epochs, outers in sorted(by_epochs.items()):
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
    ordered = tuple(folds[o] for o in range(splits.num_outer))
    summary = stats.summarize([f.score for f in ordered])
    counts = {}
    for f in ordered:
      if f.hyperparameters:
        lr = f.hyperparameters["learning_rate"]
        counts[lr] = counts.get(lr, 0) + 1
    estimate = results.NestedEstimate(
        group=gi, metric=metric, higher_is_better=classification, rule=result.select,
        folds=ordered, n=summary.n, mean=summary.mean, std=summary.std, ci95=summary.ci95,
        validation=stats.summarize([f.validation for f in ordered]).mean,
        selected=tuple(sorted(counts.items())))
    logging.info("%s", estimate.line)
    out.append(estimate)
  return out


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


# ----------------------------------------------------------------------------- files


def model_folder(path: str, identity: dict, overwrite: bool = False, flag: str = "--save_model"):
  """The model's folder as a `lr_jax.outputs.OutputFolder`: checked, locked, written as one unit.

  Open it before training, so a bad path is refused before anything compiles.
  """
  from lr_jax.outputs import OutputFolder
  return OutputFolder(path, identity={**identity, "kind": "model"}, overwrite=overwrite,
                      flag=flag, overwrite_hint="--overwrite" if flag.startswith("--")
                      else "overwrite=True")


def write_model(model: TrainedModel, directory: str) -> list[str]:
  """Writes `params.msgpack` and `model.json` into `directory` (a staging folder), atomically."""
  from flax import serialization
  members = {str(i): p for i, p in enumerate(model.params)}
  blob = serialization.msgpack_serialize(
      serialization.to_state_dict({"members": jax.device_get(members)}))
  paths = [os.path.join(directory, PARAMS_NAME), os.path.join(directory, CARD_NAME)]
  atomic_write(paths[0], blob)
  atomic_write(paths[1], (json.dumps(model.card, indent=2) + "\n").encode())
  return paths


def save_model(model: TrainedModel, path: str, overwrite: bool = False) -> list[str]:
  """Saves a refit model into folder `path`: `params.msgpack` and `model.json`, as one unit.

  Args:
    model: from `refit`.
    path: the folder; created if missing. The same configuration's model is replaced; another
      configuration's files only with `overwrite`.
    overwrite: replace another run's files.

  Returns:
    The paths written.

  Raises:
    TypeError: `model` is not a `TrainedModel` (e.g. the sweep's result: refit it first).
  """
  if not isinstance(model, TrainedModel):
    hint = (" (a sweep's result: save lr_jax.refit(result))"
            if type(model).__name__ == "SweepResult" else "")
    raise TypeError(f"save_model takes a TrainedModel (from lr_jax.refit), got "
                    f"{type(model).__module__}.{type(model).__qualname__}{hint}")
  with model_folder(path, {"config": model.card.get("experiment")}, overwrite,
                    flag="path") as folder:
    with folder.staging() as staging:
      names = [os.path.basename(p) for p in write_model(model, staging)]
  return [os.path.join(path, n) for n in names]


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split()) or type(e).__name__


def _leaf_shapes(tree) -> dict[str, tuple]:
  """{'Dense_0/kernel': shape} of a parameter tree (its state dict: plain nested dicts)."""
  from flax import serialization
  leaves, _ = jax.tree_util.tree_flatten_with_path(serialization.to_state_dict(tree))
  return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path):
          tuple(np.shape(leaf)) for path, leaf in leaves}


def _architecture_mismatch(want: dict[str, tuple], got: dict[str, tuple]) -> str | None:
  """How a member's parameters differ from the model's, or None where they match."""
  for name, shape in want.items():
    if name not in got:
      return f"it lacks parameter {name} (shape {shape})"
    if got[name] != shape:
      return f"expected shape {shape} for {name}, found {got[name]}"
  extra = [n for n in got if n not in want]
  if extra:
    return f"it has parameter(s) the model lacks: {', '.join(extra[:3])}"
  return None


def load_model(path: str, model: Model | None = None) -> TrainedModel:
  """Loads a model saved by `save_model` (or `lr_sweep --save_model=DIR`).

  Everything is checked here, so a damaged folder is one `ConfigError` at load, never an error
  deep inside a prediction: model.json must be JSON with every key this needs, params.msgpack
  must decode whole, and every member's parameter shapes must be the architecture's.

  Args:
    path: the model's folder.
    model: the user model it was trained with (`from_linen`/`from_nnx`); built-in models are
      rebuilt from model.json.

  Returns:
    A `TrainedModel`: `predict(x)` and `predict_proba(x)` on raw features.

  Raises:
    ConfigError: a missing folder or file, a file of another format, a user model not given,
      or a folder that is not a valid model ("<path> is not a valid lr_jax model folder:
      params.msgpack is truncated", "... params.msgpack does not match model.json's
      architecture (member 0): expected shape (4, 8) for Dense_0/kernel, found (4, 16)",
      "... model.json lacks 'task'").
  """
  from flax import serialization
  card_path, params_path = os.path.join(path, CARD_NAME), os.path.join(path, PARAMS_NAME)
  if not os.path.isdir(path):
    raise ConfigError(f"model folder {path!r} does not exist (save one with lr_sweep "
                      "--save_model=DIR)")
  for p in (card_path, params_path):
    if not os.path.isfile(p):
      raise ConfigError(f"{path!r} is not a saved model: it has no {os.path.basename(p)}")

  def invalid(what: str) -> ConfigError:
    return ConfigError(f"{path!r} is not a valid lr_jax model folder: {what}")

  try:
    with open(card_path, encoding="utf-8") as f:
      card = json.load(f)
  except OSError as e:
    raise ConfigError(f"cannot read {card_path!r}: {_one_line(e)}") from None
  except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
    raise invalid(f"{CARD_NAME} is not JSON ({_one_line(e)})") from None
  if not isinstance(card, dict) or card.get("format") != FORMAT:
    raise ConfigError(f"{card_path!r} is not an lr_jax model card (format {FORMAT!r})")

  def field(*keys, kind=None):
    """card[keys[0]][keys[1]]...: a missing key or a value of the wrong kind is `invalid`."""
    value, seen = card, []
    for k in keys:
      seen.append(k)
      if not isinstance(value, dict) or k not in value:
        raise invalid(f"{CARD_NAME} lacks {'.'.join(seen)!r}")
      value = value[k]
    if kind is not None and not isinstance(value, kind):
      names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
      raise invalid(f"{CARD_NAME}'s {'.'.join(keys)!r} is {value!r}, not a {names}")
    return value

  task = field("task", kind=str)
  if task not in ("classification", "regression"):
    raise invalid(f"{CARD_NAME}'s 'task' is {task!r}; valid: 'classification', 'regression'")
  names = tuple(field("class_names", kind=list))
  shape = field("feature_shape", kind=list)
  if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
    raise invalid(f"{CARD_NAME}'s 'feature_shape' is {shape!r}, not a list of positive integers")
  shape = tuple(shape)
  width = math.prod(shape)
  if card.get("user_model") is not None:
    if model is None:
      raise ConfigError(f"{path!r} holds user model {card['user_model']!r}, which cannot be "
                        "rebuilt from model.json; pass it: load_model(path, model=...)")
    built_from = "the given model's"
  else:
    cfg = field("experiment", "model", kind=dict)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    try:
      cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()
                           if k in fields})
      hparams.check_experiment(Experiment(model=cfg))  # Its name and numbers' ranges.
    except (ConfigError, TypeError, ValueError) as e:
      raise invalid(f"{CARD_NAME}'s model configuration is invalid ({_one_line(e)})") from None
    if task == "classification" and len(names) < 2:
      raise invalid(f"{CARD_NAME}'s 'class_names' has {len(names)} class(es); a classifier "
                    "has at least 2")
    model = built_model(cfg, num_outputs(task, len(names)), shape)
    built_from = f"{CARD_NAME}'s"
  feature_names = tuple(field("feature_names", kind=list))
  if feature_names and len(feature_names) != width:
    raise invalid(f"{CARD_NAME} names {len(feature_names)} features; its feature_shape "
                  f"{shape} has {width}")
  stats = []
  for key in ("mean", "std"):
    values = field("standardization", key, kind=list)
    try:
      values = np.asarray(values, np.float32)
    except (TypeError, ValueError):
      values = None
    if values is None or values.shape != (width,) or not np.isfinite(values).all():
      raise invalid(f"{CARD_NAME}'s 'standardization.{key}' is not {width} finite numbers "
                    "(one per feature)")
    stats.append(values)

  try:
    with open(params_path, "rb") as f:
      blob = f.read()
  except OSError as e:
    raise ConfigError(f"cannot read {params_path!r}: {_one_line(e)}") from None
  try:
    state = serialization.msgpack_restore(blob)
  except Exception as e:  # pylint: disable=broad-except  # msgpack's errors, whatever the bytes.
    what = ("is truncated" if not blob or "incomplete" in str(e)
            else f"is not a valid msgpack file ({_one_line(e)})")
    raise invalid(f"{PARAMS_NAME} {what}") from None
  members = state.get("members") if isinstance(state, dict) else None
  if (not isinstance(members, dict) or not members
      or sorted(members) != sorted(str(i) for i in range(len(members)))):
    raise invalid(f"{PARAMS_NAME} holds no ensemble members (members '0', '1', ...)")
  target = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  want = _leaf_shapes(target)
  params = []
  for i in range(len(members)):
    member = members[str(i)]
    problem = _architecture_mismatch(want, _leaf_shapes(member))
    if problem is None:
      try:
        params.append(serialization.from_state_dict(target, member))
      except (KeyError, TypeError, ValueError) as e:
        problem = _one_line(e)
    if problem is not None:
      which = f" (member {i})" if len(members) > 1 else ""
      raise invalid(f"{PARAMS_NAME} does not match {built_from} architecture{which}: {problem}")
  return TrainedModel(model=model, params=tuple(params), mean=stats[0], std=stats[1],
                      task=task, class_names=names, feature_names=feature_names,
                      feature_shape=shape, card=card)


def read_features(path: str, model: TrainedModel) -> tuple[np.ndarray, np.ndarray | None]:
  """The raw features of a .csv or .npz file for `model`, its columns checked against the model's.

  A .csv file needs a header with the model's feature columns, in any order (matched by name),
  and may carry one more column, the training file's label column; a .npz file an array `x`
  of the model's feature width (and maybe `y`).

  Returns:
    ([N, D] float32 features in the model's order, [N] labels as read or None).

  Raises:
    ConfigError: a missing or unreadable file, or columns that differ from the model's (the
      message names the missing and the unexpected ones).
  """
  from lr_jax import data as data_lib  # Late, as elsewhere here: one file check for all readers.
  # A directory, a missing or an empty file: refused as every data file is.
  ext = data_lib._check_file(path)
  if ext not in (".csv", ".npz"):
    raise ConfigError(f"cannot read {path!r}: give a .csv or .npz file")
  width = int(model.mean.shape[0])
  if ext == ".npz":
    x, y = _read_npz_features(path)
    if x.ndim < 2 or math.prod(x.shape[1:]) != width:
      raise ConfigError(f"x of {path!r} has shape {x.shape}; the model takes {width} features")
    if x.dtype.kind not in "biuf":
      raise ConfigError(f"x of {path!r} has dtype {x.dtype}; features must be numbers")
    with np.errstate(over="ignore"):
      flat = x.reshape(len(x), width).astype(np.float32)
    bad = non_finite(flat)
    if bad is not None:
      count, i, j = bad
      column = f"column {j + 1}" + (f" ({model.feature_names[j]!r})"
                                     if len(model.feature_names) == width else "")
      index = f"x[{i}, {j}]" if x.ndim == 2 else f"x[{i}].flat[{j}]"
      value = float(x.reshape(len(x), width)[i, j])
      what = ("NaN" if math.isnan(value) else f"{value}" if math.isinf(value)
              else f"{value:g}, beyond float32's range,")
      raise ConfigError(f"x of {path!r} holds {what} at row {i + 1}, {column}, counted from 1 "
                        f"({index}); predictions need finite features ({count} value(s) in all "
                        "are not)")
    return model._features(x), y
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = [h.strip() for h in next(reader, [])]
      data_lib.check_header(header, path)  # Columns are matched by name: each once.
      body = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
  except UnicodeDecodeError:
    raise ConfigError(f"data file {path!r} is not UTF-8 text; a .csv file must be") from None
  except csv.Error as e:
    raise ConfigError(f"data file {path!r} is not valid CSV: {_one_line(e)}") from None
  except OSError as e:
    raise _read_error(path, e, ".csv file") from None
  names = list(model.feature_names) or [f"x{i}" for i in range(width)]
  missing = [c for c in names if c not in header]
  extra = [c for c in header if c not in names]
  label = model.card.get("label_column")
  if len(extra) == 1 and not missing and label in (None, extra[0]):
    label = extra[0]  # The labels, as in the training file: not a feature.
  elif missing or extra:
    more = lambda names: ", ".join(map(repr, names[:5])) + (" and more" if len(names) > 5 else "")
    what = ([f"missing {more(missing)}"] if missing else []) + (
        [f"unexpected {more(extra)}"] if extra else [])
    raise ConfigError(f"the columns of {path!r} do not match the model's {width} features: "
                      f"{'; '.join(what)}")
  else:
    label = None
  if not body:
    raise ConfigError(f"{path!r} has a header but no data rows")
  cols = [header.index(c) for c in names]
  x = np.empty((len(body), width), np.float64)
  for i, (line, row) in enumerate(body):
    if len(row) != len(header):
      raise ConfigError(f"line {line} of {path!r} has {len(row)} columns, the header {len(header)}")
    for j, c in enumerate(cols):
      try:
        x[i, j] = float(row[c])
      except ValueError:
        raise ConfigError(f"non-numeric value {row[c].strip()!r} in column {header[c]!r}, line "
                          f"{line} of {path!r}") from None
  with np.errstate(over="ignore"):
    bad = non_finite(x.astype(np.float32))  # As the model reads them: float32.
  if bad is not None:
    count, i, j = bad
    line, row = body[i]
    raise ConfigError(f"{_finite_problem(x[i, j])} {row[cols[j]].strip()!r} in column "
                      f"{header[cols[j]]!r}, data row {i + 1} (line {line}) of {path!r}; "
                      f"predictions need finite features ({count} value(s) in all are not)")
  y = np.array([row[header.index(label)].strip() for _, row in body]) if label else None
  return model._features(x), y


_NPZ_FEATURES_HOW = "save one with np.savez(path, x=features)"


def _read_error(path: str, e: OSError, kind: str) -> ConfigError:
  """'cannot read' for a file that cannot be read (`io.UNREADABLE`); else a malformed one."""
  from lr_jax import data as data_lib
  if e.errno in UNREADABLE:
    return ConfigError(f"cannot read {path!r}: {e.strerror or type(e).__name__}")
  return ConfigError(f"data file {path!r} is not a valid {kind} "
                     f"({e.strerror or data_lib._not_pickle(e)})")


def _read_npz_features(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  """The arrays `x` and `y` (None if absent) of a predict .npz; nothing is ever unpickled.

  Decided by the magic bytes before `np.load`: to numpy, a file that is neither a zip nor a
  .npy is a pickle, and its error advises loading it unsafely.
  """
  import zipfile
  from lr_jax import data as data_lib
  invalid = lambda why: ConfigError(
      f"data file {path!r} is not a valid .npz archive ({why}); {_NPZ_FEATURES_HOW}")
  try:
    with open(path, "rb") as f:
      head = f.read(len(data_lib._NPY_MAGIC))
    if head.startswith(data_lib._NPY_MAGIC):
      raise ConfigError(f"data file {path!r} holds a single array, not a .npz archive; "
                        f"{_NPZ_FEATURES_HOW}")
    if not head.startswith(data_lib._ZIP_MAGICS):
      raise invalid("not a zip file")
    with np.load(path, allow_pickle=False) as archive:
      if "x" not in archive.files:
        raise ConfigError(f"{path!r} has no array 'x'; arrays: "
                          f"{', '.join(archive.files) or 'none'}")
      arrays = {}
      for key in ("x", "y"):
        if key not in archive.files:
          continue
        try:
          arrays[key] = archive[key]
        except ValueError as e:
          if "pickle" not in str(e):
            raise
          raise ConfigError(f"array {key!r} of {path!r} holds Python objects, which are not "
                            "read; save it as numbers (or, for y, strings)") from None
        if not isinstance(arrays[key], np.ndarray):  # numpy hands back a non-.npy member's bytes.
          raise invalid(f"its {key!r} is not a .npy array")
  except ConfigError:
    raise
  except OSError as e:
    raise _read_error(path, e, ".npz archive") from None
  except (ValueError, EOFError, zipfile.BadZipFile) as e:
    raise invalid(data_lib._not_pickle(e)) from None
  return arrays["x"], arrays.get("y")


def _finite_problem(value: float) -> str:
  """What is wrong with a value that is not finite as float32."""
  if math.isnan(value):
    return "NaN"
  return "infinite value" if math.isinf(value) else "value beyond float32's range"


def predictions_csv(model: TrainedModel, x) -> str:
  """One line per row of `x`: the prediction (a class label as in the data, or a value) and,
  for classification, each class's probability (`p_<label>`)."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  if model.task == "classification":
    proba = model.predict_proba(x)
    labels = np.asarray(model.class_names)[np.argmax(proba, axis=-1)]
    writer.writerow(["prediction"] + [f"p_{c}" for c in model.class_names])
    for label, p in zip(labels.tolist(), proba):
      writer.writerow([label] + [f"{float(v):.6g}" for v in p])
  else:
    writer.writerow(["prediction"])
    for v in model.predict(x):
      writer.writerow([f"{float(v):.9g}"])
  return buf.getvalue()
