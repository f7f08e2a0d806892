"""`SweepResult`: a sweep's rows, histories, parameters and plans; assembled, and applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from lr_jax import stats
from lr_jax.config import check_choice
from lr_jax.data import config_dict
from lr_jax.errors import ConfigError
from lr_jax.io import jsonable
from lr_jax.results.aggregates import DEFAULT_SCORE, SCORES, aggregate, best_points

RESULT_COLUMNS = (
    "group", "dataset", "train_size", "model", "hidden", "optimizer", "schedule", "batch_size",
    "learning_rate", "seed", "fold", "best_epoch", "best_val_loss", "best_val_accuracy",
    "final_train_loss", "epochs_run", "steps_run", "diverged", "stopped_early",
    "pruned", "epochs_to_target", "steps_to_target")
# The trainer's per-epoch "learning_rate" is the scheduled rate of the epoch's last update; in
# the history it is renamed, so that it is not mistaken for `rows["learning_rate"]`, the peak.
HISTORY_NAMES = {"learning_rate": "epoch_learning_rate"}


def last_finite(curve_VxE: np.ndarray) -> np.ndarray:
  """[V] each row's last finite value (NaN for a row with none)."""
  a = np.asarray(curve_VxE)
  ok = np.isfinite(a)
  last = a.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
  return np.where(ok.any(axis=1), a[np.arange(a.shape[0]), last], np.nan)


def first_reaching(curve_VxE: np.ndarray, target: float, higher_is_better: bool) -> np.ndarray:
  """1-based epoch at which each row first reaches `target`; 0 where it never does.

  Args:
    curve_VxE: per-epoch metric, NaN where the variant was not training.
    target: the value to reach.
    higher_is_better: accuracy (True) or loss (False).

  Returns:
    [V] int array.
  """
  with np.errstate(invalid="ignore"):
    hit = curve_VxE >= target if higher_is_better else curve_VxE <= target
  hit = np.nan_to_num(hit, nan=False).astype(bool)
  return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


