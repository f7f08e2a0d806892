"""Each grid point over its seeds and folds (`Aggregate`), how the points compare, the selection."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lr_jax import stats


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
    score: which epoch's metric a run's score is (`SCORES`).
    n: runs with a score; n_diverged: runs that diverged; n_total: runs of the point.
    mean, std: of the score over the n runs (std NaN for n < 2).
    se, ci95: the mean's standard error and 95% Student-t half-width by the design of the
      experiment (`lr_jax.stats`: seeds, folds and validation rows); NaN where unknown.
    ci_low, ci_high: the 95% interval, clipped to the metric's range.
    df: the interval's degrees of freedom (Satterthwaite).
    n_rows: validation rows the interval counts (0: the rows are not a source it sees).
    covers: what variation the interval covers, in words.
    mean_val_loss: mean validation loss at the scored epochs over the runs with a score.
    mean_epochs_run: mean epochs run over the runs with a score.
    n_pruned: runs stopped by successive halving.
    eligible: may be selected: no run diverged or was pruned, and every run has a score.
    p_best: share of paired bootstrap resamples in which it is the best eligible point.
    not_worse: eligible and not significantly worse than the best (None: runs unpaired).
    tied: eligible, and its mean ties the best eligible mean (within half a validation row of
      one run for accuracy; float32 rounding otherwise), with another point.
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
  score: str = "best_epoch"
  n: int = 0
  n_diverged: int = 0
  n_total: int = 0
  mean: float = math.nan
  std: float = math.nan
  se: float = math.nan
  ci95: float = math.nan
  ci_low: float = math.nan
  ci_high: float = math.nan
  df: float = math.nan
  n_rows: int = 0
  covers: str = ""
  mean_val_loss: float = math.nan
  mean_epochs_run: float = math.nan
  n_pruned: int = 0
  eligible: bool = False
  p_best: float = 0.0
  not_worse: bool | None = False
  tied: bool = False
  selected: bool = False
  reached_target: int = 0
  mean_epochs_to_target: float = math.nan
  mean_steps_to_target: float = math.nan
  metric_means: tuple[tuple[str, float], ...] | None = None
  reason: str = ""

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


SCORES = ("best_epoch", "last_epoch", "crossfit")
"""Which epoch's metric is a run's score (`run_sweep(score=...)`, `--score`): `best_epoch`, the
epoch early stopping monitors (the lowest validation loss by default; with `restore_best`, the
parameters a run ends with); `last_epoch`, the last epoch the run trained; `crossfit` (default),
each half of the validation rows (even and odd positions) scored at the epoch the other half
monitors best: no row scores the epoch it chose, so the score does not flatter the run the way
the best epoch's does (benchmarks/coverage.py measures both). The task's metrics are the mean
over the rows; a user metric the mean of its two halves' values."""

DEFAULT_SCORE = "crossfit"

_SCORE_PREFIX = {"best_epoch": "best", "last_epoch": "last", "crossfit": "crossfit"}


def score_column(metric: str, score: str = DEFAULT_SCORE, scored: str | None = None) -> str:
  """The `rows` column of `metric` at a run's scored epoch: `best_val_accuracy`,
  `last_val_loss`, ... Cross-fitted columns exist for the metric the runs are scored by
  (`scored`; None: `metric` itself), since a run keeps per-row outcomes for it alone; another
  metric's is its best epoch's."""
  if score == "crossfit" and scored is not None and metric != scored:
    return f"best_{metric}"
  return f"{_SCORE_PREFIX[score]}_{metric}"


def _bounds(metric: str, group) -> tuple[float, float]:
  """The metric's range: accuracy [0, 1], the built-in loss [0, inf), a user metric its own."""
  if metric == "val_accuracy":
    return (0.0, 1.0)
  if metric == "val_loss":
    return (0.0, math.inf) if getattr(group, "loss", None) is None else (-math.inf, math.inf)
  user = dict(getattr(group, "metrics", ())).get(metric[len("val_"):])
  bounds = getattr(user, "bounds", None)
  return tuple(bounds) if bounds is not None else (-math.inf, math.inf)


