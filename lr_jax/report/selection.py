"""The sweep report's text per group: the table of its points and what was selected."""

from __future__ import annotations

import math

import numpy as np

from lr_jax import stats
from lr_jax.report.markdown import format_lr, markdown_table
from lr_jax.report.points import (_extra_keys, _point_name, _score_rows, best_mean_text,
                                  group_title, rule_points)


def _score_cell(a) -> str:
  from lr_jax.results import format_score
  return format_score(a.mean, a.ci95, a.n, getattr(a, "ci_low", None), getattr(a, "ci_high", None))


def _score_with_n(a) -> str:
  """The score with its n, n said once: '0.9133 ± 0.0379 (n=3)', '0.9500, n=1'."""
  cell = _score_cell(a)
  return cell if f"n={a.n}" in cell else f"{cell} (n={a.n})"


def _untested(eligible) -> str | None:
  """Why no not-worse test could run over a group's eligible points, or None if it ran.

  Unpaired runs (`not_worse` None) have no paired test; one run per point (n < 2), unless
  its validation rows are counted (`n_rows`), has no spread to test with, and the test then
  keeps every point: not a finding.
  """
  if any(a.not_worse is None for a in eligible):
    return "runs not paired by seed and fold"
  if any(a.n < 2 and not getattr(a, "n_rows", 0) for a in eligible):
    return "one run per point and no validation rows to pair"
  return None


def _not_worse_cell(a, untested: bool) -> str:
  """'~' not significantly worse than the best, '?' no test could run, '' worse or ineligible."""
  if not a.eligible:
    return ""
  if untested or a.not_worse is None:
    return "?"
  return "~" if a.not_worse else ""


def _epochs_cell(result, group: int, a, keys) -> str:
  """Mean epochs run over the point's runs with a score (those its n counts); '-' for none."""
  idx = _score_rows(result, group, a, keys)
  if idx.size == 0:
    return "-"
  return f"{np.asarray(result.rows['epochs_run'], np.float64)[idx].mean():.1f}"


def sweep_table(result, group: int) -> str:
  """A compile group's points as a Markdown table: score with its n, P(best), marks, notes.

  "not worse" is "~" where a point is not significantly worse than the best mean, "?" where
  no test could run (one run per point, or runs not paired); "epochs run" is the mean over
  the runs with a score, the n runs the score's mean is over.
  """
  from lr_jax.results import point_notes
  entries = [a for a in result.aggregates if a.group == group]
  extra = _extra_keys(entries)
  keys = ["learning_rate", *extra]
  picked = rule_points(result, group)
  metric = entries[0].metric
  best = best_mean_text(entries[0].higher_is_better, metric)
  untested = _untested([a for a in entries if a.eligible]) is not None
  from lr_jax.results.table import SCORE_WORDS
  when = SCORE_WORDS.get(getattr(entries[0], "score", "best_epoch"), "")
  headers = ["learning rate", *extra, f"{metric} {when}, mean ± 95% CI", "n", "P(best)",
             "not worse", "epochs run", "diverged", "notes"]
  body = []
  for a in entries:
    p = a.p_best
    marks = [f"**selected** ({stats.rule_mark(rule, best)})" if rule == result.select
             else stats.rule_mark(rule, best) for rule, b in picked.items() if b is a]
    notes = "; ".join(marks + ([point_notes(a)] if point_notes(a) else [])
                      + (["tied at the top"] if getattr(a, "tied", False) else []))
    body.append([format_lr(a.learning_rate), *[f"{a.value(k):g}" for k in extra], _score_cell(a),
                 a.n, f"{p:.2f}" if a.eligible and p is not None and math.isfinite(p)
                 else "-",
                 _not_worse_cell(a, untested), _epochs_cell(result, group, a, keys),
                 f"{a.n_diverged}/{a.n_total}", notes])
  return markdown_table(headers, body, align=["l"] * (1 + len(extra)) + ["r"] * 3 + ["c"]
                        + ["r"] * 2 + ["l"])


def _selection_markdown(result, group: int) -> str:
  """What was chosen in a group, what the other rule would choose, and how sure it is."""
  entries = [a for a in result.aggregates if a.group == group]
  best = result.best[group]
  picked = rule_points(result, group)
  chosen = picked.get(result.select)
  extra = _extra_keys(entries)
  lines = [f"**group {group}** — {group_title(result, group)}:", ""]
  if chosen is None:
    lines.append(f"- no learning rate selected: {best.reason or 'no eligible point'}")
  else:
    metric = chosen.metric
    top = best_mean_text(chosen.higher_is_better, metric)
    p = chosen.p_best
    p_text = f", P(best) {p:.2f}" if p is not None and math.isfinite(p) else ""
    lines.append(f"- selected: **{_point_name(chosen, extra)}** by "
                 f"`--select={result.select}` ({stats.rule_text(result.select, top)}): "
                 f"{metric} {_score_with_n(chosen)}{p_text}"
                 + (f"; the interval covers {chosen.covers}" if getattr(chosen, "covers", "")
                    else ""))
    tied = [a for a in entries if a.eligible and getattr(a, "tied", False) and a is not chosen]
    if tied:
      lines.append(f"- tied with {', '.join(_point_name(a, extra) for a in tied)} (the same "
                   "mean score); a tie goes to the smaller learning rate")
    from lr_jax.results.table import optimism_caveat
    caveat = optimism_caveat(
        sum(a.eligible for a in entries),
        has_test=bool(result.estimate and result.estimate["group"] == group
                      and result.estimate.get("test") is not None),
        nested=any(e.group == group for e in result.nested), rule=result.select)
    if caveat:
      lines.append(f"- the selected score is {caveat}")
    for rule, a in picked.items():
      if rule != result.select and a is not None:
        same = " (the same point)" if a is chosen else ""
        lines.append(f"- the `{rule}` rule ({stats.rule_text(rule, top)}) picks "
                     f"{_point_name(a, extra)}{same}: {_score_cell(a)}")
    eligible = [a for a in entries if a.eligible]
    near = [a for a in eligible if a.not_worse]
    why = _untested(eligible)
    if why is not None:
      lines.append(f"- points not significantly worse than the {top}: no test could run "
                   f"({why})")
    else:
      rows = " and validation row" if any(getattr(a, "n_rows", 0) for a in eligible) else ""
      lines.append(f"- not significantly worse than the {top} (a one-sided paired test by "
                   f"seed, fold{rows}; not \"as good\": the data cannot tell them apart): "
                   f"{len(near)} of {len(eligible)} eligible points: "
                   + ", ".join(_point_name(a, extra) for a in near))
  bad = [a for a in entries if a.n_diverged]
  if bad:
    lines.append("- ineligible, a run diverged: " + ", ".join(
        f"{_point_name(a, extra)}: {a.n_diverged}/{a.n_total} runs" for a in bad))
  return "\n".join(lines)
