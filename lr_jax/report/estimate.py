"""The chosen configuration's honest estimate (test set or nested CV) as Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping

from lr_jax.report.markdown import format_ci, format_lr, markdown_table


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
      fold), `selected_learning_rates` ({learning rate: times selected} over outer folds).
      Other keys are listed as they are.

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
  if val is not None and math.isfinite(float(val)):
    optimism = (float(val) - score) if higher else (score - float(val))
    lines.append(
        f"Its validation score in the sweep was {float(val):.4f}: the winner's-curse gap "
        f"(validation minus {'test' if kind == 'test' else 'nested-CV'} score"
        f"{'' if higher else ', for a loss test minus validation'}) is **{optimism:+.4f}**"
        + (" — the sweep's best validation score was optimistic." if optimism > 0 else
           " — no optimism showed here."))
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
           "learning_rate", "outer_scores", "selected_learning_rates"}
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
    out.append((int(est["group"]), {
        "kind": "test", "metric": est["metric"], "score": est["test"], "n": est["test_n"],
        "validation_score": est["validation"],
        "learning_rate": result.best[int(est["group"])].get("learning_rate"),
        "rule": est.get("rule"), "refit rows": est.get("refit_n")}))
  return out
