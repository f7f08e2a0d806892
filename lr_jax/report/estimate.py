"""The chosen configuration's honest estimate (test set or nested CV) as Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping

from lr_jax.results.table import optimism_caveat  # noqa: F401  (the report's too)
from lr_jax.report.markdown import format_ci, format_lr, markdown_table


def gap_verdict(value: float, ci95: float | None, sizes: str, positive: str,
                negative: str) -> str:
  """What a gap's 95% interval supports, in words: a verdict only where it excludes 0.

  Args:
    value: the gap.
    ci95: its 95% half-width; None or NaN: no interval.
    sizes: what the interval's width comes from, e.g. "n_test = 54 rows".
    positive: the verdict when the interval lies above 0; `negative`, below.

  Returns:
    `positive` or `negative`, or "not distinguishable from 0 with {sizes}", or "no interval,
    so no verdict".
  """
  if ci95 is None or not math.isfinite(float(ci95)) or not math.isfinite(float(value)):
    return "no interval, so no verdict"
  if abs(float(value)) > float(ci95):
    return positive if value > 0 else negative
  return f"not distinguishable from 0 with {sizes}"


def estimate_markdown(estimate: Mapping[str, object]) -> str:
  """The section on the chosen configuration's honest estimate: a test set, or nested CV.

  The selected point's validation score is the best of many means, so it flatters the chosen
  configuration (the winner's curse); a score on data the selection never saw does not.

  Args:
    estimate: `score` (required): the test score, or the mean of the outer folds' scores;
      optional: `kind` ("test" or "nested_cv"), `metric` (e.g. "accuracy", "loss"),
      `higher_is_better` (default: unless the metric is a loss), `ci95` (the score's 95%
      half-width), `n` (test rows, or outer folds), `validation_score` (the winner's mean
      validation score), `learning_rate` (the chosen one), `outer_scores` ([K] per outer
      fold), `selected_learning_rates` ({learning rate: times selected} over outer folds);
      a refit's (`lr_jax.export.estimate_of`): `gap_ci95` (the gap's 95% half-width),
      `selection_gap` and `selection_gap_ci95` (validation against the chosen point's own
      `sweep_runs` runs' test score `sweep_test`), `refit_gain` and `refit_gain_ci95` (the
      refit against those runs, paired on the test rows), `covers` (what the intervals count),
      `refit_n` and `refit_rows` (how many rows the refit trained on, and which). Other keys
      are listed as they are.

  Returns:
    Markdown.

  Raises:
    ValueError: `score` is missing.
  """
  if "score" not in estimate:
    raise ValueError(f"an estimate needs a 'score'; got keys {', '.join(map(str, estimate))}")
  kind = estimate.get("kind", "test")
  metric = str(estimate.get("metric", "score"))
  higher = bool(estimate.get("higher_is_better", "loss" not in metric))
  score = float(estimate["score"])
  n = estimate.get("n")
  ci = estimate.get("ci95")
  where = {"test": "on the held-out test set", "nested_cv": "by nested cross-validation"
           }.get(kind, f"({kind})")
  size = ""
  if n is not None:
    size = f" ({n} test rows)" if kind == "test" else f" ({n} outer folds)"
  score_text = format_ci(score, float(ci) if ci is not None else math.nan, digits=4)
  lr = estimate.get("learning_rate")
  lr_text = f" (lr {format_lr(float(lr))})" if lr is not None else ""
  lines = [f"The chosen configuration{lr_text} scores {metric} **{score_text}** {where}{size}."]
  val = estimate.get("validation_score")
  sizes = f"n_test = {n} rows" if kind == "test" else f"{n} outer folds"
  if val is not None and math.isfinite(float(val)):
    gap = (float(val) - score) if higher else (score - float(val))
    gap_ci = _finite(estimate.get("gap_ci95"))
    against = "test" if kind == "test" else "nested-CV"
    split = estimate.get("refit_gain") is not None
    lines.append(
        f"Its validation score in the sweep was {float(val):.4f}: the gap (validation minus "
        f"{against} score{'' if higher else f', for a loss {against} minus validation'}) is "
        f"**{_signed(gap)}**" + (f" ± {gap_ci:.4f} (95%)" if gap_ci is not None else "") + ": "
        + gap_verdict(gap, gap_ci, sizes, "the validation score was optimistic",
                      "the validation score was pessimistic") + "."
        + (" It mixes the selection's optimism with the refit's gain from training on more "
           "rows; apart:" if split else ""))
  lines += _parts(estimate, sizes)
  body = "\n".join(lines)
  outer = estimate.get("outer_scores")
  if outer is not None:
    body += "\n\n" + markdown_table(["outer fold", metric],
                                    [[i, float(v)] for i, v in enumerate(outer)])
  counts = estimate.get("selected_learning_rates")
  if counts:
    body += "\n\n" + markdown_table(
        ["learning rate", "selected in outer folds"],
        [[format_lr(float(k)), v] for k, v in sorted(counts.items(), key=lambda kv: float(kv[0]))])
  known = {"kind", "metric", "higher_is_better", "score", "ci95", "n", "validation_score",
           "learning_rate", "outer_scores", "selected_learning_rates", "gap_ci95",
           "selection_gap", "selection_gap_ci95", "sweep_test", "sweep_runs", "refit_gain",
           "refit_gain_ci95", "covers", "refit_n", "refit_rows"}
  rest = [[k, v] for k, v in estimate.items() if k not in known]
  if rest:
    body += "\n\n" + markdown_table(["", "value"], rest)
  return body


def result_estimates(result) -> list[tuple[int, dict]]:
  """The estimates a sweep result carries, as `estimate_markdown` reads them: (group, estimate).

  Nested cross-validation's (`SweepResult.nested`, one per group) and a refit's test score
  (`SweepResult.estimate`, when it has a test set).
  """
  out = []
  for e in getattr(result, "nested", ()) or ():
    out.append((e.group, {
        "kind": "nested_cv", "metric": e.metric, "higher_is_better": e.higher_is_better,
        "score": e.mean, "ci95": e.ci95, "n": len(e.folds), "validation_score": e.validation,
        "outer_scores": [f.score for f in e.folds],
        "selected_learning_rates": dict(e.selected), "rule": e.rule}))
  est = getattr(result, "estimate", None)
  if est and est.get("test") is not None:
    parts = {k: est[k] for k in ("gap_ci95", "selection_gap", "selection_gap_ci95",
                                 "sweep_test", "sweep_runs", "refit_gain", "refit_gain_ci95",
                                 "covers", "refit_rows") if est.get(k) is not None}
    out.append((int(est["group"]), {
        "kind": "test", "metric": est["metric"], "score": est["test"], "n": est["test_n"],
        **({"ci95": est["test_ci95"]} if est.get("test_ci95") is not None else {}),
        "validation_score": est["validation"] if est.get("gap") is not None else None,
        "learning_rate": result.best[int(est["group"])].get("learning_rate"),
        "rule": est.get("rule"), "refit_n": est.get("refit_n"), **parts}))
  return out


def _signed(x) -> str:
  """`x` to 4 decimals with its sign, never "-0.0000" (a difference of equal scores)."""
  return f"{round(float(x), 4) + 0.0:+.4f}"


def _finite(value) -> float | None:
  """`value` as a float, or None where it is missing or not finite."""
  return float(value) if value is not None and math.isfinite(float(value)) else None


def _parts(estimate: Mapping[str, object], sizes: str) -> list[str]:
  """A refit's selection-only gap, its gain and its rows, each gap with its interval."""
  lines = []
  sel, gain = estimate.get("selection_gap"), estimate.get("refit_gain")
  if sel is not None:
    ci = _finite(estimate.get("selection_gap_ci95"))
    runs = estimate.get("sweep_runs")
    covers = estimate.get("covers")
    lines.append(
        f"- **Selection alone:** the chosen point's own {f'{runs} ' if runs else ''}sweep runs, "
        f"trained on exactly the rows behind the validation score, score "
        f"{float(estimate['sweep_test']):.4f} on the test rows: the selection-only gap (how "
        f"much worse they score on the test rows than on validation) is **{_signed(sel)}**"
        + (f" ± {ci:.4f} (95%{f'; {covers}' if covers else ''})" if ci is not None else "")
        + ": "
        + gap_verdict(float(sel), ci, sizes, "the validation score was optimistic",
                      "the validation score was pessimistic") + ".")
  if gain is not None:
    ci = _finite(estimate.get("refit_gain_ci95"))
    lines.append(
        f"- **The refit's gain:** how much better the refit model scores than those runs on "
        f"the same test rows, paired row by row, is **{_signed(gain)}**"
        + (f" ± {ci:.4f} (95%)" if ci is not None else "") + ": "
        + gap_verdict(float(gain), ci, sizes, "the refit scores better",
                      "the refit scores worse") + ".")
  rows, n = estimate.get("refit_rows"), estimate.get("refit_n")
  if rows or n is not None:
    what = f"{n} rows" if n is not None else "rows"
    lines.append(f"- The refit trained on {what}" + (f": {rows}." if rows else "."))
  return ([""] + lines) if lines else []
