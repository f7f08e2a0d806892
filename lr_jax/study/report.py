"""The study's report folder: the sweep's files, the figures, and report.md."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

from lr_jax import report
from lr_jax.study.cells import CellRow
from lr_jax.study.conclusion import Conclusion, conclusion
from lr_jax.study.config import StudyConfig
from lr_jax.study.figures import draw_figures
from lr_jax.study.phrases import budget_label, model_name
from lr_jax.study.literature import literature
from lr_jax.study.plan import Cell, plan_cost, regularised_line
from lr_jax.study.run import StudyResult, format_duration
from lr_jax.study.table import study_table


def _budget_setup(cfg: StudyConfig, cells: Sequence[Cell]) -> str:
  """One line per budget: what a run gets under it."""
  lines = []
  for budget in cfg.budgets:
    mine = sorted((c for c in cells if c.budget == budget and not c.arm),
                  key=lambda c: c.train_size)
    span = (f"{mine[0].steps} steps ({mine[0].epochs} epochs) at n={mine[0].train_size} to "
            f"{mine[-1].steps} ({mine[-1].epochs} epochs) at n={mine[-1].train_size}")
    what = {
        "epochs": f"up to {cfg.epochs} epochs at every size, early stopping on the validation "
                  f"loss (patience {cfg.patience}): {span}",
        "steps": f"exactly {cfg.steps} optimizer updates per run at every size, early stopping "
                 f"off (a run that stopped early would have fewer); {span}",
        "converge": f"until early stopping on the validation loss fires (patience "
                    f"{cfg.patience}), capped at about {cfg.converge_steps} steps (whole "
                    f"epochs); a point with a run still improving at the cap is *unconverged*, "
                    f"and no finding rests on it: {span}",
    }[budget]
    lines.append(f"  - *{budget_label(budget)}*: {what}")
  return "\n".join(lines)


def _lines_setup(cfg: StudyConfig) -> str:
  """One line per line of the study: what it varies against the reference line."""
  opt, width, schedule, budget = cfg.reference
  if cfg.design == "product":
    return (f"- design: every optimizer ({', '.join(cfg.optimizers)}) x width "
            f"({', '.join(map(str, cfg.widths))}) under every schedule and budget (the wide "
            "grid)")
  alternatives = [f"{o} (against {opt})" for o in cfg.optimizers[1:]]
  alternatives += [f"{model_name(w)} (against {model_name(width)})" for w in cfg.widths[1:]]
  extras = ([f"the {s} schedule" for s in cfg.schedules if s != schedule]
            + [budget_label(b) for b in cfg.budgets if b != budget])
  text = (f"- design: unions, not products. The *reference line* is {opt} {model_name(width)}, "
          f"{schedule} schedule, {budget_label(budget)}, at every size")
  if extras:
    text += f"; it also runs {' and '.join(extras)} (traced numbers of its programs)"
  if alternatives:
    text += (f"; each other factor is one line that differs from it in that factor alone: "
             f"{'; '.join(alternatives)}")
  return text


def _arms_setup(cfg: StudyConfig, cells: Sequence[Cell]) -> str:
  """Setup lines of the regularisation, label-noise and test-set parts, or why there is none."""
  line = regularised_line(cfg)
  sizes = lambda pred: ", ".join(str(n) for n in sorted({c.train_size for c in cells if pred(c)}))
  if line:
    axes = "; ".join(f"{name} {', '.join(f'{v:g}' for v in values)}"
                     for name, values in cfg.regularisation)
    reg = (f"- regularisation arm: on the reference line ({line[0]} {model_name(line[1])}, "
           f"{budget_label(cfg.reference[3])}) at n = {sizes(lambda c: c.regularised)}, the "
           f"product {axes} (traced axes of one program; AdamW at weight decay 0 is Adam update "
           "for update). *Off* is the subset where all are 0; *tuned* takes, per learning "
           "rate, its best setting, and \"significantly worse than tuned\" is tested at 5% "
           "divided by the settings (Bonferroni: the tuned best is the best of several)")
  else:
    reg = "- regularisation: not measured in this run (no regularisation grid or sizes)"
  if any(c.noisy for c in cells):
    noise = (f"- label-noise arm: on the reference line at n = {sizes(lambda c: c.noisy)}, under "
             f"every budget, the fraction of training labels replaced by a random other class, "
             f"{', '.join(f'{v:g}' for v in cfg.label_noise)} (fixed per seed and row; "
             "validation and test labels stay clean). Its runs are scored twice: at the epoch "
             "of lowest *clean* validation loss (what early stopping on clean labels restores), "
             "and at the last epoch they trained (what a practitioner without clean labels "
             "keeps; under fixed steps, the end of the budget)")
  else:
    noise = "- label noise: not measured in this run"
  if any(c.tested for c in cells):
    test = (f"- test set: at n = {sizes(lambda c: c.tested)}, {cfg.test_fraction:g} of the data "
            "set is held out first (stratified, data seed as above); the best point's runs, "
            "each trained on its folds, are scored on it")
  else:
    test = "- test set: none in this run"
  return "\n".join([reg, noise, test])


def study_conclusion(cfg: StudyConfig, rows: Sequence[CellRow]) -> Conclusion:
  """The conclusion of a study's table with its configuration's reference line and the
  regularisation arm's number of settings (the Bonferroni divisor its sentences state)."""
  settings = math.prod(len(values) for _, values in cfg.regularisation) or None
  return conclusion(rows, reference_lr=cfg.reference_lr, reference=cfg.reference,
                    settings=settings)


