"""`finder_markdown`: the Markdown report of a range test and of its check sweep."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lr_jax.results import SweepResult
from lr_jax.finder.result import FinderResult, _model_name


def _lr(x: float) -> str:
  return f"{x:.3g}" if math.isfinite(x) else "n/a"


def _ci(mean: float, ci: float) -> str:
  if not math.isfinite(mean):
    return "n/a"
  return f"{mean:.4f} ± {ci:.4f}" if math.isfinite(ci) else f"{mean:.4f}"


def finder_markdown(result: FinderResult, *, figure: str = "finder.png",
                    comparison: Sequence[dict] | None = None,
                    sweep: SweepResult | None = None) -> str:
  """The Markdown report: the figure, the suggestions, and (if given) the check sweep."""
  cfg, exp = result.config, result.config["experiment"]
  seeds = ", ".join(map(str, result.seeds))
  lines = [
      f"# LR range test: {exp['optim']['name']} on {exp['data']['dataset']}", "",
      f"![LR range test]({figure})", "",
      f"Model {_model_name(cfg)}, {cfg['train_size']} training "
      f"examples, batch size {exp['train']['batch_size'] or 'full'}; the learning rate grew "
      f"exponentially from {cfg['lr_min']:.3g} to {cfg['lr_max']:.3g} over "
      f"{cfg['num_steps']} steps; seeds {seeds}. Loss smoothed with a bias-corrected moving "
      f"average (beta {cfg['beta']}); a seed stops at 4x its minimum smoothed loss "
      f"(steps kept: {', '.join(map(str, result.steps_kept.tolist()))}).", "",
      "## Suggestions", "",
      "| rule | mean curve | " + " | ".join(f"seed {s}" for s in result.seeds) + " |",
      "| --- | ---: | " + " | ".join("---:" for _ in result.seeds) + " |"]
  for rule, s in result.suggestions.items():
    lines.append(f"| {rule} | {_lr(s['mean'])} | "
                 + " | ".join(_lr(x) for x in s["per_seed"]) + " |")
  lines += ["", "steepest: where the smoothed loss falls fastest against log LR. min_div_10: a "
            "tenth of the LR at the smoothed loss's minimum. Both read the mean curve, "
            "skipping the first tenth of the steps and the last 5 before the stop (fastai).", ""]
  if comparison is not None and sweep is not None:
    sexp = sweep.config["experiments"][0]
    grid = sweep.config["grid"]
    metric = comparison[0]["metric"]
    best = sweep.best[0]
    lines += [
        "## Check: a real sweep", "",
        f"{len(grid['learning_rates'])} learning rates from {min(grid['learning_rates']):.3g} to "
        f"{max(grid['learning_rates']):.3g}, seeds {', '.join(map(str, grid['seeds']))}, up to "
        f"{sexp['train']['epochs']} epochs ({sexp['optim']['schedule']} schedule, patience "
        f"{sexp['train']['patience']}). " + (
            f"Best learning rate: {best['reason']}." if "reason" in best else
            f"Best learning rate {_lr(best.get('learning_rate', math.nan))}: {metric} "
            f"{_ci(best.get('mean', math.nan), best.get('ci95', math.nan))} (mean ± 95% CI)."),
        "",
        f"| rule | suggestion | suggestion / best LR | nearest grid LR | {metric} there | "
        f"{metric} at best LR | gap to best, paired |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in comparison:
      if "nearest_lr" not in c:
        lines.append(f"| {c['rule']} | {_lr(c['suggestion'])} | n/a | n/a | n/a | n/a | n/a |")
        continue
      div = f" ({c['nearest_diverged']} diverged)" if c["nearest_diverged"] else ""
      gap = ("0 (it is the best)" if c["nearest_lr"] == c["sweep_best_lr"]
             else _ci(c["gap_mean"], c["gap_ci95"]))
      lines.append(
          f"| {c['rule']} | {_lr(c['suggestion'])} | {c['ratio_to_best']:.2f} | "
          f"{_lr(c['nearest_lr'])} | {_ci(c['nearest_mean'], c['nearest_ci95'])}{div} | "
          f"{_ci(c['best_mean'], c['best_ci95'])} | {gap} |")
    lines += ["", f"Per learning rate ({metric}, mean ± 95% CI over seeds):", "",
              f"| learning rate | {metric} | diverged | |", "| ---: | ---: | ---: | --- |"]
    marks = {}
    for c in comparison:
      if "nearest_lr" in c:
        marks.setdefault(c["nearest_lr"], []).append(f"nearest {c['rule']}")
    for a in (a for a in sweep.aggregates if a["group"] == 0):
      note = (["best"] if a is best else []) + marks.get(a["learning_rate"], [])
      lines.append(f"| {a['learning_rate']:.3g} | {_ci(a['mean'], a['ci95'])} | "
                   f"{a['diverged']}/{a['n_total']} | {', '.join(note)} |")
    lines.append("")
  return "\n".join(lines)