@dataclasses.dataclass
class SweepResult:
  """The outcome of a sweep.

  Attributes:
    rows: column -> [V] array, one entry per variant (see `RESULT_COLUMNS`, plus one column per
      extra dynamic hyperparameter).
    history: metric -> [V, E] float array; E is the longest run's epochs, NaN-padded.
    aggregates: one dict per (group, grid point) over seeds and folds (see `aggregate`).
    best: one dict per group: its grid point selected by the rule `select` (see `best_points`).
    config: JSON-ready description of the experiments and the grid.
    timings: per group, compile and run seconds.
    params: per group, the final parameters (best epoch's with `restore_best`), leaves
      [variants of the group, ...] in row order.
    select: the selection rule of `best` (`stats.SELECT_RULES`).
    groups: per group, its plan (`engine.Group`): experiment, data set (task, class and
      feature names), `Splits` (each fold's indices, standardization statistics and test rows)
      and user model -- what `params_of`, `predict` and `lr_jax.export.refit` need.
    estimate: the refit chosen configuration's validation and test scores
      (`lr_jax.export.refit`), or None; in `summary.json` and the table.
    nested: one `NestedEstimate` per group with nested cross-validation
      (`DataConfig.outer_folds`), else empty; in `summary.json`, the table and the report.
    score: which epoch's metric is a run's score (`results.SCORES`).
    outcomes: score -> [V] per row, its validation rows' outcomes at that epoch (correct, or
      the loss for regression), in the order of its fold's `Splits.val_idx`: what the
      statistics count the validation rows from (`lr_jax.stats`).
    outcome_rows: [V] per row, which data set rows its outcomes are (its fold's real
      `Splits.val_idx`; one array per fold, shared by the fold's rows).
  """

  rows: dict[str, np.ndarray]
  history: dict[str, np.ndarray]
  aggregates: list[dict]
  best: list[dict]
  config: dict
  timings: list[dict]
  params: list
  select: str = stats.DEFAULT_SELECT
  groups: list = dataclasses.field(default_factory=list)
  estimate: dict | None = None
  nested: list = dataclasses.field(default_factory=list)
  score: str = DEFAULT_SCORE
  outcomes: dict = dataclasses.field(default_factory=dict)
  outcome_rows: list = dataclasses.field(default_factory=list)

  @property
  def num_variants(self) -> int:
    return len(self.rows["learning_rate"])

  def _row(self, row: int) -> tuple[int, int]:
    """(group, position within the group's params) of a row index of `rows`."""
    if isinstance(row, (bool, np.bool_)) or not isinstance(row, (int, np.integer)) or not (
        0 <= row < self.num_variants):
      raise ConfigError(f"row must be an index into result.rows, 0..{self.num_variants - 1}, "
                        f"got {row!r}")
    group = int(self.rows["group"][row])
    return group, row - int(np.flatnonzero(self.rows["group"] == group)[0])

  def params_of(self, row: int):
    """The final parameters (best epoch's with `restore_best`) of the variant in row `row`.

    Args:
      row: an index into `rows` (any column's entry `row` describes this variant).

    Returns:
      The model's parameter pytree, numpy leaves without the variant axis.
    """
    group, pos = self._row(row)
    return jax.tree_util.tree_map(lambda a: a[pos], self.params[group])

  def model_of(self, row: int):
    """The variant in row `row` as a `lr_jax.TrainedModel` on raw features.

    It standardizes with the statistics of the variant's own fold, as training did.
    """
    from lr_jax.trained import TrainedModel  # Late: Flax, only once a model is applied.
    group, _ = self._row(row)
    if not self.groups:
      raise ConfigError("this result carries no groups (it was not built by run_sweep)")
    g = self.groups[group]
    fold = int(self.rows["fold"][row])
    return TrainedModel.build(g, (self.params_of(row),), g.splits.mean[fold], g.splits.std[fold])

  def predict(self, row: int, x) -> np.ndarray:
    """The predictions of the variant in row `row` on raw (unstandardized) features `x`.

    Args:
      row: an index into `rows`.
      x: [N, D] (or [N, *feature_shape]) raw features, as in the data file.

    Returns:
      [N] class labels as in the data (`Dataset.class_names`), or [N] regression outputs.
    """
    return self.model_of(row).predict(x)

  def predict_proba(self, row: int, x) -> np.ndarray:
    """[N, C] class probabilities (softmax) of the variant in row `row` on raw features `x`."""
    return self.model_of(row).predict_proba(x)

  def rows_as_records(self) -> list[dict]:
    """`rows` as one dict per variant (Python values), e.g. for `pandas.DataFrame(records)`."""
    columns = {k: np.asarray(v).tolist() for k, v in self.rows.items()}
    return [{k: columns[k][i] for k in columns} for i in range(self.num_variants)]

  def history_long(self) -> dict[str, np.ndarray]:
    """The per-epoch history in long format: one entry per (variant, epoch it trained).

    Returns:
      Column -> [R] array: `row` (index into `rows`), `group`, `learning_rate` (the grid's
      peak), `seed`, `fold`, `epoch` (1-based), and every history metric, among them
      `epoch_learning_rate` (the rate the epoch's last update used).
    """
    num_epochs = next(iter(self.history.values())).shape[1] if self.history else 0
    ran_VxE = np.arange(1, num_epochs + 1)[None, :] <= np.asarray(self.rows["epochs_run"])[:, None]
    row, epoch = np.nonzero(ran_VxE)
    out = {"row": row, **{k: np.asarray(self.rows[k])[row]
                          for k in ("group", "learning_rate", "seed", "fold")},
           "epoch": epoch + 1}
    out.update({k: v[row, epoch] for k, v in self.history.items()})
    return out

  def to_pandas(self, what: str = "rows"):
    """`rows` (or, with what="history", `history_long()`) as a `pandas.DataFrame`.

    pandas is not a dependency of lr_jax: this needs it installed.
    """
    check_choice("what", what, ("rows", "history"))
    try:
      import pandas as pd
    except ImportError:
      raise ImportError("SweepResult.to_pandas needs pandas, which lr_jax does not install: "
                        "pip install pandas (or use rows_as_records())") from None
    return pd.DataFrame(self.rows if what == "rows" else self.history_long())

  @classmethod
  def from_groups(cls, groups: Sequence, outputs: Sequence[dict], *, grid, target=None,
                  select: str = stats.DEFAULT_SELECT, select_by: str | None = None,
                  prune: dict | None = None, score: str = DEFAULT_SCORE) -> "SweepResult":
    """Assembles the result of `engine.run_sweep` from each group's plan and output.

    `select` is the rule that picks each group's learning rate (`stats.select_index`);
    `select_by` the metric it scores (None: val_accuracy, or val_loss for regression); `score`
    which epoch's value of it (`results.SCORES`).
    """
    stats.check_select(select)
    check_choice("score", score, SCORES)
    outcomes: dict[str, list] = {k: [] for k in SCORES}
    outcome_rows: list = []
    rows: dict[str, list] = {}
    histories: dict[str, list] = {}
    num_epochs = max(g.experiment.train.epochs for g in groups)
    hparam_names, user_metrics = _swept_names(groups)
    for gi, (g, out) in enumerate(zip(groups, outputs)):
      num_streams, num_points = out.variants.stopped.shape
      n = num_streams * num_points
      h = _group_history(histories, out.history, n, num_epochs, user_metrics)
      group_rows, group_outcomes = _group_outcomes(g, out.variants, n, num_points)
      outcome_rows += group_rows
      for k, o in group_outcomes.items():
        outcomes[k] += o
      columns = _run_columns(gi, g, out, h, target)
      columns.update(_score_columns(g, out.variants, h, group_outcomes["crossfit"],
                                    hparam_names, user_metrics))
      for k, a in columns.items():
        rows.setdefault(k, []).append(a)
    rows_np = {k: np.concatenate(a) for k, a in rows.items()}
    history_np = {k: np.concatenate(a) for k, a in histories.items()}
    aggregates = aggregate(rows_np, groups, hparam_names, select_by, score, outcomes[score],
                           outcome_rows)
    config = sweep_config(groups, grid, target, select, prune, score)
    if select_by is not None:
      config["select_by"] = select_by
    return cls(
        rows=rows_np, history=history_np, aggregates=aggregates,
        best=best_points(aggregates, len(groups), select),
        config=config, timings=_timings(outputs),
        params=[o.params for o in outputs], select=select, groups=list(groups), score=score,
        outcomes=outcomes, outcome_rows=outcome_rows)