def point_runs(rows: dict, idx: np.ndarray, score: np.ndarray, outcomes, proportion: bool,
               outcome_rows=None) -> stats.Runs:
  """The `stats.Runs` of one point's rows `idx`: `score` [len(idx)] their scores, `outcomes`
  per row of `rows` its validation rows' outcomes (or None), `proportion` (0/1 outcomes),
  `outcome_rows` per row of `rows` which data set rows those are, where folds share rows
  (nested CV; None: they do not)."""
  seeds = np.unique(rows["seed"][idx])
  folds = np.unique(rows["fold"][idx])
  s_SxF = np.full((len(seeds), len(folds)), np.nan)
  where = {}
  for j, i in enumerate(idx):
    at = (int(np.searchsorted(seeds, rows["seed"][i])), int(np.searchsorted(folds,
                                                                             rows["fold"][i])))
    s_SxF[at] = score[j]
    where[at] = i
  if len(where) != s_SxF.size or len(where) != len(idx):
    # Not whole seeds x folds (hand-made rows): each run its own unit, no rows to count.
    return stats.Runs(np.asarray(score, np.float64)[:, None], None, proportion)
  per_fold = None
  if outcomes is not None:
    per_fold = tuple(np.stack([outcomes[where[(si, fi)]] for si in range(len(seeds))])
                     for fi in range(len(folds)))
  ids = None
  if per_fold is not None and outcome_rows is not None:
    ids = tuple(np.asarray(outcome_rows[where[(0, fi)]]) for fi in range(len(folds)))
  return stats.Runs(s_SxF, per_fold, proportion, ids)


def aggregate(rows: dict[str, np.ndarray], groups: Sequence, hparam_names: Sequence[str],
              select_by: str | None = None, score: str = DEFAULT_SCORE,
              outcomes: Sequence[np.ndarray] | None = None,
              outcome_rows: Sequence[np.ndarray] | None = None) -> list[dict]:
  """Statistics over seeds and folds of each (group, grid point), and how the points compare.

  A run's score is the metric `select_by` (by default the validation accuracy for
  classification, the validation loss for regression) at the epoch `score` names (`SCORES`):
  the column `score_column(metric, score)` of `rows`. A run that diverged has no score (its
  pre-divergence best is not a result of that learning rate), nor does a run whose score is not
  finite.

  The interval, P(best), the not-worse set and the ties follow the design (`lr_jax.stats`):
  seeds, folds and, for the task's built-in score, the validation rows (`outcomes`, each run's
  per-row outcomes at the scored epoch, aligned with `rows`; None: not known; `outcome_rows`,
  which data set rows they are, so a row that several folds validate counts once).

  Each entry holds: the point's hyperparameters; `n` (runs with a score), `n_diverged`,
  `n_total` (runs of the point); `mean` and `std` of the score over those runs; `se`, `ci95`
  (95% Student-t half-width), `ci_low`/`ci_high` (the interval within the metric's range),
  `df`, `n_rows` and `covers` (what variation the interval covers) -- NaN / "" where no
  interval can be given; `eligible` (may be selected: no run diverged or was pruned, and every
  run has a score); `p_best` (two-way bootstrap share of being the best eligible point; 0 where
  not eligible; NaN where nothing varies); `not_worse` (eligible and not significantly worse
  than the best: `stats.compare`); `tied` (its mean ties the best eligible mean: the same
  number of validation rows right, for accuracy); `selected` (set by `best_points`); epochs run
  (over the runs with a score), and reaching the target; `metric_means` (user metric
  `val_<name>` -> its mean over the runs with a score, at their scored epochs).
  """
  out = []
  keys = ["learning_rate", *hparam_names]
  for gi, g in enumerate(groups):
    classification = g.dataset.task == "classification"
    builtin = "val_accuracy" if classification else "val_loss"
    metric = select_by or builtin
    directions = {f"val_{n}": m.higher_is_better for n, m in getattr(g, "metrics", ())}
    higher = directions.get(metric, metric == "val_accuracy")
    bounds = _bounds(metric, g)
    # Per-row outcomes are of the task's built-in score: another metric is not a mean of them.
    group_outcomes = outcomes if metric == builtin else None
    in_group = rows["group"] == gi
    shared = None  # The folds' row ids, only where folds share rows (nested CV).
    if group_outcomes is not None and outcome_rows is not None:
      splits = g.splits
      ids = splits.val_idx[splits.val_mask]
      if np.unique(ids).size < ids.size:
        shared = outcome_rows
    entries, runs = [], []
    for pk in _point_keys(g, keys):
      idx = _point_rows(rows, in_group, keys, pk)
      point = {"group": gi, "optimizer": g.experiment.optim.name,
               **{k: float(v) for k, v in zip(keys, pk)}}
      entry, runs_of_point = _point_entry(
          rows, idx, point, metric=metric, higher=higher, score=score,
          bounds=bounds, directions=directions, outcomes=group_outcomes, outcome_rows=shared)
      entries.append(entry)
      runs.append(runs_of_point)
    compare_points(entries, runs)
    out += [_record(e, hparam_names) for e in entries]
  return out


