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
