"""The main script's report: report.md and its figures for a sweep."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from lr_jax.report.estimate import estimate_markdown, result_estimates
from lr_jax.report.markdown import image, write_report
from lr_jax.report.panels import plot_panels
from lr_jax.report.points import group_title
from lr_jax.report.selection import _selection_markdown, sweep_table
from lr_jax.report.sweep_figures import _curve_panels, _sensitivity_panels


def write_sweep_report(result, out_dir: str, *, estimate: Mapping[str, object] | None = None,
                       command: str | None = None, title: str = "Learning-rate sweep"
                       ) -> list[str]:
  """Writes the main script's `report.md` and its figures into `out_dir`.

  Figures (PNG), one panel per compile group: `lr_accuracy.png` (classification) and
  `lr_loss.png`: the best validation accuracy / loss against learning rate, mean with its 95%
  Student-t band over the runs, the selected point and the other rule's point marked
  (`rule_points`), points where a run diverged marked as such; `curves_loss.png` and
  `curves_accuracy.png`: training and validation curves of the selected point and its
  neighbours on the grid. The page has the selection per group, the estimate (if given),
  the figures and the table (`sweep_table`, and `results.format_table` as printed).

  Args:
    result: a `SweepResult`.
    out_dir: the folder (a staging folder, for a run's output folder).
    estimate: the chosen configuration's score on data the sweep never saw (test set or
      nested CV; see `estimate_markdown`); None uses those the result carries
      (`result_estimates`: nested CV, a refit's test score), if any.
    command: the command that ran, shown at the end.
    title: the page title.

  Returns:
    The paths written: the figures, then report.md.
  """
  from lr_jax.results import format_table
  groups = [gi for gi in range(len(result.best))
            if any(a["group"] == gi for a in result.aggregates)]
  classification = any(a["higher_is_better"] for a in result.aggregates)
  paths, figures = [], []
  runs = sorted({a["n_total"] for a in result.aggregates})
  band = (f"band: 95% CI over {runs[0]} run{'s' if runs[0] > 1 else ''} per point"
          if len(runs) == 1 else "band: 95% CI over each point's runs")
  sensitivity = [("best_val_loss", "lr_loss.png", "validation loss")]
  if classification:
    sensitivity.insert(0, ("best_val_accuracy", "lr_accuracy.png", "validation accuracy"))
  for column, name, what in sensitivity if groups else ():
    panels, marks = _sensitivity_panels(result, groups, column)
    paths.append(plot_panels(
        os.path.join(out_dir, name), panels, xlabel="learning rate", ylabel=f"best {what}",
        logx=True, markers=marks, suptitle=f"Best {what} against learning rate ({band})"))
    figures.append(image(name, f"best {what} against learning rate"))
  for metric in (("loss", "accuracy") if classification else ("loss",)) if groups else ():
    panels = _curve_panels(result, groups, metric)
    if not panels:
      continue
    name = f"curves_{metric}.png"
    # Losses span decades: a log axis, where every value is positive.
    logy = metric == "loss" and all(np.nanmin(c.y) > 0 for cs in panels.values() for c in cs)
    paths.append(plot_panels(
        os.path.join(out_dir, name), panels, xlabel="epoch", ylabel=metric, logy=logy,
        suptitle=f"{metric.capitalize()} per epoch: the selected learning rate and its "
                 "neighbours (mean over runs; band: lowest to highest run)"))
    figures.append(image(name, f"{metric} per epoch, selected learning rate and neighbours"))
  selection = "\n\n".join(_selection_markdown(result, gi) for gi in groups) or (
      "No compile group has results.")
  sections = [("Selection", selection)]
  estimates = [(None, estimate)] if estimate is not None else result_estimates(result)
  if estimates:
    sections.append(("Estimate of the chosen configuration", "\n\n".join(
        (f"### group {gi}: {group_title(result, gi)}\n\n" if gi is not None and len(groups) > 1
         else "") + estimate_markdown(e) for gi, e in estimates)))
  if figures:
    sections.append(("Figures", "\n\n".join(figures)))
  tables = "\n\n".join(f"### group {gi}: {group_title(result, gi)}\n\n{sweep_table(result, gi)}"
                       for gi in groups)
  printed = format_table(result).rstrip()
  if printed:
    tables += ("\n\n<details><summary>The table as the script printed it</summary>\n\n"
               f"```text\n{printed}\n```\n\n</details>")
  sections.append(("Table", tables or "No results."))
  sections.append(("How to read it", "\n".join([
      "- **score**: a run's best validation accuracy (loss, for regression) over its epochs; a "
      "point's mean and 95% Student-t interval are over its runs (seeds × folds) with a score; "
      "n = 1 has no interval.",
      "- **eligible**: no run of the point diverged; only eligible points can be selected, and "
      "the figures join only them (a point where a run diverged is marked ✕, at its survivors' "
      "mean, or on the edge of the worst scores when every run diverged).",
      "- **P(best)**: the share of paired bootstrap resamples of the runs (by seed and fold) in "
      "which the point has the best mean.",
      "- **not worse** (~): not significantly worse than the highest mean, by a one-sided "
      "paired t-test by seed and fold.",
      "- **rules**: `best` picks the highest mean; `one_se` the largest learning rate whose "
      "mean is within one standard error of the highest (Breiman et al., 1984). Both are "
      "marked; `--select` says which one chose.",
  ])))
  if command:
    sections.append(("Command", f"```\n{command}\n```"))
  paths.append(write_report(out_dir, title, sections))
  return paths
