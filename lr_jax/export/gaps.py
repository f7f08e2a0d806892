"""How a chosen configuration scores on rows it never chose on: per-row outcomes (`example_scores`),
their means (`scores`), and the selection-only gap and the refit's gain apart (`honest_gaps`)."""

from __future__ import annotations

import math

import numpy as np

from lr_jax import stats
from lr_jax.trained import TrainedModel


def example_scores(model: TrainedModel, x, y_ids: np.ndarray) -> dict:
  """Each row's outcome of `model` on raw features `x` and class ids (or targets) `y_ids`.

  Returns:
    `accuracy`: [N] float64, 1.0 where the prediction is right (None for regression); `loss`:
    [N] float64, the cross-entropy of the (ensemble's) probabilities, or the squared error of
    its mean output for regression. Their means are `scores`.
  """
  out = model.outputs(x).astype(np.float64)
  y = np.asarray(y_ids)
  if model.task == "classification":
    p = out[np.arange(len(y)), y.astype(int)]
    return {"accuracy": (np.argmax(out, -1) == y).astype(np.float64),
            "loss": -np.log(np.maximum(p, 1e-30))}
  return {"accuracy": None, "loss": (out[:, 0] - y) ** 2}


def scores(model: TrainedModel, x, y_ids: np.ndarray) -> dict:
  """Accuracy and loss of `model` on raw features `x` and class ids (or targets) `y_ids`.

  The loss is the cross-entropy of the ensemble's probabilities, or the squared error of its
  mean output for regression: the sweep's validation loss, for one member.
  """
  each = example_scores(model, x, y_ids)
  acc = each["accuracy"]
  return {"n": int(len(each["loss"])), "accuracy": None if acc is None else float(np.mean(acc)),
          "loss": float(np.mean(each["loss"]))}


def _metric_name(best) -> str | None:
  """"accuracy" or "loss": the task's score the selection ranked by; None for a user metric."""
  metric = getattr(best, "metric", None)
  if metric is None:  # A hand-made selection: its direction says which.
    return "accuracy" if best.higher_is_better else "loss"
  return {"val_accuracy": "accuracy", "val_loss": "loss"}.get(metric)


def _gaps(result, group: int, chosen: np.ndarray, model: TrainedModel) -> dict | None:
  """`honest_gaps` of a refit: each chosen run's and the refit's outcome on every row.

  None where the rows cannot say: the selection ranks a user metric or a user loss (not a
  mean over rows that `example_scores` computes), or the chosen runs are not a whole seeds x
  folds design.
  """
  g, best = result.groups[group], result.best[group]
  metric = _metric_name(best)
  if metric is None or (metric == "loss" and g.loss is not None):
    return None
  seed_R = np.asarray(result.rows["seed"])[chosen]
  fold_R = np.asarray(result.rows["fold"])[chosen]
  seeds, folds = np.unique(seed_R), np.unique(fold_R)
  pairs = set(zip(seed_R.tolist(), fold_R.tolist()))
  if not len(pairs) == len(chosen) == len(seeds) * len(folds):
    return None
  ds, splits = g.dataset, g.splits
  test = splits.test_idx
  x_test, y_test = ds.x[test], ds.y[test]
  val_rows = [splits.val_idx[f][splits.val_mask[f]] for f in folds]
  score_SxF = np.full((len(seeds), len(folds)), np.nan)
  test_SxFxT = np.zeros((len(seeds), len(folds), len(test)))
  val_F = [np.zeros((len(seeds), len(v))) for v in val_rows]
  # The runs' scores and validation outcomes as the sweep scored them (`SweepResult.score`):
  # the program's own outcomes where it kept them, else recomputed from the final parameters.
  from lr_jax.results import score_column
  score = getattr(best, "score", "best_epoch")
  column = np.asarray(result.rows[score_column(f"val_{metric}", score)], np.float64)
  own = (metric == "accuracy") == (g.dataset.task == "classification")  # the kept outcomes'
  kept = getattr(result, "outcomes", {}).get(score) if own else None
  for i, seed, fold in zip(chosen, seed_R, fold_R):
    s, f = int(np.searchsorted(seeds, seed)), int(np.searchsorted(folds, fold))
    run = result.model_of(int(i))
    score_SxF[s, f] = column[i]
    test_SxFxT[s, f] = example_scores(run, x_test, y_test)[metric]
    val_F[f][s] = (kept[int(i)] if kept else
                   example_scores(run, ds.x[val_rows[f]], ds.y[val_rows[f]])[metric])
  refit_T = example_scores(model, x_test, y_test)[metric]
  return honest_gaps(score_SxF, val_F, test_SxFxT, refit_T, best.higher_is_better,
                     proportion=metric == "accuracy")


