"""The main script's report: report.md and its figures for a sweep."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from lr_jax.report.estimate import estimate_markdown, result_estimates
from lr_jax.report.markdown import image, write_report
from lr_jax.report.panels import plot_panels
from lr_jax.report.points import best_mean_text, group_title
from lr_jax.report.selection import _selection_markdown, sweep_table
from lr_jax.report.sweep_figures import _curve_panels, _sensitivity_panels, is_score, metric_range


def _cut_text(spans) -> str:
  """How a figure's bands were cut to the metric's range (`metric_range`), '' if not at all.

  Args:
    spans: per panel (compile group), its range or None (not known: not cut).
  """
  known = [s for s in spans if s is not None]
  if not known:
    return ""
  lo, hi = known[0]
  where = "" if len(known) == len(spans) and len(set(known)) == 1 else (
      ", where the metric's range is known")
  if len(set(known)) > 1:
    return f", cut to the metric's range{where}"
  return (f", cut to [{lo:g}, {hi:g}]" if hi < float("inf") else f", cut at {lo:g}") + where


def _best_text(result, groups) -> str:
  """What the `best` rule picks, in words, over the groups (`best_mean_text`)."""
  texts = []
  for gi in groups:
    a = next(a for a in result.aggregates if a["group"] == gi)
    text = best_mean_text(a["higher_is_better"], a["metric"])
    if text not in texts:
      texts.append(text)
  if len(texts) == 1:
    return texts[0]
  return "best mean (" + ", ".join(texts) + ", by each group's score)"


def _score_of(result) -> str:
  """Which epoch's metric the result's aggregates score (`results.SCORES`)."""
  return next((a.score for a in result.aggregates if getattr(a, "score", "")),
              getattr(result, "score", "crossfit"))


def _score_words(result) -> str:
  """What a run's score is, in words: the metric and its epoch (`results.SCORES`)."""
  metrics = sorted({a.metric for a in result.aggregates if a.metric}) or ["val_accuracy"]
  when = {"best_epoch": "at the epoch early stopping monitors (the lowest validation loss by "
                        "default; the parameters `restore_best` keeps), not its best over "
                        "the epochs",
          "last_epoch": "at the last epoch it trained",
          "crossfit": "cross-fitted: each half of the validation rows scored at the epoch "
                      "the other half monitors best, so no row scores the epoch it chose"
          }[_score_of(result)]
  return f"{' / '.join(metrics)} {when}"


def write_sweep_report(result, out_dir: str, *, estimate: Mapping[str, object] | None = None,
                       command: str | None = None, title: str = "Learning-rate sweep"
                       ) -> list[str]:
  """Writes the main script's `report.md` and its figures into `out_dir`.

  Figures (PNG), one panel per compile group: `lr_accuracy.png` (classification) and
  `lr_loss.png`: validation accuracy / loss at the scored epoch (cross-fitted by default; a
  cross-fitted score's other metric at the monitored best epoch) against learning rate, mean
  with its 95% Student-t band over the runs (cut to the metric's range where known: `metric_range`), the
  selected point and the other rule's point marked
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
  groups = [gi for gi in range(len(result.best))
            if any(a["group"] == gi for a in result.aggregates)]
  classification = any(a["higher_is_better"] for a in result.aggregates)
  paths, figures = _sensitivity_figures(result, groups, classification, out_dir)
  curve_paths, curve_figures = _curve_figures(result, groups, classification, out_dir)
  paths += curve_paths
  figures += curve_figures
  sections = _sections(result, groups, figures, estimate)
  sections.append(("How to read it", _glossary(result, groups)))
  if command:
    sections.append(("Command", f"```\n{command}\n```"))
  paths.append(write_report(out_dir, title, sections))
  return paths


# Which epoch a figure's column is at, in its title: by the column's prefix (`score_column`).
_COLUMN_WORDS = {"best": "at the monitored best epoch", "last": "at the last epoch",
                 "crossfit": "cross-fitted"}


def _sensitivity_figures(result, groups, classification: bool, out_dir: str
                         ) -> tuple[list[str], list[str]]:
  """`lr_accuracy.png` (classification) and `lr_loss.png`: the score against learning rate
  (see `write_sweep_report`); the paths written and the page's images of them."""
  paths, figures = [], []
  runs = sorted({a["n_total"] for a in result.aggregates})
  from lr_jax.results import score_column
  score = _score_of(result)
  scored = {a.metric for a in result.aggregates}
  covers = next((a.covers for a in result.aggregates if a.eligible and a.covers), "")
  sensitivity = [("val_loss", "lr_loss.png", "validation loss")]
  if classification:
    sensitivity.insert(0, ("val_accuracy", "lr_accuracy.png", "validation accuracy"))
  for metric, name, what in sensitivity if groups else ():
    # The rows keep a cross-fitted column for the metric the runs are scored by alone
    # (`score_column`): the other metric is drawn at the monitored best epoch, as its title says.
    column = score_column(metric, score, metric if metric in scored else next(iter(scored), metric))
    when = _COLUMN_WORDS[column.split("_", 1)[0]]
    panels, marks = _sensitivity_panels(result, groups, column)
    cut = _cut_text([metric_range(result, gi, column) for gi in groups])
    if covers and all(is_score(a, column) for a in result.aggregates):
      band = f"band: the table's 95% CI, over {covers}"
    else:
      band = (f"band: Student-t 95% CI over {runs[0]} run{'s' if runs[0] > 1 else ''} per point"
              if len(runs) == 1 else "band: Student-t 95% CI over each point's runs")
    paths.append(plot_panels(
        os.path.join(out_dir, name), panels, xlabel="learning rate", ylabel=f"{what} {when}",
        logx=True, markers=marks,
        suptitle=f"{what.capitalize()} {when} against learning rate ({band}{cut})"))
    figures.append(image(name, f"{what} {when} against learning rate"))
  return paths, figures


