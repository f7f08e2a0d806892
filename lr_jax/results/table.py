"""The text table of a sweep: each group's points, scores and selection (`format_table`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax import stats
from lr_jax.results.aggregates import Aggregate
from lr_jax.results.result import SweepResult


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
