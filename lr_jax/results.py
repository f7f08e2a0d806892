"""Results: one row per variant, per-epoch histories, aggregates over seeds and folds, files.

A `SweepResult` is plain numpy on the host: `rows` (column -> [V]), `history`
(metric -> [V, E], NaN after a variant stopped), and `aggregates` (one row per compile group
and grid point, over its seeds and folds). It keeps each group's plan (splits, standardization
statistics, class names), so a variant's parameters can be applied to raw features:
`result.predict(row, x)`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from lr_jax import stats
from lr_jax.config import check_choice
from lr_jax.data import config_dict
from lr_jax.errors import ConfigError
from lr_jax.io import atomic_write, jsonable

RESULT_COLUMNS = (
    "group", "dataset", "train_size", "model", "hidden", "optimizer", "schedule", "batch_size",
    "learning_rate", "seed", "fold", "best_epoch", "best_val_loss", "best_val_accuracy",
    "final_train_loss", "epochs_run", "steps_run", "diverged", "stopped_early",
    "pruned", "epochs_to_target", "steps_to_target")
# The trainer's per-epoch "learning_rate" is the scheduled rate of the epoch's last update; in
# the history it is renamed, so that it is not mistaken for `rows["learning_rate"]`, the peak.
HISTORY_NAMES = {"learning_rate": "epoch_learning_rate"}


@dataclasses.dataclass(frozen=True, eq=False)
class Aggregate(Mapping):
  """One grid point of one compile group, over its seeds and folds (see `aggregate`).

  Read it by attribute (`a.mean`, `a.value("weight_decay")`); it is also a read-only mapping
  in the layout `summary.json` writes (`a["mean"]`, `dict(a)`, each swept hyperparameter
  under its name), so readers by key keep working.

  Attributes:
    group: the compile group.
    optimizer: its optimizer's name.
    learning_rate: the point's peak learning rate (NaN in a group's entry without selection).
    hparams: the point's other swept hyperparameters, ((name, value), ...), NaN where this
      group does not have one another group sweeps.
    metric: the score, `val_<name>` (e.g. "val_accuracy").
    higher_is_better: its direction.
    n: runs with a score; n_diverged: runs that diverged; n_total: runs of the point.
    mean, std, se, ci95: of the score over the n runs (std, se, ci95 NaN for n < 2).
    mean_val_loss: mean best validation loss over the runs with a score.
    mean_epochs_run: mean epochs run over all runs.
    n_pruned: runs stopped by successive halving.
    eligible: may be selected: no run diverged or was pruned, and every run has a score.
    p_best: share of paired bootstrap resamples in which it is the best eligible point.
    not_worse: eligible and not significantly worse than the best (None: runs unpaired).
    selected: the group's selection (`best_points`).
    reached_target, mean_epochs_to_target, mean_steps_to_target: runs reaching `target`,
      and their mean epochs and steps to it.
    metric_means: ((`val_<name>`, mean at the runs' best epochs), ...) of user metrics.
    reason: why a group has no selection, in the entry `best_points` gives it; else "".
  """

  group: int
  optimizer: str = ""
  learning_rate: float = math.nan
  hparams: tuple[tuple[str, float], ...] = ()
  metric: str = ""
  higher_is_better: bool = True
  n: int = 0
  n_diverged: int = 0
  n_total: int = 0
  mean: float = math.nan
  std: float = math.nan
  se: float = math.nan
  ci95: float = math.nan
  mean_val_loss: float = math.nan
  mean_epochs_run: float = math.nan
  n_pruned: int = 0
  eligible: bool = False
  p_best: float = 0.0
  not_worse: bool | None = False
  selected: bool = False
  reached_target: int = 0
  mean_epochs_to_target: float = math.nan
  mean_steps_to_target: float = math.nan
  metric_means: tuple[tuple[str, float], ...] | None = None
  reason: str = ""

  @property
  def diverged(self) -> int:
    """`n_diverged`, by its older name."""
    return self.n_diverged

  def value(self, name: str) -> float:
    """The point's value of a swept hyperparameter: "learning_rate" or one of `hparams`."""
    if name == "learning_rate":
      return self.learning_rate
    for k, v in self.hparams:
      if k == name:
        return v
    raise KeyError(name)

  @functools.cached_property
  def _layout(self) -> dict:
    """The mapping's keys and values: `summary.json`'s layout of an aggregate."""
    if self.reason:  # A group without selection: what there is to say.
      return {"group": self.group, "learning_rate": self.learning_rate, "mean": self.mean,
              "ci95": self.ci95, "n": self.n, "reason": self.reason}
    out = {"group": self.group, "optimizer": self.optimizer,
           "learning_rate": self.learning_rate, **dict(self.hparams)}
    if self.metric_means is not None:
      out["metric_means"] = dict(self.metric_means)
    for f in dataclasses.fields(self):
      if f.name not in ("group", "optimizer", "learning_rate", "hparams", "metric_means",
                        "reason"):
        out[f.name] = getattr(self, f.name)
      if f.name == "mean_epochs_run":
        out["diverged"] = self.n_diverged  # Where `aggregate` always wrote it.
    return out

  def __getitem__(self, key: str):
    return self._layout[key]

  def __iter__(self):
    return iter(self._layout)

  def __len__(self) -> int:
    return len(self._layout)


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
  """Mean, sample std and 95% confidence half-width of the finite entries of `values`.

  One value has a mean but no spread: its std and half-width are NaN, never 0.
  """
  s = stats.summarize(values)
  return s.mean, s.std, s.ci95


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
                  prune: dict | None = None) -> "SweepResult":
    """Assembles the result of `engine.run_sweep` from each group's plan and output.

    `select` is the rule that picks each group's learning rate (`stats.select_index`);
    `select_by` the metric it scores (None: val_accuracy, or val_loss for regression).
    """
    stats.check_select(select)
    rows: dict[str, list] = {}
    histories: dict[str, list] = {}
    num_epochs = max(g.experiment.train.epochs for g in groups)
    hparam_names = []
    user_metrics: list[str] = []  # `val_<name>` of every group's user metrics
    for g in groups:
      hparam_names += [k for k in g.points if k != "learning_rate" and k not in hparam_names]
      user_metrics += [f"val_{n}" for n, _ in getattr(g, "metrics", ())
                       if f"val_{n}" not in user_metrics]
    for gi, (g, out) in enumerate(zip(groups, outputs)):
      exp, v, hist = g.experiment, out.variants, out.history
      num_streams, num_points = v.stopped.shape
      n = num_streams * num_points
      classification = g.dataset.task == "classification"
      h = {k: a.reshape(n, -1) for k, a in hist.items()}
      h.update({k: np.full((n, 1), np.nan, np.float32) for k in user_metrics if k not in h})
      for k, a in h.items():
        padded = np.full((n, num_epochs), np.nan, np.float32)
        padded[:, :a.shape[1]] = a
        histories.setdefault(HISTORY_NAMES.get(k, k), []).append(padded)
      last_loss = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan
                            for row in h["train_loss"]])
      if target is None:
        reach = np.zeros(n, int)
      elif classification:
        reach = first_reaching(h["val_accuracy"], target, True)
      else:
        reach = first_reaching(h["val_loss"], target, False)
      tile = lambda a: np.tile(a, num_streams)  # [H] -> [S*H], stream-major.
      rep = lambda a: np.repeat(a, num_points)  # [S] -> [S*H].
      columns = {
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
      for k in hparam_names:
        columns[k] = tile(g.points[k]) if k in g.points else np.full(n, np.nan)
      best_metrics = v.best_metrics or {}
      for k in user_metrics:
        mine = best_metrics.get(k[len("val_"):])
        columns[f"best_{k}"] = mine.reshape(n) if mine is not None else np.full(n, np.nan)
      for k, a in columns.items():
        rows.setdefault(k, []).append(a)
    rows_np = {k: np.concatenate(a) for k, a in rows.items()}
    history_np = {k: np.concatenate(a) for k, a in histories.items()}
    aggregates = aggregate(rows_np, groups, hparam_names, select_by)
    config = sweep_config(groups, grid, target, select, prune)
    if select_by is not None:
      config["select_by"] = select_by
    return cls(
        rows=rows_np, history=history_np, aggregates=aggregates,
        best=best_points(aggregates, len(groups), select),
        config=config,
        timings=[{"group": i, "compile_s": o.compile_s, "run_s": o.run_s,
                  "epochs_executed": o.epochs_executed,
                  "variant_epochs_trained": o.variant_epochs_trained,
                  "variant_epochs_executed": o.variant_epochs_executed}
                 for i, o in enumerate(outputs)],
        params=[o.params for o in outputs], select=select, groups=list(groups))


def sweep_config(groups: Sequence, grid, target: float | None, select: str,
                 prune: dict | None = None) -> dict:
  """What a sweep computes, JSON-ready: `SweepResult.config`, and what output folders compare.

  A user model replaces the experiment's `ModelConfig`: it is described by its class name.
  `prune` (the pruning rule and its settings, which change results) is recorded when given.
  """
  config = {
      "experiments": [config_dict(g.experiment) | (
          {"model": {"name": g.model.name, "hidden": [], "user_model": True}}
          if g.model is not None else {}) for g in groups],
      "grid": dataclasses.asdict(grid), "target": target, "select": select}
  if prune is not None:
    config["prune"] = prune
  return jsonable(config)


def aggregate(rows: dict[str, np.ndarray], groups: Sequence, hparam_names: Sequence[str],
              select_by: str | None = None) -> list[dict]:
  """Statistics over seeds and folds of each (group, grid point), and how the points compare.

  The score is the metric `select_by` at the best epoch (`rows["best_<select_by>"]`, with its
  direction); by default the best validation accuracy for classification and the best
  validation loss for regression. A run that diverged has no score (its pre-divergence best is not a result of
  that learning rate), nor does a run whose score is not finite.

  Each entry holds: the point's hyperparameters; `n` (runs with a score), `n_diverged`,
  `n_total` (runs of the point) and `diverged` (= `n_diverged`, its older name); `mean`, `std`,
  `se` and `ci95` (95% Student-t half-width) of the score over those `n` runs -- the std, SE and
  interval are NaN when n < 2; `eligible` (may be selected: no run diverged and every run has
  a score); `p_best` (share of paired bootstrap resamples in which it is the best eligible
  point; 0 where not eligible, NaN with fewer than 2 streams or where streams do not pair);
  `not_worse` (eligible and not significantly worse than the best, paired by stream:
  `stats.not_worse`; None where streams do not pair); `selected` (set by `best_points`);
  epochs run, and reaching the target; `metric_means` (user metric `val_<name>` -> its mean
  over the runs with a score, at their best epochs).
  """
  out = []
  keys = ["learning_rate", *hparam_names]
  for gi, g in enumerate(groups):
    classification = g.dataset.task == "classification"
    metric = select_by or ("val_accuracy" if classification else "val_loss")
    directions = {f"val_{n}": m.higher_is_better for n, m in getattr(g, "metrics", ())}
    higher = directions.get(metric, metric == "val_accuracy")
    in_group = rows["group"] == gi
    # The group's own grid points; a hyperparameter only other groups have is NaN here. Not a
    # set of the rows' tuples: NaN != NaN would split one point into one entry per run.
    point_keys = sorted(
        {tuple(float(g.points[k][h]) if k in g.points else math.nan for k in keys)
         for h in range(len(g.points["learning_rate"]))},
        key=lambda t: tuple(np.nan_to_num(t, nan=-1.0)))
    entries, streams, scores = [], [], []
    for pk in point_keys:
      sel = in_group.copy()
      for k, value in zip(keys, pk):
        sel &= (rows[k] == value) | (np.isnan(rows[k]) & np.isnan(value))
      idx = np.flatnonzero(sel)
      idx = idx[np.lexsort((rows["fold"][idx], rows["seed"][idx]))]  # Stream order: pairs points.
      score = rows[f"best_{metric}"][idx]
      score = np.asarray(score, np.float64)
      diverged = np.asarray(rows["diverged"][idx], bool)
      has_value = np.isfinite(score) & ~diverged
      summary = stats.summarize(score[has_value])
      reach = rows["epochs_to_target"][idx]
      reached = reach > 0
      n_diverged = int(diverged.sum())
      n_pruned = int(np.sum(rows["pruned"][idx])) if "pruned" in rows else 0
      entry = {
          "group": gi, "optimizer": g.experiment.optim.name,
          **{k: float(v) for k, v in zip(keys, pk)},
          # Each user metric's mean at the runs' best epochs, whatever scores the point.
          **({"metric_means": {k: stats.summarize(rows[f"best_{k}"][idx][has_value]).mean
                               for k in directions}} if directions else {}),
          "metric": metric, "higher_is_better": higher,
          "n": summary.n, "n_diverged": n_diverged, "n_total": int(idx.size),
          "mean": summary.mean, "std": summary.std, "se": summary.se, "ci95": summary.ci95,
          "mean_val_loss": stats.summarize(rows["best_val_loss"][idx][has_value]).mean,
          "mean_epochs_run": float(rows["epochs_run"][idx].mean()),
          "diverged": n_diverged,
          "n_pruned": n_pruned,  # Stopped by halving: its score is not a finished run's.
          "eligible": bool(n_diverged == 0 and n_pruned == 0 and 0 < summary.n == idx.size),
          "p_best": 0.0, "not_worse": False, "selected": False,
          "reached_target": int(reached.sum()),
          "mean_epochs_to_target": float(reach[reached].mean()) if reached.any() else math.nan,
          "mean_steps_to_target": (float(rows["steps_to_target"][idx][reached].mean())
                                   if reached.any() else math.nan),
      }
      entries.append(entry)
      streams.append(list(zip(rows["seed"][idx].tolist(), rows["fold"][idx].tolist())))
      scores.append(score)
    compare_points(entries, streams, scores)
    out += [_record(e, hparam_names) for e in entries]
  return out


def _record(entry: dict, hparam_names: Sequence[str]) -> Aggregate:
  """The typed record of an aggregate entry built as a dict."""
  fields = {f.name for f in dataclasses.fields(Aggregate)}
  means = entry.get("metric_means")
  return Aggregate(
      **{k: v for k, v in entry.items() if k in fields and k not in ("hparams", "metric_means")},
      hparams=tuple((k, entry[k]) for k in hparam_names),
      metric_means=None if means is None else tuple(means.items()))


def compare_points(entries: Sequence[dict], streams: Sequence[list], scores: Sequence[np.ndarray]
                   ) -> None:
  """Fills `p_best` and `not_worse` of one group's entries (see `aggregate`), in place.

  Args:
    entries: the group's aggregate entries.
    streams: per entry, its runs' (seed, fold) in the order of `scores`.
    scores: per entry, [runs] scores.
  """
  eligible = [i for i, e in enumerate(entries) if e["eligible"]]
  if not eligible:
    return
  if any(streams[i] != streams[eligible[0]] for i in eligible):
    for i in eligible:  # Not one run per stream at every point: no pairing to resample.
      entries[i]["p_best"], entries[i]["not_worse"] = math.nan, None
    return
  higher = entries[0]["higher_is_better"]
  scores_SxP = np.stack([scores[i] for i in eligible], axis=1)
  best = stats.best_index(np.array([entries[i]["mean"] for i in eligible]),
                          np.ones(len(eligible), bool), higher)
  # One stream resamples to itself: its "P(best) = 1" would say nothing.
  shares = (stats.p_best(scores_SxP, higher) if scores_SxP.shape[0] >= 2
            else np.full(len(eligible), math.nan))
  keep = stats.not_worse(scores_SxP, best, higher)
  for j, i in enumerate(eligible):
    entries[i]["p_best"], entries[i]["not_worse"] = float(shares[j]), bool(keep[j])


def best_points(aggregates: Sequence[dict], num_groups: int, select: str = stats.DEFAULT_SELECT
                ) -> list[dict]:
  """Each group's selected grid point, by the rule `select` (see `stats.select_index`).

  Only eligible points can be selected: a learning rate where any seed or fold diverged (or a
  run has no score) is not a recommendation, and its survivors' mean would flatter it. The
  selected aggregate gets `selected = True` and is the group's entry. A group with no eligible
  point, or whose eligible points all tie (e.g. constant features), has no selection: its entry
  is `{"group", "learning_rate": NaN, "mean": NaN, "ci95": NaN, "n": 0, "reason"}`.

  `aggregates` (a list) is updated in place: the records are frozen, so the selected one is
  replaced by a copy with `selected` set (which is also the group's entry of the result).

  Returns:
    One `Aggregate` per group.
  """
  stats.check_select(select)
  best = []
  for gi in range(num_groups):
    entries = [a for a in aggregates if a.group == gi]
    eligible = [a for a in entries if a.eligible]
    means = np.array([a.mean for a in eligible], np.float64)
    reason = None
    if not eligible:
      reason = ("none eligible (every grid point had a diverged run)"
                if entries and all(a.n_diverged for a in entries) else
                "none eligible (every grid point had a diverged run or a run without a score)")
    elif len(eligible) > 1 and np.ptp(means) <= 1e-12 * max(1.0, float(np.abs(means).max())):
      reason = (f"unresolved: all {len(eligible)} eligible points tie at {means[0]:.4f}, so the "
                "data do not tell the learning rates apart")
    chosen = None if reason is not None else eligible[stats.select_index(
        select, np.array([a.learning_rate for a in eligible]), means,
        np.array([a.se for a in eligible], np.float64), np.ones(len(eligible), bool),
        eligible[0].higher_is_better)]
    for i, a in enumerate(aggregates):
      if a.group == gi and a.selected != (a is chosen):
        aggregates[i] = dataclasses.replace(a, selected=a is chosen)
        if a is chosen:
          chosen = aggregates[i]
    best.append(chosen if chosen is not None else Aggregate(group=gi, reason=reason))
  return best


@dataclasses.dataclass(frozen=True)
class OuterFold:
  """One outer fold of nested cross-validation: what its inner selection chose, and its score.

  Attributes:
    outer: the outer fold's index, 0..K-1.
    train_n: rows of its training part (its inner folds' training and validation rows).
    test_n: rows of its test part, which its inner selection never saw.
    hyperparameters: the chosen point (`learning_rate` and any other swept value); {} when
      the inner selection chose nothing.
    validation: the chosen point's inner mean validation score (NaN when the selection
      scores another metric than `NestedEstimate.metric`).
    epochs: the refit's epochs, the median best epoch of the chosen point's inner runs.
    score: the refit's test score on the test part (accuracy, or loss for regression); NaN
      when nothing was chosen or every refit seed diverged.
    reason: why there is no score, else "".
  """

  outer: int
  train_n: int
  test_n: int
  hyperparameters: dict
  validation: float
  epochs: int
  score: float
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class NestedEstimate:
  """Nested cross-validation's estimate of a group's selection procedure.

  Each outer fold runs the whole inner selection on its training part; its choice is refit on
  that part (an ensemble of the sweep's seeds, as `lr_jax.export.refit`) and scored once on
  its test part. The scores estimate how well "sweep, select, refit" does on new data.

  Attributes:
    group: the compile group.
    metric: "accuracy" or "loss" (regression), of the outer test scores.
    higher_is_better: the metric's direction.
    rule: the selection rule (`SweepResult.select`).
    folds: the K outer folds.
    n: outer folds with a score.
    mean: mean outer test score.
    std: its standard deviation over the outer folds (NaN for n < 2).
    ci95: 95% Student-t half-width over the n outer scores (NaN for n < 2).
    validation: mean inner validation score of the choices: how optimistic selection is (NaN
      when the selection scores another metric, `select_by`).
    selected: (learning rate, times chosen) pairs, by learning rate; the counts sum to the
      outer folds that chose one.
  """

  group: int
  metric: str
  higher_is_better: bool
  rule: str
  folds: tuple[OuterFold, ...]
  n: int
  mean: float
  std: float
  ci95: float
  validation: float
  selected: tuple[tuple[float, int], ...]

  @property
  def line(self) -> str:
    """One line for the table and the log."""
    chosen = ", ".join(f"{lr:.3g} x{c}" for lr, c in self.selected) or "none"
    k = len(self.folds)
    line = (f"nested CV ({k} outer folds, rule {self.rule}): outer test {self.metric} "
            f"{format_score(self.mean, self.ci95, self.n)} (n={self.n}); learning rates chosen: "
            f"{chosen}")
    if math.isfinite(self.validation):
      line += f"; the choices' inner validation {self.metric} {self.validation:.4f}"
    missing = [f.outer for f in self.folds if not math.isfinite(f.score)]
    if missing:
      line += f"; no score for outer fold(s) {', '.join(map(str, missing))}"
    return line

  def to_dict(self) -> dict:
    """JSON-ready, with the line and the selection counts by learning rate."""
    out = dataclasses.asdict(self)
    out["folds"] = [dataclasses.asdict(f) for f in self.folds]
    out["selected"] = [{"learning_rate": lr, "count": c} for lr, c in self.selected]
    out["line"] = self.line
    return jsonable(out)


def outer_selection(result: SweepResult, group: int, outer: int) -> tuple[list[dict], dict]:
  """The inner selection of one outer fold: its aggregates and selected point.

  Exactly what a sweep of that outer fold alone reports: `aggregate` and `best_points` over
  the runs of its inner folds only.

  Args:
    result: a sweep with nested cross-validation (`DataConfig.outer_folds`).
    group: the compile group.
    outer: the outer fold, 0..K-1.

  Returns:
    (aggregates, best), their `group` entries being `group`.
  """
  g = result.groups[group]
  inner = g.splits.inner_folds
  sel = (result.rows["group"] == group) & (result.rows["fold"] // inner == outer)
  rows = {k: np.asarray(v)[sel] for k, v in result.rows.items()}
  rows["group"] = np.zeros(int(sel.sum()), int)
  hparam_names = list(dict.fromkeys(k for gg in result.groups for k in gg.points
                                    if k != "learning_rate"))
  entries = aggregate(rows, [g], hparam_names, result.config.get("select_by"))
  best = best_points(entries, 1, result.select)[0]
  entries = [dataclasses.replace(a, group=group) for a in entries]
  best = next((a for a in entries if a.selected), None) or dataclasses.replace(best, group=group)
  return entries, best


def results_csv(result: SweepResult) -> str:
  """The per-variant table as CSV text."""
  columns = list(result.rows)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
  for i in range(result.num_variants):
    row = []
    for c in columns:
      v = result.rows[c][i]
      if isinstance(v, (np.floating, float)):
        row.append("" if not np.isfinite(v) else f"{float(v):.6g}")
      elif isinstance(v, (np.bool_, bool)):
        row.append(str(bool(v)).lower())
      else:
        row.append(str(v))
    writer.writerow(row)
  return buf.getvalue()


def summary_dict(result: SweepResult) -> dict:
  """The JSON summary: configuration, aggregates, best points, timings."""
  return jsonable({"config": result.config, "aggregates": result.aggregates,
                    "best": result.best, "timings": result.timings,
                    "num_variants": result.num_variants,
                    **({"estimate": result.estimate} if result.estimate else {}),
                    **({"nested": [e.to_dict() for e in result.nested]}
                       if result.nested else {})})


def write_files(result: SweepResult, directory: str) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `directory`, each atomically.

  No lock and no checks: for a staging folder; use `lr_jax.outputs.write_outputs`.

  Returns:
    The paths written.
  """
  paths = [os.path.join(directory, name) for name in ("results.csv", "history.npz", "summary.json")]
  atomic_write(paths[0], results_csv(result).encode())
  buf = io.BytesIO()
  meta = {f"variant_{k}": np.asarray(result.rows[k]).astype(np.float64 if k == "learning_rate" else
                                                           np.asarray(result.rows[k]).dtype)
          for k in ("group", "learning_rate", "seed", "fold")}
  np.savez(buf, **{k: v for k, v in result.history.items()}, **meta)
  atomic_write(paths[1], buf.getvalue())
  atomic_write(paths[2], (json.dumps(summary_dict(result), indent=2) + "\n").encode())
  return paths


def format_score(mean: float, ci95: float, n: int) -> str:
  """'0.9712 ± 0.0040' (95% half-width) for n >= 2, '0.9500, n=1' for one run, 'n/a' for none."""
  if n == 0 or not math.isfinite(mean):
    return "n/a"
  if n < 2 or not math.isfinite(ci95):
    return f"{mean:.4f}, n={n}"
  return f"{mean:.4f} ± {ci95:.4f}"


def point_notes(a: Aggregate) -> str:
  """Why a point cannot be selected, and over which runs its mean is, as the table says it."""
  notes = []
  if a.n_diverged:
    notes.append(f"diverged {a.n_diverged}/{a.n_total}, ineligible")
  elif a.n_pruned:
    notes.append(f"pruned {a.n_pruned}/{a.n_total}, ineligible")
  elif not a.eligible:
    notes.append(f"{a.n_total - a.n}/{a.n_total} without a score, ineligible")
  if 0 < a.n < a.n_total:
    notes.append(f"mean over {a.n} survivor{'s' if a.n > 1 else ''}")
  return "; ".join(notes)


_RULES = {"best": "highest mean", "one_se": "largest LR within one SE of the highest mean"}


def group_title(result: SweepResult, group: int) -> str:
  """'adam / constant / mlp(128) on digits': a compile group's optimizer, schedule, model, data.

  From the group's `Experiment` (and user model, data set); a result built without groups
  (by hand) is described by its JSON config.
  """
  if group < len(result.groups):
    g = result.groups[group]
    exp = g.experiment
    user = getattr(g, "model", None)
    model, hidden = (user.name, ()) if user is not None else (exp.model.name, exp.model.hidden)
    optim, schedule, data = exp.optim.name, exp.optim.schedule, g.dataset.name
  else:
    exp = result.config["experiments"][group]
    optim, schedule = exp["optim"]["name"], exp["optim"]["schedule"]
    model, hidden, data = exp["model"]["name"], exp["model"].get("hidden") or (), \
        exp["data"]["dataset"]
  widths = ",".join(map(str, hidden))
  return f"{optim} / {schedule} / {model}{f'({widths})' if widths else ''} on {data}"


def format_table(result: SweepResult) -> str:
  """A compact text table per group: each point's score with its n, P(best), runs, divergences.

  Columns: learning rate (and other swept hyperparameters), mean best validation metric ± 95%
  CI over the runs with a score, n, P(best) (paired bootstrap), "~" where not significantly
  worse than the highest mean, epochs run, diverged runs / runs, epochs to target, notes;
  "*" marks the selected point. Below, the selection, its rule, and the not-worse set; with
  an `estimate` (a refit, `lr_jax.export.refit`), its validation-vs-test line; with nested
  cross-validation, its estimate (`NestedEstimate.line`).
  """
  lines = []
  for gi, best in enumerate(result.best):
    entries = [a for a in result.aggregates if a.group == gi]
    if not entries:
      continue
    metric = entries[0].metric
    lines.append(f"group {gi}: {group_title(result, gi)}")
    extra = [k for k, _ in entries[0].hparams]
    target = result.config.get("target") is not None
    head = f"{'lr':>10} " + "".join(f"{k:>13} " for k in extra)
    means = dict(entries[0].metric_means or ())
    shown = [k for k in means if k != metric]  # Other user metrics.
    head += f"{'best ' + metric + ' ± 95% CI':>27} " + "".join(f"{k:>13} " for k in shown)
    head += f"{'n':>3} {'P(best)':>7}   {'epochs run':>10} "
    head += f"{'diverged':>9}" + (f" {'ep->target':>10}" if target else "") + "  notes"
    lines.append(head)
    for a in entries:
      cell = format_score(a.mean, a.ci95, a.n)
      p = a.p_best
      p_text = f"{p:.2f}" if a.eligible and p is not None and math.isfinite(p) else "-"
      line = f"{a.learning_rate:>10.3g} " + "".join(f"{v:>13.3g} " for _, v in a.hparams)
      line += f"{cell:>27} " + "".join(f"{dict(a.metric_means)[k]:>13.4g} " for k in shown)
      line += f"{a.n:>3d} {p_text:>7} {'~' if a.not_worse else ' '} "
      line += f"{a.mean_epochs_run:>10.1f} {a.n_diverged:>5d}/{a.n_total:<3d}"
      if target:
        t = a.mean_epochs_to_target
        line += f" {t:>10.1f}" if math.isfinite(t) else f" {'-':>10}"
      notes = point_notes(a)
      lines.append((line + ("  " + notes if notes else "")).rstrip() + (" *" if a is best else ""))
    lines += _selection_lines(entries, best, metric, result.select)
    if result.estimate and result.estimate["group"] == gi:
      lines.append(result.estimate["line"])
    lines += [e.line for e in result.nested if e.group == gi]
    lines.append("")
  return "\n".join(lines)


def _selection_lines(entries: Sequence[Aggregate], best: Aggregate, metric: str, select: str
                     ) -> list[str]:
  """The lines under a group's table: the selected point, its rule, the not-worse set."""
  if not math.isfinite(best.learning_rate):
    return [f"best learning rate: {best.reason or 'none (every variant failed)'}"]
  interval = (f"95% CI ± {best.ci95:.4f}, n={best.n}" if best.n >= 2
              and math.isfinite(best.ci95) else f"n={best.n}, no interval")
  p = best.p_best
  p_text = f", P(best) {p:.2f}" if p is not None and math.isfinite(p) else ""
  rule = f"rule {select}: {_RULES.get(select, select)}"
  eligible = [a for a in entries if a.eligible]
  top = eligible[stats.best_index(np.array([a.mean for a in eligible]),
                                  np.ones(len(eligible), bool), best.higher_is_better)]
  # The other numbers that vary between the points: a point is named by all of them.
  varying = [k for k, _ in best.hparams
             if len({a.value(k) for a in entries if math.isfinite(a.value(k))}) > 1]
  label = lambda a: ", ".join([f"lr {a.learning_rate:.3g}",
                               *(f"{k} {a.value(k):.3g}" for k in varying)])
  if top is not best:
    rule += f", {top.mean:.4f} at {label(top) if varying else f'{top.learning_rate:.3g}'}"
  what = f"best point: {label(best)}" if varying else (
      f"best learning rate: {best.learning_rate:.3g}")
  lines = [f"{what} ({rule}), mean best {metric} {best.mean:.4f} ({interval}){p_text}"]
  near = [a for a in eligible if a.not_worse]
  if any(a.not_worse is None for a in eligible):
    lines.append("points not significantly worse than the highest mean: unknown (runs unpaired)")
  elif best.n < 2:
    lines.append("points not significantly worse than the highest mean: all eligible ones "
                 "(one run per point: nothing can be excluded)")
  else:
    named = ("; ".join(label(a) for a in near) if varying and len(near) <= 8 else
             "marked in the table" if varying else
             "lr " + ", ".join(f"{a.learning_rate:.3g}" for a in near))
    lines.append(f"points not significantly worse than the highest mean (\"~\"; one-sided "
                 f"paired t-test by seed and fold, alpha {stats.ALPHA:g}): {len(near)} of "
                 f"{len(eligible)} eligible, {named}")
  return lines