def _point_keys(g, keys: Sequence[str]) -> list[tuple[float, ...]]:
  """The group's own grid points, each its values of `keys` (NaN for a hyperparameter only
  other groups have), in the order of their values."""
  # Not a set of the rows' tuples: NaN != NaN would split one point into one entry per run.
  return sorted(
      {tuple(float(g.points[k][h]) if k in g.points else math.nan for k in keys)
       for h in range(len(g.points["learning_rate"]))},
      key=lambda t: tuple(np.nan_to_num(t, nan=-1.0)))


def _point_rows(rows: dict, in_group: np.ndarray, keys: Sequence[str],
                pk: tuple[float, ...]) -> np.ndarray:
  """The indices into `rows` of one point's runs (`in_group` [V] its group's rows, `pk` its
  values of `keys`), in stream order (by seed, then fold)."""
  sel = in_group.copy()
  for k, value in zip(keys, pk):
    sel &= (rows[k] == value) | (np.isnan(rows[k]) & np.isnan(value))
  idx = np.flatnonzero(sel)
  return idx[np.lexsort((rows["fold"][idx], rows["seed"][idx]))]  # Stream order: pairs points.


def _point_entry(rows: dict, idx: np.ndarray, point: dict, *, metric: str, higher: bool,
                 score: str, bounds: tuple[float, float], directions: dict,
                 outcomes, outcome_rows) -> tuple[dict, stats.Runs]:
  """One point's aggregate entry (see `aggregate`), its comparison fields unset, and its
  `stats.Runs`.

  Args:
    rows: the sweep's rows.
    idx: the indices into `rows` of the point's runs, in stream order.
    point: the entry's first keys: its group, optimizer and hyperparameters.
    metric, higher, score, bounds: the group's score metric, its direction, which epoch's
      value is the score (`SCORES`) and the metric's range.
    directions: `val_<name>` -> higher is better, of the group's user metrics.
    outcomes, outcome_rows: per row of `rows`, its per-row outcomes and which data set rows
      they are, or None (see `point_runs`).
  """
  diverged = np.asarray(rows["diverged"][idx], bool)
  score_values = np.asarray(rows[score_column(metric, score)][idx], np.float64)
  has_value = np.isfinite(score_values) & ~diverged
  runs_of_point = point_runs(rows, idx, np.where(has_value, score_values, np.nan),
                             outcomes, metric == "val_accuracy", outcome_rows)
  est = stats.estimate(runs_of_point, bounds)
  reach = rows["epochs_to_target"][idx]
  reached = reach > 0
  n_diverged = int(diverged.sum())
  n_pruned = int(np.sum(rows["pruned"][idx])) if "pruned" in rows else 0
  entry = {
      **point,
      # Each user metric's mean at the runs' scored epochs, whatever scores the point.
      **({"metric_means": {k: stats.summarize(rows[score_column(k, score, metric)][idx][
          has_value]).mean for k in directions}} if directions else {}),
      "metric": metric, "higher_is_better": higher, "score": score,
      "n": est.n, "n_diverged": n_diverged, "n_total": int(idx.size),
      "mean": est.mean, "std": est.std, "se": est.se, "ci95": est.ci95,
      "ci_low": est.low, "ci_high": est.high, "df": est.df, "n_rows": est.n_rows,
      "covers": est.covers,
      "mean_val_loss": stats.summarize(
          rows[score_column("val_loss", score, metric)][idx][has_value]).mean,
      # Over the runs with a score: a diverged run's epochs say when it broke, not how long
      # the learning rate trains.
      "mean_epochs_run": (float(rows["epochs_run"][idx][has_value].mean()) if has_value.any()
                          else math.nan),
      "diverged": n_diverged,
      "n_pruned": n_pruned,  # Stopped by halving: its score is not a finished run's.
      "eligible": bool(n_diverged == 0 and n_pruned == 0 and 0 < est.n == idx.size),
      "p_best": 0.0, "not_worse": False, "tied": False, "selected": False,
      "reached_target": int(reached.sum()),
      "mean_epochs_to_target": float(reach[reached].mean()) if reached.any() else math.nan,
      "mean_steps_to_target": (float(rows["steps_to_target"][idx][reached].mean())
                               if reached.any() else math.nan),
  }
  return entry, runs_of_point

