"""The text table of a sweep: each group's points, scores and selection (`format_table`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax import stats
from lr_jax.results.aggregates import Aggregate
from lr_jax.results.result import SweepResult


def format_interval(mean: float, ci95: float, n: int, low: float | None = None,
                    high: float | None = None) -> str:
  """'± 0.0040' (95% half-width), or '[0.9850, 1.0000]' where the interval meets the metric's
  range (`low`, `high`: its clipped ends), or '± 0 (3 equal runs)' when nothing varied; '' with
  no interval."""
  if not (math.isfinite(mean) and math.isfinite(ci95)):
    return ""
  if ci95 == 0:
    return f"± 0 ({n} equal runs)"
  if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and (
      low > mean - ci95 + 1e-12 or high < mean + ci95 - 1e-12):
    return f"[{low:.4f}, {high:.4f}]"
  return f"± {ci95:.4f}"


def format_score(mean: float, ci95: float, n: int, low: float | None = None,
                 high: float | None = None) -> str:
  """'0.9712 ± 0.0040' or '0.9950 [0.9850, 1.0000]' (`format_interval`); '0.9500, n=1'
  without an interval, 'n/a' for no run."""
  if n == 0 or not math.isfinite(mean):
    return "n/a"
  interval = format_interval(mean, ci95, n, low, high)
  return f"{mean:.4f} {interval}" if interval else f"{mean:.4f}, n={n}"


SCORE_WORDS = {"best_epoch": "at the monitored best epoch", "last_epoch": "at the last epoch",
               "crossfit": "cross-fitted (each half of the rows at the other half's best epoch)"}
"""What a run's score is, per `results.SCORES`: the header and the lines say it."""


def score_name(a: Aggregate) -> str:
  """'val_accuracy at the monitored best epoch': the metric and the epoch of a run's score."""
  return f"{a.metric} {SCORE_WORDS.get(a.score, a.score)}"


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