def honest_gaps(score_SxF: np.ndarray, val_F: list[np.ndarray], test_SxFxT: np.ndarray,
                refit_T: np.ndarray, higher_is_better: bool, proportion: bool) -> dict:
  """The selection-only gap and the refit's gain, apart, each with its 95% interval.

  Three scores of one selected point meet: its validation score V (the mean of its runs'
  scores, seeds x folds), the mean test score T of the same runs (trained on exactly the rows
  behind V), and the refit ensemble's test score R. With the sign of the metric (a loss
  counts the other way), `selection_gap` = V - T is the selection's optimism alone,
  `refit_gain` = R - T what training the refit on more rows (and ensembling its seeds) adds,
  and `gap` = V - R their difference, the number that mixes the two.

  Each interval adds independent parts (Satterthwaite's degrees of freedom, Student-t): the
  seed part, the variance over seeds of the seed's value (averaged over folds) / seeds, where
  the value involves the runs' validation scores (V - T for the selection gap, V for the gap);
  each fold's validation rows (the variance over its rows of the row's outcome averaged over
  seeds / its rows / folds^2); and the test rows (the variance over them of the row's outcome
  averaged over runs / rows: the finite test set). The refit's gain is paired row by row on
  the test rows: the variance of the rows' differences R_i - T_i / rows. Given the trained
  models every row is an independent draw; the seed part of a gap adds what other seeds would
  change (for one seed it is unknown and left out: `covers` says so). 0/1 outcomes take
  `stats.PSEUDO_ROWS` in their row variance.

  Args:
    score_SxF: [S seeds, F folds] the selected point's run scores (their validation score).
    val_F: per fold, [S, n_f] each of its validation rows' outcome for each seed's run.
    test_SxFxT: [S, F, T] each run's outcome on each test row.
    refit_T: [T] the refit model's outcome on each test row.
    higher_is_better: the metric's direction (accuracy; not a loss).
    proportion: the outcomes are 0/1 (accuracy).

  Returns:
    `validation` (V), `sweep_test` (T), `test` (R), `selection_gap`, `refit_gain`, `gap`,
    their `*_ci95` half-widths, `test_ci95` (R's own, over the test rows), and the sizes
    `sweep_runs`, `seeds`, `folds`, `validation_rows`, `test_n`, and `covers` (in words).
  """
  score_SxF = np.asarray(score_SxF, np.float64)
  test_SxFxT = np.asarray(test_SxFxT, np.float64)
  refit_T = np.asarray(refit_T, np.float64)
  num_seeds, num_folds, num_test = test_SxFxT.shape
  sign = 1.0 if higher_is_better else -1.0
  v, t, r = float(score_SxF.mean()), float(test_SxFxT.mean()), float(refit_T.mean())
  runs_T = test_SxFxT.mean(axis=(0, 1))  # Each test row's outcome over the runs.
  val_parts = []
  for o_SxN in val_F:
    var, df = stats.row_variance(np.asarray(o_SxN, np.float64).mean(axis=0), proportion)
    val_parts.append((var / num_folds ** 2, df))
  test_runs = stats.row_variance(runs_T, proportion)
  test_refit = stats.row_variance(refit_T, proportion)
  seed_selection = stats.seed_variance(score_SxF.mean(axis=1) - test_SxFxT.mean(axis=(1, 2)))
  seed_validation = stats.seed_variance(score_SxF.mean(axis=1))
  diff_T = refit_T - runs_T
  num_val = int(sum(np.shape(o)[1] for o in val_F))
  seeds = f"{num_seeds} seeds" if num_seeds > 1 else "one seed (seed variation unknown)"
  return {
      "validation": v, "sweep_test": t, "test": r,
      "selection_gap": sign * (v - t),
      "selection_gap_ci95": stats.half_width([seed_selection, *val_parts, test_runs]),
      "refit_gain": sign * (r - t),
      "refit_gain_ci95": stats.half_width(
          [(float(diff_T.var(ddof=1) / num_test), num_test - 1.0)] if num_test > 1
          else [(math.nan, math.nan)]),
      "gap": sign * (v - r),
      "gap_ci95": stats.half_width([seed_validation, *val_parts, test_refit]),
      "test_ci95": stats.half_width([test_refit]),
      "sweep_runs": num_seeds * num_folds, "seeds": num_seeds, "folds": num_folds,
      "validation_rows": num_val, "test_n": num_test,
      "covers": f"{seeds}, {num_val} validation rows and {num_test} test rows"}