def _record(entry: dict, hparam_names: Sequence[str]) -> Aggregate:
  """The typed record of an aggregate entry built as a dict."""
  fields = {f.name for f in dataclasses.fields(Aggregate)}
  means = entry.get("metric_means")
  return Aggregate(
      **{k: v for k, v in entry.items() if k in fields and k not in ("hparams", "metric_means")},
      hparams=tuple((k, entry[k]) for k in hparam_names),
      metric_means=None if means is None else tuple(means.items()))


def compare_points(entries: Sequence[dict], runs: Sequence[stats.Runs]) -> None:
  """Fills `p_best`, `not_worse` and `tied` of one group's entries (see `aggregate`), in place.

  Args:
    entries: the group's aggregate entries.
    runs: per entry, its `stats.Runs`.
  """
  eligible = [i for i, e in enumerate(entries) if e["eligible"]]
  if not eligible:
    return
  shape = runs[eligible[0]].scores_SxF.shape
  if any(runs[i].scores_SxF.shape != shape for i in eligible):
    for i in eligible:  # Not the same seeds and folds at every point: no pairing.
      entries[i]["p_best"], entries[i]["not_worse"] = math.nan, None
    return
  if any((runs[i].outcomes is None) != (runs[eligible[0]].outcomes is None) for i in eligible):
    runs = [r._replace(outcomes=None) for r in runs]
  c = stats.compare([runs[i] for i in eligible], entries[0]["higher_is_better"])
  for j, i in enumerate(eligible):
    entries[i]["p_best"], entries[i]["not_worse"] = float(c.p_best[j]), bool(c.not_worse[j])
    entries[i]["tied"] = bool(j in c.tied and len(c.tied) > 1)


def best_points(aggregates: Sequence[dict], num_groups: int, select: str = stats.DEFAULT_SELECT
                ) -> list[dict]:
  """Each group's selected grid point, by the rule `select` (see `stats.select_index`).

  Points whose means tie at the top (`Aggregate.tied`: the same number of validation rows
  right) are one best: rule `best` takes the first of them in the grid's order, the smaller
  learning rate.

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
      # Every point the same mean to the last bit (constant features): nothing was learned
      # that tells them apart. A tie of counts among learning rates that did learn goes to the
      # tie rule below.
      reason = (f"unresolved: all {len(eligible)} eligible points tie at {means[0]:.4f}, so the "
                "data do not tell the learning rates apart")
    chosen = None
    if reason is None:
      tied = [a for a in eligible if a.tied]
      chosen = eligible[stats.select_index(
          select, np.array([a.learning_rate for a in eligible]), means,
          np.array([a.se for a in eligible], np.float64), np.ones(len(eligible), bool),
          eligible[0].higher_is_better)]
      if select == "best" and tied:  # A tie is a tie: the first, the smaller learning rate.
        chosen = tied[0]
    for i, a in enumerate(aggregates):
      if a.group == gi and a.selected != (a is chosen):
        aggregates[i] = dataclasses.replace(a, selected=a is chosen)
        if a is chosen:
          chosen = aggregates[i]
    best.append(chosen if chosen is not None else Aggregate(group=gi, reason=reason))
  return best


def subset_aggregates(result, sel: np.ndarray, group: int, score: str | None = None
                      ) -> list[Aggregate]:
  """The aggregates of some of one compile group's runs, as a sweep of them alone would give.

  Args:
    result: a `SweepResult`.
    sel: [rows] bool, the runs (all of compile group `group`), e.g. one outer fold's inner
      runs (nested CV) or the whole group.
    group: their compile group.
    score: which epoch's metric is a run's score (`SCORES`); default the result's.

  Returns:
    Their points' aggregates, as the one group (`group` entries 0) of a sweep of them alone.
  """
  score = score or result.score
  rows = {k: np.asarray(v)[sel] for k, v in result.rows.items()}
  rows["group"] = np.zeros(int(sel.sum()), int)
  names = list(dict.fromkeys(k for g in result.groups for k in g.points if k != "learning_rate"))
  picked = np.flatnonzero(sel)
  outcomes = result.outcomes.get(score)
  entries = aggregate(rows, [result.groups[group]], names, result.config.get("select_by"), score,
                      None if outcomes is None else [outcomes[i] for i in picked],
                      [result.outcome_rows[i] for i in picked] if result.outcome_rows else None)
  return entries