def write_study_report(study: StudyResult, out_dir: str, *, extra: Sequence[tuple[str, str]] = ()
                       ) -> str:
  """Writes the study's figures, report.md and the sweep's files into `out_dir`.

  Args:
    study: from `run_study`.
    out_dir: the output folder.
    extra: more (heading, Markdown) sections to append, e.g. the command that ran.

  Returns:
    The path of report.md.
  """
  from lr_jax.outputs import write_outputs
  cfg, rows = study.plan.config, study.rows
  write_outputs(study.sweep, out_dir)
  figures = draw_figures(cfg, rows, out_dir)
  cells = study.plan.cells
  cost = plan_cost(study.plan)
  first = [c for c in cells if c.budget == cfg.budgets[0] and not c.arm]
  keras_final = {c.train_size: 0.9 ** (c.steps / 1000) for c in first}
  sizes = sorted(keras_final)
  folds = {c.train_size: c.folds for c in first}
  rows_text = lambda n: next(r.train_rows for r in rows if r.train_size == n)
  setup = "\n".join([
      f"- data: `{cfg.dataset}`, training sizes n = {', '.join(str(n) for n in sizes)} "
      f"(stratified subsamples, data seed {cfg.data_seed}); each cell is k-fold stratified "
      f"cross-validation (k = min({cfg.folds}, smallest class count): "
      f"{'/'.join(str(k) for k in sorted(set(folds.values())))}) x {cfg.seeds} seeds, so a run "
      f"trains on {', '.join(f'{rows_text(n)} rows at n={n}' for n in sizes)}: tables and "
      "figures name a size by the rows a run trains on",
      f"- models: one-hidden-layer ReLU MLPs of width {', '.join(map(str, cfg.widths))}; "
      f"optimizers {', '.join(cfg.optimizers)}",
      _lines_setup(cfg),
      f"- learning rates: {len(cfg.learning_rates)} log-spaced from "
      f"{report.format_lr(cfg.learning_rates[0])} to {report.format_lr(cfg.learning_rates[-1])}",
      f"- budgets: {len(cfg.budgets)} on the reference line; batch {cfg.batch_size} (the whole "
      "training fold where it is smaller, as Keras); best epoch (lowest validation loss) "
      "restored; score: validation accuracy on the held-out fold, cross-fitted (each half of "
      "its rows at the epoch the other half monitors best, so no row scores the epoch it chose)",
      _budget_setup(cfg, cells),
      f"- schedules: {', '.join(cfg.schedules)}. Exponential decay is Keras' "
      "ExponentialDecay with decay_steps=1, lr * r^step, with r chosen per cell so "
      f"that the rate falls to {cfg.final_lr_fraction:g}x its peak at the budget's last step "
      f"(r = {cfg.final_lr_fraction:g}^(1 / steps)). The article's 0.9 per "
      f"decay_steps=1000 would end at {keras_final[sizes[0]]:.3f}x the peak at n={sizes[0]} "
      f"({min(c.steps for c in first)} steps, {budget_label(cfg.budgets[0])}) and "
      f"{keras_final[sizes[-1]]:.3f}x at n={sizes[-1]}. Both schedules share one compiled "
      "program: constant is decay rate 1.0",
      "- within the noise of the best: the learning rates the one-sided paired test of "
      "`lr_jax.stats.compare` (by seed, fold and validation row, 5%) cannot tell from the "
      "best (*not worse than the best*; not \"as good\"); P(best): the share of two-way "
      "bootstrap resamples (seeds and validation rows) in which a learning rate is the best",
      f"- {cost.groups} compile groups in {cost.programs} programs, "
      f"{study.sweep.num_variants} training runs, at most {cost.tflop:.1f} TFLOP counted from "
      f"the plan; wall time {format_duration(study.wall_s)}"
      f"{f' ({study.wall_s:.0f} s)' if study.wall_s >= 60 else ''} on "
      f"{os.cpu_count()} CPU cores",
  ])
  summary = study_conclusion(cfg, rows)
  setup += "\n" + _arms_setup(cfg, cells)
  sections = [
      ("Answer", summary.markdown()),
      ("Setup", setup),
      ("Figures", "\n\n".join(report.image(f, alt) for f, alt in figures)),
      ("Table", "One line per cell. *best LR*: highest mean validation accuracy (the score) "
                "over the runs (a learning rate where any run diverged is not eligible); *(edge)*: at "
                "the end of the grid. *regularisation*: off (dropout and weight decay 0), or "
                "tuned (each learning rate at its best setting; the best one's shown). *test "
                "accuracy*: the best point's runs on the held-out test set, where the cell has "
                "one. *not worse than the best*: the smallest and largest "
                "learning rate not significantly worse than the best, and how many there are. "
                "*P(best) by LR*: the learning rates with P(best) >= 0.05. *still training*: "
                "runs that neither stopped early nor diverged when the budget ran out. *arm*: "
                "- for a factor line, or the label-noise or regularisation arm (whose clean, "
                "unregularised rows pair with its other rows). *score*: the epoch a run is "
                "scored at: *best epoch* (lowest clean validation loss, cross-fitted) or *last "
                "epoch* (the last it trained; the noise arm only). *unconverged points*: to "
                "convergence, the learning rates with a run still improving at the cap (- "
                "under a fixed budget); *(unconverged)* marks such a best learning rate.\n\n"
                + study_table(rows, reference_lr=cfg.reference_lr)),
      ("Beside the literature", literature(rows, reference_lr=cfg.reference_lr)),
      *extra,
  ]
  return report.write_report(out_dir, "Is a very small learning rate necessary with small data?",
                             sections)