def _curve_figures(result, groups, classification: bool, out_dir: str
                   ) -> tuple[list[str], list[str]]:
  """`curves_loss.png` and `curves_accuracy.png` (classification): the selected point's and
  its neighbours' curves per epoch; the paths written and the page's images of them."""
  paths, figures = [], []
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
  return paths, figures


def _sections(result, groups, figures: list[str], estimate: Mapping[str, object] | None
              ) -> list[tuple[str, str]]:
  """The page's sections up to the table: the selection, the estimate (if any), the figures
  (if any) and the table, as (heading, markdown)."""
  from lr_jax.results import format_table
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
  return sections


def _glossary(result, groups) -> str:
  """The "How to read it" section: what the score, eligible, P(best), not worse, epochs run
  and the rules mean."""
  top = _best_text(result, groups) if groups else "highest mean"
  return "\n".join([
    f"- **score**: a run's {_score_words(result)}; a point's mean is over its runs (seeds × "
    "folds) with a score, and its 95% interval counts the seeds, the folds and the finite "
    "validation rows (`lr_jax.stats`; the table's first line says what it covers). "
    + ("No row scores the epoch it chose, but the selected point is the best of many noisy "
       "means, so its score flatters the choice: " if _score_of(result) == "crossfit" else
       "The epoch is chosen on the rows that score it, and the selected point is the best of "
       "many noisy means, so the score flatters: ")
    + "a test set (`--test_fraction`) or nested CV (`--outer_folds`) measures by how much.",
    "- **eligible**: no run of the point diverged; only eligible points can be selected, and "
    "the figures join only them (a point where a run diverged is marked ✕, at its survivors' "
    "mean, or on the edge of the worst scores when every run diverged).",
    "- **P(best)**: the share of two-way bootstrap resamples (seeds and validation rows, "
    "drawn alike for every point) in which the point has the best mean; points tied at the "
    "top (the same number of rows right) share it.",
    f"- **not worse** (~): not significantly worse than the {top}, by a one-sided "
    "paired test by seed, fold and validation row; ? where no test could run (one run per "
    "point and no rows to pair, or runs not paired by seed and fold). Not significantly "
    "worse is not \"as good\": the data cannot tell them apart.",
    "- **epochs run**: the mean over the same runs as the score (those with a score; a "
    "diverged run's epochs are not in it).",
    f"- **rules**: `best` picks the {top}; `one_se` the largest learning rate whose "
    f"mean is within one standard error of the {top} (Breiman et al., 1984). Both are "
    "marked; `--select` says which one chose.",
  ])