def optimism_caveat(num_eligible: int, has_test: bool, nested: bool,
                    rule: str = "best") -> str | None:
  """The one line a selected validation score needs when nothing measured its optimism.

  The selected score is the best of the eligible points' means (each run's score
  at its scored epoch), so it overstates how the choice does on new data; a test set or nested
  cross-validation measures by how much, and then this line is not needed.

  Args:
    num_eligible: the points that could be selected (`Aggregate.eligible`).
    has_test: a test score of the choice is reported beside it (a refit scored on the test
      rows: `SweepResult.estimate` of this group with a `test`); test rows that nothing was
      scored on (`--norefit`) do not count.
    nested: nested cross-validation estimates the selection (`SweepResult.nested`).
    rule: the selection rule (`SweepResult.select`).

  Returns:
    The caveat, or None with a test set, nested CV, or nothing eligible.
  """
  if has_test or nested or num_eligible < 1:
    return None
  if num_eligible == 1:
    how = "each run's score is its best epoch's on these validation rows"
  elif rule == "best":
    how = f"it is the best of {num_eligible} eligible points' validation scores"
  else:
    how = f"it is chosen (rule {rule}) from {num_eligible} eligible points' validation scores"
  return (f"optimistically biased: {how}; measure the bias with `--test_fraction=0.2` "
          "(or `--outer_folds=3`)")



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
    lines.append(f"score: {score_name(entries[0])}, mean over seeds x folds; 95% CI covers "
                 f"{_covers(entries)}")
    head += f"{metric + ' ± 95% CI':>27} " + "".join(f"{k:>13} " for k in shown)
    head += f"{'n':>3} {'P(best)':>7}   {'epochs run':>10} "
    head += f"{'diverged':>9}" + (f" {'ep->target':>10}" if target else "") + "  notes"
    lines.append(head)
    for a in entries:
      cell = format_score(a.mean, a.ci95, a.n, a.ci_low, a.ci_high)
      p = a.p_best
      p_text = f"{p:.2f}" if a.eligible and p is not None and math.isfinite(p) else "-"
      line = f"{a.learning_rate:>10.3g} " + "".join(f"{v:>13.3g} " for _, v in a.hparams)
      line += f"{cell:>27} " + "".join(f"{dict(a.metric_means)[k]:>13.4g} " for k in shown)
      line += f"{a.n:>3d} {p_text:>7} {'~' if a.not_worse else ' '} "
      epochs = f"{a.mean_epochs_run:.1f}" if math.isfinite(a.mean_epochs_run) else "-"
      line += f"{epochs:>10} {a.n_diverged:>5d}/{a.n_total:<3d}"
      if target:
        t = a.mean_epochs_to_target
        line += f" {t:>10.1f}" if math.isfinite(t) else f" {'-':>10}"
      notes = "; ".join(x for x in (point_notes(a), "tied at the top" if a.tied else "") if x)
      lines.append((line + ("  " + notes if notes else "")).rstrip() + (" *" if a is best else ""))
    lines += _selection_lines(entries, best, metric, result.select)
    caveat = optimism_caveat(
        sum(a.eligible for a in entries),
        has_test=bool(result.estimate and result.estimate["group"] == gi
                      and result.estimate.get("test") is not None),
        nested=any(e.group == gi for e in result.nested), rule=result.select)
    if caveat and math.isfinite(best.learning_rate):
      lines.append(f"the selected score is {caveat}")
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
  interval = (f"95% CI {format_interval(best.mean, best.ci95, best.n, best.ci_low, best.ci_high)}"
              f"; n={best.n} runs" + (f", {best.n_rows} validation rows" if best.n_rows else "")
              if math.isfinite(best.ci95) else f"n={best.n}, no interval")
  p = best.p_best
  p_text = f", P(best) {p:.2f}" if p is not None and math.isfinite(p) else ""
  top_words = stats.best_mean_text(best.higher_is_better, metric)
  rule = f"rule {select}: {stats.rule_text(select, top_words, short=True)}"
  eligible = [a for a in entries if a.eligible]
  tied = [a for a in eligible if a.tied]
  top = tied[0] if tied else eligible[stats.best_index(
      np.array([a.mean for a in eligible]), np.ones(len(eligible), bool), best.higher_is_better)]
  # The other numbers that vary between the points: a point is named by all of them.
  varying = [k for k, _ in best.hparams
             if len({a.value(k) for a in entries if math.isfinite(a.value(k))}) > 1]
  label = lambda a: ", ".join([f"lr {a.learning_rate:.3g}",
                               *(f"{k} {a.value(k):.3g}" for k in varying)])
  if top is not best:
    rule += f", {top.mean:.4f} at {label(top) if varying else f'{top.learning_rate:.3g}'}"
  what = f"best point: {label(best)}" if varying else (
      f"best learning rate: {best.learning_rate:.3g}")
  lines = [f"{what} ({rule}), mean {metric} {best.mean:.4f} ({interval}){p_text}"]
  if len(tied) > 1:
    others = [a for a in tied if a is not best]
    lines.append(f"tied with {'; '.join(label(a) for a in others)} (the same mean"
                 f"{', to half a validation row' if metric == 'val_accuracy' else ''}); a tie "
                 "goes to the smaller learning rate")
  near = [a for a in eligible if a.not_worse]
  if any(a.not_worse is None for a in eligible):
    lines.append(f"points not significantly worse than the {top_words}: unknown (runs unpaired)")
  elif all(a.not_worse for a in eligible) and not math.isfinite(best.ci95):
    lines.append(f"points not significantly worse than the {top_words}: no test could run (one "
                 "run per point and no validation rows to pair)")
  else:
    named = ("; ".join(label(a) for a in near) if varying and len(near) <= 8 else
             "marked in the table" if varying else
             "lr " + ", ".join(f"{a.learning_rate:.3g}" for a in near))
    lines.append(f"points not significantly worse than the {top_words} (\"~\"; one-sided "
                 f"paired test by seed, fold and validation row, alpha {stats.ALPHA:g}): "
                 f"{len(near)} of {len(eligible)} eligible, {named}")
  return lines


def _covers(entries: Sequence[Aggregate]) -> str:
  """What the group's intervals cover (the eligible points' words, which the design shares)."""
  words = [a.covers for a in entries if a.eligible and a.covers] or [
      a.covers for a in entries if a.covers]
  return words[0] if words else "nothing (no point has an interval)"
