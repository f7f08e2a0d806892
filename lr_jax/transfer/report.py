"""The experiment's report: its answer, every sentence computed from its table; figures; CSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np

from lr_jax.report import Curve, format_ci, format_lr, markdown_table, plot_panels, write_report
from lr_jax.transfer.rows import ArmRow


def _lr_range(row: ArmRow) -> str:
  lo, hi = row.not_worse_range
  if not math.isfinite(lo):
    return "none"
  return format_lr(lo) if lo == hi else f"{format_lr(lo)} to {format_lr(hi)}"


def _best(row: ArmRow) -> str:
  if row.best < 0:
    return "no learning rate without a diverged run"
  return (f"lr {format_lr(row.best_lr)} at {format_ci(row.means[row.best], row.cis[row.best])}"
          f" (P(best) {row.p_best[row.best]:.2f})")


def _reference(row: ArmRow, reference_lr: float) -> str:
  i = row.ref
  if row.best < 0:
    return ""
  verdict = ("the best itself" if i == row.best else
             "not significantly worse than the best" if row.not_worse[i] else
             "significantly worse than the best within the budget")
  still = (f", with {row.unfinished[i]} of {row.runs} runs still improving when the steps ran "
           "out (under-trained: more steps might close the gap)" if row.unfinished[i] else "")
  return (f"lr {format_lr(reference_lr)} scores {format_ci(row.means[i], row.cis[i])}: "
          f"{verdict}{still}")


def answer(rows: Sequence[ArmRow], reference_lr: float) -> str:
  """The short answer: per size and arm, whether a small learning rate was needed, and how the
  best learning rate of fine-tuning compares with training from scratch."""
  lines = []
  needed = [r for r in rows if r.small_needed]
  arms = list(dict.fromkeys(r.arm for r in rows))
  sizes = sorted({r.size for r in rows})
  under = [r for r in rows if r.unfinished[r.ref] and not r.not_worse[r.ref]]
  lines.append(
      f"**Is a learning rate of {format_lr(reference_lr)} or smaller necessary?** In "
      f"{len(needed)} of {len(rows)} (size, arm) sweeps every larger learning rate was "
      f"significantly worse than the best" + (
          ": " + "; ".join(f"{r.arm} at {r.size} images" for r in needed) + "." if needed else
          ". A small learning rate was never needed; where it is not significantly worse, it "
          "is one of several that do as well, not the only one.")
      + (f" Where {format_lr(reference_lr)} is worse, that is within this budget: in "
         f"{len(under)} of those sweeps its runs were still improving at the last step, so "
         "the table does not show it worse given more training." if under else ""))
  for size in sizes:
    at = {r.arm: r for r in rows if r.size == size}
    parts = [f"{arm}: best {_best(at[arm])}; {_reference(at[arm], reference_lr)}"
             for arm in arms if arm in at]
    lines.append(f"- **{size} training images** ({at[arms[0]].val_rows} validation images, "
                 f"{at[arms[0]].runs} runs per learning rate): " + ". ".join(parts) + ".")
  lines.append(_versus_scratch(rows))
  shifts = []
  for size in sizes:
    at = {r.arm: r for r in rows if r.size == size}
    if "scratch" in at and "full fine-tuning" in at and min(at["scratch"].best,
                                                            at["full fine-tuning"].best) >= 0:
      shifts.append(math.log10(at["full fine-tuning"].best_lr / at["scratch"].best_lr))
  if shifts:
    lines.append(
        f"**Fine-tuning vs from scratch:** full fine-tuning's best learning rate is "
        f"{_decades(np.median(shifts))} from-scratch's (median over {len(shifts)} sizes; "
        f"per size: {', '.join(f'{s:+.1f}' for s in shifts)} decades). A best learning rate is "
        "one point of a not-worse range: the table gives each range.")
  return "\n\n".join(lines)


def _difference(mean: float, ci: float) -> str:
  if not math.isfinite(mean):
    return "n/a"
  verdict = ("" if not math.isfinite(ci) else " (better)" if mean - ci > 0 else
             " (worse)" if mean + ci < 0 else " (not distinguishable)")
  return f"{mean:+.3f} ± {ci:.3f}{verdict}" if math.isfinite(ci) else f"{mean:+.3f}"


def _versus_scratch(rows: Sequence[ArmRow]) -> str:
  """Each pretrained arm's best accuracy against from scratch's best, at each size."""
  pretrained = [r for r in rows if r.scale is not None and math.isfinite(r.vs_scratch[0])]
  if not pretrained:
    return "**Does pretraining help?** No pretrained arm could be compared with from scratch."
  better = [r for r in pretrained if r.vs_scratch[0] - r.vs_scratch[1] > 0]
  worse = [r for r in pretrained if r.vs_scratch[0] + r.vs_scratch[1] < 0]
  per = "; ".join(f"{r.arm} at {r.size} images {_difference(*r.vs_scratch)}" for r in pretrained)
  return (f"**Does pretraining help?** Each pretrained arm's best against from scratch's best "
          f"(accuracy, paired by seed and validation image, 95% interval): better in "
          f"{len(better)}, worse in {len(worse)}, not distinguishable in "
          f"{len(pretrained) - len(better) - len(worse)} of {len(pretrained)}: {per}.")


def _decades(shift: float) -> str:
  if abs(shift) < 0.25:
    return "the same as"
  return f"{abs(shift):.1f} decades {'above' if shift > 0 else 'below'}"


def table_markdown(rows: Sequence[ArmRow], reference_lr: float) -> str:
  headers = ["training images", "arm", "best lr", "accuracy at best (95% CI)", "P(best)",
             "not-worse lrs", f"accuracy at {format_lr(reference_lr)}", "small lr needed",
             "still improving at best", f"still improving at {format_lr(reference_lr)}",
             "best vs scratch's best"]
  body = []
  for r in rows:
    body.append([
        r.size, r.arm, format_lr(r.best_lr),
        format_ci(r.means[r.best], r.cis[r.best]) if r.best >= 0 else "n/a",
        f"{r.p_best[r.best]:.2f}" if r.best >= 0 else "n/a", _lr_range(r),
        format_ci(r.means[r.ref], r.cis[r.ref]) + ("" if r.not_worse[r.ref] else " (worse)"),
        "yes" if r.small_needed else "no",
        f"{r.unfinished[r.best] if r.best >= 0 else 0}/{r.runs}",
        f"{r.unfinished[r.ref]}/{r.runs}",
        "" if r.scale is None else _difference(*r.vs_scratch)])
  return markdown_table(headers, body)


def plot_arms(path: str, rows: Sequence[ArmRow], reference_lr: float) -> str:
  """Validation accuracy against the learning rate, one panel per size, one curve per arm."""
  panels: dict[str, list[Curve]] = {}
  for r in rows:
    lrs, means, cis = (np.asarray(v, float) for v in (r.lrs, r.means, r.cis))
    panels.setdefault(f"{r.size} training images", []).append(
        Curve(r.arm, lrs, means, means - cis, means + cis))
  return plot_panels(path, panels, xlabel="peak learning rate", ylabel="validation accuracy",
                     logx=True, palette="categorical",
                     vline=(reference_lr, f"article's {format_lr(reference_lr)}"))


def write_csv(path: str, rows: Sequence[ArmRow]) -> str:
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["train_size", "arm", "backbone_lr_scale", "learning_rate", "mean_val_accuracy",
                "ci95", "runs", "val_rows", "p_best", "not_worse", "diverged", "still_improving",
                "best"])
    for r in rows:
      for i, lr in enumerate(r.lrs):
        w.writerow([r.size, r.arm, "" if r.scale is None else r.scale, f"{lr:.6g}",
                    f"{r.means[i]:.6f}", f"{r.cis[i]:.6f}", r.runs, r.val_rows,
                    f"{r.p_best[i]:.4f}", int(r.not_worse[i]), r.diverged[i], r.unfinished[i],
                    int(i == r.best)])
  return path


def write_fine_tune_report(result, out_dir: str, extra: Sequence[tuple[str, str]] = ()) -> str:
  """report.md, arms.png and table.csv of a `FineTuneResult` into `out_dir`."""
  cfg = result.config
  plot_arms(os.path.join(out_dir, "arms.png"), result.rows, cfg.reference_lr)
  write_csv(os.path.join(out_dir, "table.csv"), result.rows)
  setup = (
      f"A CNN (3x3 convolutions of widths {', '.join(map(str, cfg.widths))}, each followed by "
      f"2x2 average pooling, one dense head) is pretrained with Adam on every image of digits "
      f"{', '.join(map(str, cfg.source_classes))} (the best of lr "
      f"{', '.join(format_lr(x) for x in cfg.source_lrs)} on a 20% holdout: lr "
      f"{format_lr(result.source_lr)}, validation accuracy {result.source_accuracy:.3f} on "
      f"{result.source_val_rows} images). The target task is digits "
      f"{', '.join(map(str, cfg.target_classes))}, which the source never saw: "
      f"{cfg.val_size} of their images are set apart for validation, and each size trains on "
      f"a stratified draw of the rest. Arms: from scratch (a fresh CNN), linear probe "
      f"(pretrained, backbone frozen: its learning rate x 0), discriminative (backbone at "
      f"{cfg.discriminative_scale:g} x the head's rate), full fine-tuning (x 1); the head is "
      f"new in every pretrained arm, initialized by the seed. Each arm is a full sweep of "
      f"{len(cfg.learning_rates)} learning rates x {cfg.seeds} seeds, Adam, {cfg.steps} steps "
      f"at every size with early stopping on the validation loss, scored by cross-fitted "
      f"validation accuracy; the three pretrained arms are one compiled program (the scale is "
      f"a traced number). Intervals and tests cover the seeds and the validation images; the "
      f"draw of the training images is one (data_seed {cfg.data_seed}), which they do not "
      f"cover.")
  sections = [("Answer", answer(result.rows, cfg.reference_lr)), ("Setup", setup),
              ("Figure", f"![accuracy by learning rate](arms.png)"),
              ("Table", table_markdown(result.rows, cfg.reference_lr)
               + "\n\n`table.csv` holds every learning rate of every arm."),
              *extra]
  return write_report(out_dir, "Fine-tuning on very small data: is a small learning rate "
                      "necessary?", sections)