def _swept_names(groups: Sequence) -> tuple[list[str], list[str]]:
  """The swept hyperparameters besides the learning rate, and `val_<name>` of the user
  metrics, of all the groups together, each in the order the groups first name them."""
  hparam_names = []
  user_metrics: list[str] = []  # `val_<name>` of every group's user metrics
  for g in groups:
    hparam_names += [k for k in g.points if k != "learning_rate" and k not in hparam_names]
    user_metrics += [f"val_{n}" for n, _ in getattr(g, "metrics", ())
                     if f"val_{n}" not in user_metrics]
  return hparam_names, user_metrics


def _group_history(histories: dict[str, list], hist: dict, n: int, num_epochs: int,
                   user_metrics: Sequence[str]) -> dict[str, np.ndarray]:
  """One group's history: appended to `histories` (metric, renamed by `HISTORY_NAMES`, ->
  its groups' [n, num_epochs] arrays, NaN-padded), and returned as metric -> [n, E] over the
  group's own epochs E; a user metric the group lacks is NaN."""
  h = {k: a.reshape(n, -1) for k, a in hist.items()}
  h.update({k: np.full((n, 1), np.nan, np.float32) for k in user_metrics if k not in h})
  for k, a in h.items():
    padded = np.full((n, num_epochs), np.nan, np.float32)
    padded[:, :a.shape[1]] = a
    histories.setdefault(HISTORY_NAMES.get(k, k), []).append(padded)
  return h


def _group_outcomes(g, v, n: int, num_points: int) -> tuple[list, dict[str, list]]:
  """One group's [n] rows' validation rows (`SweepResult.outcome_rows`) and, per score, their
  outcomes at its epoch (`SweepResult.outcomes`)."""
  fold_of = np.repeat(g.folds, num_points)
  val_rows = [g.splits.val_idx[f][g.splits.val_mask[f]] for f in range(g.splits.num_folds)]
  outcome_rows = [val_rows[fold_of[r]] for r in range(n)]
  outcomes: dict[str, list] = {}
  for k, state in (("best_epoch", v.best_outcomes), ("last_epoch", v.last_outcomes),
                   ("crossfit", v.crossfit_outcomes)):
    flat = np.asarray(state).reshape(n, -1)
    outcomes[k] = [flat[r][g.splits.val_mask[fold_of[r]]] for r in range(n)]
  return outcome_rows, outcomes


