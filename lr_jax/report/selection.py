"""The sweep report's text per group: the table of its points and what was selected."""

from __future__ import annotations

import math

from lr_jax.report.markdown import format_lr, markdown_table
from lr_jax.report.points import _extra_keys, _point_name, group_title, rule_points


_MARK = {"best": "highest mean", "one_se": "one-SE rule"}


_RULE_TEXT = {"best": "highest mean",
              "one_se": "largest learning rate within one standard error of the highest mean"}


def _score_cell(a) -> str:
  from lr_jax.results import format_score
  return format_score(a.mean, a.ci95, a.n)


def sweep_table(result, group: int) -> str:
  """A compile group's points as a Markdown table: score with its n, P(best), marks, notes."""
  from lr_jax.results import point_notes
  entries = [a for a in result.aggregates if a.group == group]
  extra = _extra_keys(entries)
  picked = rule_points(result, group)
  metric = entries[0].metric
  headers = ["learning rate", *extra, f"best {metric}, mean ± 95% CI", "n", "P(best)",
             "not worse", "epochs run", "diverged", "notes"]
  body = []
  for a in entries:
    p = a.p_best
    marks = [f"**selected** ({_MARK[rule]})" if rule == result.select else _MARK[rule]
             for rule, b in picked.items() if b is a]
    notes = "; ".join(marks + ([point_notes(a)] if point_notes(a) else []))
    body.append([format_lr(a.learning_rate), *[f"{a.value(k):g}" for k in extra], _score_cell(a),
                 a.n, f"{p:.2f}" if a.eligible and p is not None and math.isfinite(p)
                 else "-",
                 {True: "~", False: "", None: "?"}[a.not_worse],
                 f"{a.mean_epochs_run:.1f}", f"{a.n_diverged}/{a.n_total}", notes])
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
    p = chosen.p_best
    p_text = f", P(best) {p:.2f}" if p is not None and math.isfinite(p) else ""
    lines.append(f"- selected: **{_point_name(chosen, extra)}** by "
                 f"`--select={result.select}` ({_RULE_TEXT.get(result.select, result.select)}): "
                 f"best {metric} {_score_cell(chosen)} (n={chosen.n}){p_text}")
    for rule, a in picked.items():
      if rule != result.select and a is not None:
        same = " (the same point)" if a is chosen else ""
        lines.append(f"- the `{rule}` rule ({_RULE_TEXT.get(rule, rule)}) picks "
                     f"{_point_name(a, extra)}{same}: {_score_cell(a)}")
    eligible = [a for a in entries if a.eligible]
    near = [a for a in eligible if a.not_worse]
    if any(a.not_worse is None for a in eligible):
      lines.append("- points not significantly worse than the highest mean: unknown (runs "
                   "not paired by seed and fold)")
    else:
      lines.append(f"- not significantly worse than the highest mean (paired by seed and "
                   f"fold): {len(near)} of {len(eligible)} eligible points: "
                   + ", ".join(_point_name(a, extra) for a in near))
  bad = [a for a in entries if a.n_diverged]
  if bad:
    lines.append("- ineligible, a run diverged: " + ", ".join(
        f"{_point_name(a, extra)}: {a.n_diverged}/{a.n_total} runs" for a in bad))
  return "\n".join(lines)