def _run_columns(gi: int, g, out, h: dict[str, np.ndarray], target) -> dict[str, np.ndarray]:
  """One group's `RESULT_COLUMNS`: column -> [n], its rows stream-major (streams x points)."""
  exp, v = g.experiment, out.variants
  num_streams, num_points = v.stopped.shape
  n = num_streams * num_points
  classification = g.dataset.task == "classification"
  last_loss = last_finite(h["train_loss"])
  if target is None:
    reach = np.zeros(n, int)
  elif classification:
    reach = first_reaching(h["val_accuracy"], target, True)
  else:
    reach = first_reaching(h["val_loss"], target, False)
  tile = lambda a: np.tile(a, num_streams)  # [H] -> [S*H], stream-major.
  rep = lambda a: np.repeat(a, num_points)  # [S] -> [S*H].
  return {
      "group": np.full(n, gi), "dataset": np.full(n, g.dataset.name, object),
      "train_size": rep(g.splits.train_sizes[g.folds]),
      "model": np.full(n, g.model.name if g.model is not None else exp.model.name, object),
      "hidden": np.full(n, "-" if g.model is not None
                        else "-".join(map(str, exp.model.hidden)) or "-", object),
      "optimizer": np.full(n, exp.optim.name, object),
      "schedule": np.full(n, exp.optim.schedule, object),
      "batch_size": np.full(n, exp.train.batch_size),
      "learning_rate": tile(g.points["learning_rate"]).astype(np.float64),
      "seed": rep(g.seeds), "fold": rep(g.folds),
      "best_epoch": v.best_epoch.reshape(n), "best_val_loss": v.best_val_loss.reshape(n),
      "best_val_accuracy": v.best_val_accuracy.reshape(n), "final_train_loss": last_loss,
      "epochs_run": v.epochs_run.reshape(n), "steps_run": v.steps_run.reshape(n),
      "diverged": v.diverged.reshape(n), "stopped_early": v.stopped.reshape(n),
      "pruned": out.pruned.reshape(n),
      "epochs_to_target": reach,
      "steps_to_target": np.where(reach > 0, reach * out.steps_per_epoch, 0),
  }


def _score_columns(g, v, h: dict[str, np.ndarray], crossfit_outcomes: Sequence[np.ndarray],
                   hparam_names: Sequence[str], user_metrics: Sequence[str]
                   ) -> dict[str, np.ndarray]:
  """One group's columns after `RESULT_COLUMNS`: column -> [n], the swept hyperparameters
  (NaN where the group has none), then the user metrics at the best epoch, and every metric
  at the last and the cross-fitted epochs (`results.SCORES`); `crossfit_outcomes` are its
  rows' cross-fitted outcomes."""
  num_streams, num_points = v.stopped.shape
  n = num_streams * num_points
  classification = g.dataset.task == "classification"
  builtin = "val_accuracy" if classification else "val_loss"
  crossfit = np.array([o.mean(dtype=np.float64) if o.size else np.nan
                       for o in crossfit_outcomes])
  tile = lambda a: np.tile(a, num_streams)  # [H] -> [S*H], stream-major.
  columns = {}
  for k in hparam_names:
    columns[k] = tile(g.points[k]) if k in g.points else np.full(n, np.nan)
  best_metrics = v.best_metrics or {}
  for k in user_metrics:
    mine = best_metrics.get(k[len("val_"):])
    columns[f"best_{k}"] = mine.reshape(n) if mine is not None else np.full(n, np.nan)
  # The last epoch's values (`score="last_epoch"`): NaN in the history where a run did not
  # train or had diverged, so the last finite value is its last counted epoch's.
  for k in ("val_loss", "val_accuracy", *user_metrics):
    columns[f"last_{k}"] = last_finite(h[k])
  # A run with no epoch counted (diverged at once) has no cross-fitted score.
  counted = v.best_epoch.reshape(n) > 0
  columns[f"crossfit_{builtin}"] = np.where(counted, crossfit, np.nan)
  columns[f"crossfit_{'val_loss' if classification else 'val_accuracy'}"] = np.full(n, np.nan)
  crossfit_metrics = v.crossfit_metrics or {}
  for k in user_metrics:
    mine = crossfit_metrics.get(k[len("val_"):])
    columns[f"crossfit_{k}"] = (np.where(counted, np.asarray(mine).reshape(n, 2).mean(
        axis=1), np.nan) if mine is not None else np.full(n, np.nan))
  return columns


def _timings(outputs: Sequence) -> list[dict]:
  """`SweepResult.timings`: per group, its compile and run seconds and epochs."""
  return [{"group": i, "compile_s": o.compile_s, "run_s": o.run_s,
           "epochs_executed": o.epochs_executed,
           "variant_epochs_trained": o.variant_epochs_trained,
           "variant_epochs_executed": o.variant_epochs_executed}
          for i, o in enumerate(outputs)]

def sweep_config(groups: Sequence, grid, target: float | None, select: str,
                 prune: dict | None = None, score: str = DEFAULT_SCORE) -> dict:
  """What a sweep computes, JSON-ready: `SweepResult.config`, and what output folders compare.

  A user model replaces the experiment's `ModelConfig`: it is described by its class name.
  `prune` (the pruning rule and its settings, which change results) is recorded when given.
  """
  config = {
      "experiments": [config_dict(g.experiment) | (
          {"model": {"name": g.model.name, "hidden": [], "user_model": True}}
          if g.model is not None else {}) for g in groups],
      "grid": dataclasses.asdict(grid), "target": target, "select": select, "score": score}
  if prune is not None:
    config["prune"] = prune
  return jsonable(config)
