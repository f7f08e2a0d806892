"""The small-data study: many compile groups, one table, a conclusion computed from it.

    plan = plan_study(StudyConfig(train_sizes=(25, 100, None), optimizers=("sgd", "adam")))
    study = run_study(plan)       # one compile group per (optimizer, width, size, budget)
    write_study_report(study, "runs/study")
    print(conclusion(study.rows).text())    # every claim computed from the table

Every cell runs under three budgets (`BUDGETS`): the same epochs at every size, the same
optimizer steps at every size, and to convergence (early stopping, a generous step cap), so
the answer can be told apart from the budget; a cell's budgets differ only in traced
numbers (`train.Budget`), so they are one compiled program. Beside the learning rate, one
line (Adam at the largest width, run as AdamW) tunes dropout and weight decay, and the small
sizes sweep label noise — both traced axes of the same compile groups, so they add runs,
not programs; at the smallest sizes a held-out test set scores the winner beside its
validation score.

`run_groups` runs planned compile groups and logs "cell i/n, elapsed, ETA" across them (the
article's examples, `lr_jax.article`, use it too). The schedule axis of the study costs no
compilation: every cell uses the `exponential` schedule and sweeps its decay rate as a dynamic
hyperparameter, where rate 1.0 *is* the constant schedule. Everything that turns numbers into
sentences (`cell_row`, `conclusion`) is a pure function of plain arrays, tested on synthetic
tables.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from absl import logging

from lr_jax import report
from lr_jax.config import (DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig,
                           check_choice, check_learning_rates, check_positive, log_spaced)
from lr_jax.errors import ConfigError

if TYPE_CHECKING:  # The engine imports JAX: only the functions that run anything import it.
  from lr_jax.engine import Grid, Group, RunOptions
  from lr_jax.results import SweepResult

# ----------------------------------------------------------------------- progress across groups


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0.0, seconds)
  return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def group_work(group: Group) -> float:
  """Training work of a planned compile group in example-weights, for the ETA.

  Variants x examples x epochs, times the multiply-adds of one example through the model (an
  MLP's weights; 1 for other models). Validation is counted at a third of an example's
  training cost (a forward pass only).
  """
  splits, exp = group.splits, group.experiment
  per_epoch = splits.train_idx.shape[1] + splits.val_idx.shape[1] / 3
  variants = len(group.seeds) * len(group.points["learning_rate"])
  weights = 1
  if group.model is None and exp.model.name == "mlp":
    widths = [group.dataset.x.shape[1], *exp.model.hidden, max(group.dataset.num_classes, 1)]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  return float(variants * per_epoch * exp.train.epochs * weights)


def estimate_remaining(done: Sequence[Mapping[str, float]],
                       remaining_work: Sequence[float]) -> float:
  """Seconds left for groups still to run, from the timings of the groups already run.

  A group costs a fixed overhead (tracing and XLA compilation) plus a time proportional to
  its work; both are fitted on the finished groups. The engine's `compile_s` is the group's
  compile time alone (JAX's compile events), `run_s` the whole group, compilation included.

  Args:
    done: one dict per finished group: `work` (`group_work`), `executed_fraction` (epochs run
      before the early exit, as a share), `compile_s`, `run_s`.
    remaining_work: `group_work` of each group still to run.

  Returns:
    The estimate in seconds; NaN before any group has finished.
  """
  if not done:
    return math.nan
  rate = (sum(max(d["run_s"] - d["compile_s"], 0.0) for d in done)
          / sum(d["work"] * d["executed_fraction"] for d in done))
  overhead = float(np.mean([d["compile_s"] for d in done]))
  executed = float(np.mean([d["executed_fraction"] for d in done]))
  return float(sum(overhead + rate * w * executed for w in remaining_work))


def describe_group(group: Group) -> str:
  """A short name of a compile group for logs, e.g. 'adam MLP(16) n=25'."""
  exp = group.experiment
  n = exp.data.train_size or int(group.splits.train_sizes.max())
  widths = ",".join(map(str, exp.model.hidden))
  return f"{exp.optim.name} {exp.model.name.upper()}({widths}) n={n}"


def run_groups(groups: Sequence[Group], *, options: RunOptions | None = None,
               call_epochs: Sequence[int] | None = None) -> tuple[list[dict], float]:
  """Runs planned compile groups one after another, logging the overall progress.

  After each group it logs "cell i/n ... elapsed, ETA" over all groups (the engine logs the
  epochs inside a group).

  Args:
    groups: from `engine.plan_sweep`.
    options: the engine's `RunOptions` (chunking, progress); default its defaults.
    call_epochs: per group, its `chunk_epochs` in place of the options' (None: theirs).

  Returns:
    The engine's output per group, and the wall time in seconds.
  """
  from lr_jax import engine
  options = options or engine.RunOptions()
  t0 = time.perf_counter()
  works = [group_work(g) for g in groups]
  done: list[dict] = []
  outputs = []
  for i, group in enumerate(groups):
    logging.info("cell %d/%d: %s, %d streams x %d points", i + 1, len(groups),
                 describe_group(group), len(group.seeds), len(group.points["learning_rate"]))
    mine = options if call_epochs is None else dataclasses.replace(
        options, chunk_epochs=call_epochs[i])
    out = engine.run_group(group, index=i, options=mine)
    outputs.append(out)
    epochs = group.experiment.train.epochs
    done.append({"work": works[i], "executed_fraction": out.epochs_executed / epochs,
                 "compile_s": out.compile_s, "run_s": out.run_s})
    elapsed = time.perf_counter() - t0
    eta = estimate_remaining(done, works[i + 1:])
    logging.info("cell %d/%d done in %s (compile %s), elapsed %s, ETA %s", i + 1, len(groups),
                 format_duration(out.run_s), format_duration(out.compile_s), format_duration(elapsed),
                 format_duration(eta))
  return outputs, time.perf_counter() - t0


# ------------------------------------------------------------------------- one cell's numbers


BUDGETS = {
    "epochs": "fixed epochs",
    "steps": "fixed steps",
    "converge": "to convergence",
}
"""The study's training budgets, by name (see `StudyConfig`): the same epochs at every size;
the same optimizer steps at every size (early stopping off); and a generous step budget with
early stopping on the validation loss."""


@dataclasses.dataclass(frozen=True)
class CellRow:
  """One cell of the study: an LR sweep of one (budget, optimizer, width, schedule, size).

  Attributes:
    optimizer: optimizer family.
    width: hidden width of the one-layer MLP.
    schedule: "constant" or "exponential".
    train_size: training examples (before the k-fold split).
    runs: runs per learning rate (seeds x folds).
    steps: optimizer steps of a run that trains to the end of its budget.
    lrs: [P] learning rates, increasing.
    mean: [P] mean best validation accuracy over the runs.
    ci95: [P] 95% confidence half-width of `mean`.
    diverged: [P] runs that diverged.
    best_lr: the best learning rate (highest mean, among points where no run diverged).
    best_mean: its mean accuracy.
    best_ci: its 95% half-width.
    ref_mean: mean accuracy at the reference learning rate (NaN if not in the grid).
    ref_ci: its 95% half-width.
    near_lo: smallest learning rate whose mean is within `tolerance` of the best.
    near_hi: largest such learning rate.
    num_near: how many grid points are within `tolerance` of the best.
    budget: the training budget, a key of `BUDGETS`.
    p_best: [P] share of paired bootstrap resamples in which the point is the best (NaN where
      unknown: fewer than 2 streams).
    not_worse: [P] not significantly worse than the best (`lr_jax.stats.not_worse`); True at
      the best.
    unfinished: [P] runs that neither stopped early nor diverged: still training when the
      budget ran out.
    regularisation: "" for the cell without regularisation (dropout and weight decay off);
      "tuned" for the same cell's runs with them tuned (`StudyConfig.regularisation`): each
      learning rate's entries are its best (dropout, weight decay) point's, P(best) sums over
      its points, and it is not worse when any of its points is not.
    label_noise: the fraction of training labels replaced by a random other class.
    best_setting: the hyperparameters of the best point besides the learning rate and the
      schedule, e.g. `(("dropout_rate", 0.2), ("weight_decay", 0.01))`; empty when none.
    plain_worse: tuned rows only: the best point without regularisation is significantly
      worse than the best point with it (paired by stream); None elsewhere or when unknown.
    test_mean: the best point's runs (trained on their folds) scored on the held-out test
      set, mean accuracy over the runs (NaN without a test set, `StudyConfig.test_up_to`).
    test_ci: its 95% half-width over the runs.
    test_n: examples in the test set (0 without one).
  """

  optimizer: str
  width: int
  schedule: str
  train_size: int
  runs: int
  steps: int
  lrs: tuple[float, ...]
  mean: tuple[float, ...]
  ci95: tuple[float, ...]
  diverged: tuple[int, ...]
  best_lr: float
  best_mean: float
  best_ci: float
  ref_mean: float
  ref_ci: float
  near_lo: float
  near_hi: float
  num_near: int
  budget: str = "epochs"
  p_best: tuple[float, ...] = ()
  not_worse: tuple[bool, ...] = ()
  unfinished: tuple[int, ...] = ()
  regularisation: str = ""
  label_noise: float = 0.0
  best_setting: tuple[tuple[str, float], ...] = ()
  plain_worse: bool | None = None
  test_mean: float = math.nan
  test_ci: float = math.nan
  test_n: int = 0

  @property
  def main(self) -> bool:
    """A cell of the article's question: clean labels, regularisation off."""
    return not self.regularisation and self.label_noise == 0

  @property
  def line(self) -> tuple[str, int, str]:
    """The (optimizer, width, schedule) this cell belongs to, across training sizes."""
    return (self.optimizer, self.width, self.schedule)

  @property
  def best_at_edge(self) -> bool:
    return math.isfinite(self.best_lr) and (
        math.isclose(self.best_lr, self.lrs[0]) or math.isclose(self.best_lr, self.lrs[-1]))

  @property
  def not_worse_lrs(self) -> tuple[float, ...]:
    """The learning rates not significantly worse than the best (the best included)."""
    return tuple(lr for lr, keep in zip(self.lrs, self.not_worse) if keep)

  @property
  def best_p(self) -> float:
    """P(best) of the best learning rate (NaN when unknown or there is no best)."""
    i = index_of(self.lrs, self.best_lr) if math.isfinite(self.best_lr) else None
    return self.p_best[i] if i is not None and i < len(self.p_best) else math.nan


def index_of(lrs: Sequence[float], lr: float) -> int | None:
  for i, x in enumerate(lrs):
    if math.isclose(x, lr, rel_tol=1e-6):
      return i
  return None


def cell_row(*, optimizer: str, width: int, schedule: str, train_size: int, runs: int, steps: int,
             lrs: Sequence[float], mean: Sequence[float], ci95: Sequence[float],
             diverged: Sequence[int], reference_lr: float, tolerance: float,
             budget: str = "epochs", p_best: Sequence[float] | None = None,
             not_worse: Sequence[bool] | None = None,
             unfinished: Sequence[int] | None = None, regularisation: str = "",
             label_noise: float = 0.0, best_setting: Sequence[tuple[str, float]] = (),
             plain_worse: bool | None = None) -> CellRow:
  """Summarizes one cell's LR sweep: best LR, accuracy at the reference LR, near-best range.

  The best point follows `lr_jax.results.best_points`: a learning rate where any run diverged
  is not eligible; when no point is, there is no best.

  Args:
    optimizer, width, schedule, train_size, runs, steps, budget: the cell (see `CellRow`).
    lrs: [P] learning rates.
    mean: [P] mean best validation accuracy.
    ci95: [P] 95% half-widths.
    diverged: [P] diverged runs.
    reference_lr: the learning rate to report separately (the article's 1e-4).
    tolerance: accuracy difference that counts as "within one point" (0.01).
    p_best: [P] P(best) from the aggregates; default NaN (unknown).
    not_worse: [P] not significantly worse than the best, from the aggregates; default the
      best alone. Whatever is given, the best point is in the set and ineligible points not.
    unfinished: [P] runs still training at the end of the budget; default 0.
    regularisation, label_noise, best_setting, plain_worse: see `CellRow`.

  Returns:
    The `CellRow`, points sorted by learning rate.
  """
  num = len(lrs)
  order = np.argsort(np.asarray(lrs, float))
  lrs_P = np.asarray(lrs, float)[order]
  mean_P = np.asarray(mean, float)[order]
  ci_P = np.asarray(ci95, float)[order]
  div_P = np.asarray(diverged, int)[order]
  p_P = np.asarray(p_best if p_best is not None else [math.nan] * num, float)[order]
  keep_P = np.asarray([bool(k) for k in not_worse] if not_worse is not None else [False] * num,
                      bool)[order]
  left_P = np.asarray(unfinished if unfinished is not None else [0] * num, int)[order]
  finite = np.isfinite(mean_P)
  eligible = finite & (div_P == 0)
  if eligible.any():
    best = int(np.flatnonzero(eligible)[np.argmax(mean_P[eligible])])
    near = eligible & (mean_P >= mean_P[best] - tolerance)
    best_lr, best_mean, best_ci = float(lrs_P[best]), float(mean_P[best]), float(ci_P[best])
    near_lo, near_hi = float(lrs_P[near].min()), float(lrs_P[near].max())
    num_near = int(near.sum())
    keep_P = keep_P & eligible
    keep_P[best] = True
  else:
    best_lr = best_mean = best_ci = near_lo = near_hi = math.nan
    num_near = 0
    keep_P = np.zeros(num, bool)
  ref = index_of(lrs_P, reference_lr)
  return CellRow(
      optimizer=optimizer, width=int(width), schedule=schedule, train_size=int(train_size),
      runs=int(runs), steps=int(steps), lrs=tuple(map(float, lrs_P)),
      mean=tuple(map(float, mean_P)), ci95=tuple(map(float, ci_P)),
      diverged=tuple(map(int, div_P)), best_lr=best_lr, best_mean=best_mean, best_ci=best_ci,
      ref_mean=float(mean_P[ref]) if ref is not None else math.nan,
      ref_ci=float(ci_P[ref]) if ref is not None else math.nan,
      near_lo=near_lo, near_hi=near_hi, num_near=num_near, budget=budget,
      p_best=tuple(map(float, p_P)), not_worse=tuple(map(bool, keep_P)),
      unfinished=tuple(map(int, left_P)), regularisation=regularisation,
      label_noise=float(label_noise),
      best_setting=tuple((k, float(v)) for k, v in best_setting), plain_worse=plain_worse)


# ------------------------------------------------------------------- conclusions from a table


def format_ratio(ratio: float) -> str:
  """A factor between two learning rates: '10x larger', '3.2x smaller', 'unchanged'."""
  if not math.isfinite(ratio) or ratio <= 0:
    return "n/a"
  if math.isclose(ratio, 1.0, rel_tol=1e-3):
    return "unchanged"
  r, word = (ratio, "larger") if ratio > 1 else (1 / ratio, "smaller")
  return f"{r:.0f}x {word}" if r >= 10 else f"{r:.2g}x {word}"


def _model(width: int) -> str:
  return f"MLP({width})"


def _count(pred: Sequence[bool]) -> int:
  return int(sum(bool(p) for p in pred))


def _median(values: Sequence[float]) -> float:
  values = [v for v in values if math.isfinite(v)]
  return float(np.median(values)) if values else math.nan


def _decades(x: float) -> str:
  if not math.isfinite(x):
    return "n/a"
  text = f"{x:.2g}"  # log10 of grid ratios: 0.99999999 is one decade.
  return f"{text} decade" + ("" if text == "1" else "s")


def _lines(rows: Sequence[CellRow]) -> dict[tuple, dict[int, CellRow]]:
  lines: dict[tuple, dict[int, CellRow]] = {}
  for r in rows:
    lines.setdefault(r.line, {})[r.train_size] = r
  return lines


def small_lr_ok(row: CellRow, reference_lr: float) -> bool:
  """A learning rate <= `reference_lr` is within the noise of the best (in the not-worse set)."""
  return any(lr <= reference_lr * (1 + 1e-6) for lr in row.not_worse_lrs)


def small_lr_needed(row: CellRow, reference_lr: float) -> bool:
  """Every learning rate not significantly worse than the best is <= `reference_lr`."""
  kept = row.not_worse_lrs
  return bool(kept) and all(lr <= reference_lr * (1 + 1e-6) for lr in kept)


def by_budget(rows: Sequence[CellRow]) -> dict[str, list[CellRow]]:
  """The table's rows per budget, in `BUDGETS` order (then any other name), finite ones only."""
  out: dict[str, list[CellRow]] = {}
  for name in [*BUDGETS, *sorted({r.budget for r in rows} - set(BUDGETS))]:
    chosen = [r for r in rows if r.budget == name and math.isfinite(r.best_lr)]
    if chosen:
      out[name] = chosen
  return out


def _label(budget: str) -> str:
  return BUDGETS.get(budget, budget)


def _under(budget: str) -> str:
  """The budget as an adverbial: 'under fixed epochs', 'trained to convergence'."""
  return "trained to convergence" if budget == "converge" else f"under {_label(budget)}"


def _sizes(rows: Sequence[CellRow]) -> tuple[int, int]:
  sizes = sorted({r.train_size for r in rows})
  return sizes[0], sizes[-1]


def _cells_at(rows: Sequence[CellRow], n: int, pred) -> str:
  at = [r for r in rows if r.train_size == n]
  return f"{_count(pred(r) for r in at)} of {len(at)} at n={n}"


def _short_answer(tables: Mapping[str, list[CellRow]], ref_lr: float) -> list[str]:
  """Two or three sentences: the article's question answered per budget."""
  ref = report.format_lr(ref_lr)
  parts = lambda pred: ", ".join(
      f"{_count(pred(r, ref_lr) for r in t)} of {len(t)} cells {_under(b)}"
      for b, t in tables.items())
  answer = [f"A learning rate of {ref} or smaller was necessary (every learning rate not "
            f"significantly worse than the best was that small) in {parts(small_lr_needed)}.",
            f"It was at least as good as the best within the noise in {parts(small_lr_ok)}."]
  shares = {b: _count(small_lr_ok(r, ref_lr) for r in t) / len(t) for b, t in tables.items()}
  if len(tables) > 1:
    most = max(shares, key=shares.get)
    if max(shares.values()) - min(shares.values()) < 1e-9:
      answer.append("The budget does not change this answer.")
    else:
      answer.append(f"The budget changes the answer: a small learning rate is within the "
                    f"noise of the best most often {_under(most)} ({shares[most]:.0%} of cells).")
  return answer


def _reference_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """In how many cells a learning rate <= the reference is within the noise of the best."""
  small, large = _sizes(rows)
  ok = lambda r: small_lr_ok(r, ref_lr)
  text = (f"{_label(budget).capitalize()}: a learning rate <= {report.format_lr(ref_lr)} is "
          f"not significantly worse than the best in {_count(ok(r) for r in rows)} of "
          f"{len(rows)} cells")
  if small != large:
    text += f" ({_cells_at(rows, small, ok)}, {_cells_at(rows, large, ok)})"
  return text + "."


def direction(a: CellRow, b: CellRow) -> str:
  """Whether `a`'s best learning rate is "larger" or "smaller" than `b`'s, or "undecided".

  Undecided where the two not-worse sets overlap: the data cannot tell the two apart (the
  same best learning rate is undecided too, not "the same").
  """
  if any(index_of(b.not_worse_lrs, lr) is not None for lr in a.not_worse_lrs):
    return "undecided"
  return "larger" if a.best_lr > b.best_lr else "smaller"


def _directions(ways: Sequence[str]) -> str:
  """'larger in 2 of 8 cells and smaller in 1; in the other 5 the not-worse sets overlap, so
  the data cannot decide', from `direction`'s answers."""
  return (f"larger in {ways.count('larger')} of {len(ways)} cells and smaller in "
          f"{ways.count('smaller')}; in the other {ways.count('undecided')} the not-worse sets "
          "overlap, so the data cannot decide")


def _move_finding(budget: str, rows: Sequence[CellRow]) -> str | None:
  """How the best learning rate moves from the smallest to the largest size, line by line.

  A move counts only where the two cells' not-worse sets do not overlap; otherwise the data
  cannot decide its direction.
  """
  small, large = _sizes(rows)
  if small == large:
    return None
  larger = smaller = undecided = 0
  for by_size in _lines(rows).values():
    if small not in by_size or large not in by_size:
      continue
    way = direction(by_size[small], by_size[large])
    larger += way == "larger"
    smaller += way == "smaller"
    undecided += way == "undecided"
  total = larger + smaller + undecided
  if not total:
    return None
  return (f"{_label(budget).capitalize()}: at n={small} the best learning rate is larger than "
          f"at n={large} in {larger} of {total} (optimizer, width, schedule) lines and smaller "
          f"in {smaller}; in the other {undecided} the not-worse sets overlap, so the data "
          "cannot decide the direction.")


def _factor_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str | None:
  """Whether the reference's standing changes with the optimizer, the width, the schedule."""
  clauses = []
  for name, key, show in (("optimizer", lambda r: r.optimizer, str),
                          ("width", lambda r: r.width, _model),
                          ("schedule", lambda r: r.schedule, str)):
    values = list(dict.fromkeys(key(r) for r in rows))
    if len(values) < 2:
      continue
    counts = [(v, [small_lr_ok(r, ref_lr) for r in rows if key(r) == v]) for v in values]
    shares = {_count(c) / len(c) for _, c in counts}
    verb = "does not change" if len(shares) == 1 else "changes"
    clauses.append(f"{verb} with the {name} (" + ", ".join(
        f"{show(v)} {_count(c)} of {len(c)}" for v, c in counts) + ")")
  if not clauses:
    return None
  return (f"{_label(budget).capitalize()}: the number of cells where a learning rate <= "
          f"{report.format_lr(ref_lr)} is within the noise of the best " + "; ".join(clauses)
          + ".")


def _uncertainty_finding(budget: str, rows: Sequence[CellRow]) -> str:
  """How sharply each cell's selection is decided: P(best), the not-worse set, the grid's edge."""
  spans = [math.log10(max(r.not_worse_lrs) / min(r.not_worse_lrs)) for r in rows]
  return (f"{_label(budget).capitalize()}: the best learning rate has a median P(best) of "
          f"{_median([r.best_p for r in rows]):.2f}, and a median of "
          f"{_median([len(r.not_worse_lrs) for r in rows]):.0f} learning rates spanning "
          f"{_decades(_median(spans))} are not significantly worse than it, with "
          f"{_median([r.runs for r in rows]):.0f} runs per point; the best lies at the edge of "
          f"the grid in {_count(r.best_at_edge for r in rows)} of {len(rows)} cells.")


def _steps_finding(budget: str, rows: Sequence[CellRow]) -> str | None:
  """The optimizer steps a run had at the smallest and the largest size."""
  small, large = _sizes(rows)
  steps = lambda n: max(r.steps for r in rows if r.train_size == n)
  if small == large:
    return None
  return (f"{_label(budget).capitalize()}: a run had at most {steps(small)} optimizer steps at "
          f"n={small} and {steps(large)} at n={large}.")


def _convergence_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """How many runs were still improving when the budget ran out: was convergence reached?"""
  left = sum(sum(r.unfinished) for r in rows)
  total = sum(r.runs * len(r.lrs) for r in rows)
  small = sum(u for r in rows for lr, u in zip(r.lrs, r.unfinished)
              if lr <= ref_lr * (1 + 1e-6))
  cells = _count(sum(r.unfinished) > 0 for r in rows)
  verdict = ("so every run converged (stopped early or diverged)" if left == 0 else
             "so convergence was not reached everywhere")
  return (f"{_label(budget).capitalize()}: {left} of {total} runs were still improving when "
          f"the budget of at most {max(r.steps for r in rows)} steps ran out, in {cells} of "
          f"{len(rows)} cells ({small} of them at a learning rate <= "
          f"{report.format_lr(ref_lr)}), {verdict}.")


def _setting_text(setting: Sequence[tuple[str, float]]) -> str:
  return ", ".join(f"{k} {v:g}" for k, v in setting) or "none"


def _shift_text(decades: float) -> str:
  """A move of the best learning rate in decades: '0.5 decades smaller', 'none'."""
  if not math.isfinite(decades):
    return "n/a"
  if abs(decades) < 1e-9:
    return "none"
  return f"{_decades(abs(decades))} {'larger' if decades > 0 else 'smaller'}"


def _points(x: float) -> str:
  return f"{100 * x:+.1f}"


def _regularisation_findings(budget: str, rows: Sequence[CellRow], ref_lr: float) -> list[str]:
  """With tuned dropout and weight decay against without, per size (clean labels): the best
  learning rate's move, the accuracy it buys, and the small learning rates' standing."""
  plain = {(r.line, r.train_size): r for r in rows
           if not r.regularisation and r.label_noise == 0 and math.isfinite(r.best_lr)}
  pairs = sorted(((plain[(t.line, t.train_size)], t) for t in rows
                  if t.regularisation == "tuned" and t.label_noise == 0
                  and math.isfinite(t.best_lr) and (t.line, t.train_size) in plain),
                 key=lambda pair: (pair[1].train_size, pair[1].schedule))
  if not pairs:
    return []
  label = _label(budget).capitalize()
  small = pairs[0][1].train_size
  first = pairs[0][1]
  ways = [direction(t, p) for p, t in pairs]
  at_small = "; ".join(
      f"{t.schedule}: {report.format_lr(p.best_lr)} without, {report.format_lr(t.best_lr)} "
      f"with ({_setting_text(t.best_setting)})" for p, t in pairs if t.train_size == small)
  gains = [t.best_mean - p.best_mean for p, t in pairs]
  known = [t.plain_worse for _, t in pairs if t.plain_worse is not None]
  scores = "; ".join(
      f"{t.schedule}: {report.format_ci(p.best_mean, p.best_ci)} without, "
      f"{report.format_ci(t.best_mean, t.best_ci)} with" for p, t in pairs
      if t.train_size == small)
  ok = lambda r: small_lr_ok(r, ref_lr)
  return [
      f"{label}, regularisation ({first.optimizer} {_model(first.width)}, dropout and weight "
      f"decay tuned): against no regularisation the best learning rate with it tuned is "
      f"{_directions(ways)} (at "
      f"n={small}: {at_small}).",
      f"{label}: tuning the regularisation changed the best validation accuracy by a median "
      f"of {_points(_median(gains))} points (from {_points(min(gains))} to "
      f"{_points(max(gains))}; the tuned score is the best of more points, so a little "
      f"optimistic), and the best point without it is significantly worse than the best with "
      f"it in {_count(known)} of {len(known)} cells (at n={small}: {scores}).",
      f"{label}: a learning rate <= {report.format_lr(ref_lr)} is within the noise of the best "
      f"in {_count(ok(p) for p, _ in pairs)} of {len(pairs)} cells without regularisation and "
      f"{_count(ok(t) for _, t in pairs)} of {len(pairs)} with it tuned.",
  ]


def _noise_findings(budget: str, rows: Sequence[CellRow], ref_lr: float) -> list[str]:
  """With noisy training labels against clean ones (regularisation off): does the best
  learning rate move, by how much, how sure; and the small learning rates' standing."""
  plain = [r for r in rows if not r.regularisation and math.isfinite(r.best_lr)]
  levels = sorted({r.label_noise for r in plain if r.label_noise > 0})
  if not levels:
    return []
  clean = {(r.line, r.train_size): r for r in plain if r.label_noise == 0}
  label = _label(budget).capitalize()
  out, by_level = [], {}
  for v in levels:
    pairs = [(clean[(r.line, r.train_size)], r) for r in plain
             if r.label_noise == v and (r.line, r.train_size) in clean]
    if not pairs:
      continue
    by_level[v] = pairs
    sizes = ", ".join(str(n) for n in sorted({r.train_size for _, r in pairs}))
    ways = [direction(r, c) for c, r in pairs]
    shifts = [math.log10(r.best_lr / c.best_lr) for c, r in pairs]
    out.append(
        f"{label}, label noise {v:g} (n={sizes}): against clean labels the best learning rate "
        f"is {_directions(ways)}; the median move is "
        f"{_shift_text(_median(shifts))} (from {_shift_text(min(shifts))} to "
        f"{_shift_text(max(shifts))}), and the best's median P(best) is "
        f"{_median([r.best_p for _, r in pairs]):.2f}.")
  if not by_level:
    return []
  ok = lambda r: small_lr_ok(r, ref_lr)
  cleans = list(by_level.values())[0]
  counts = [f"{_count(ok(c) for c, _ in cleans)} of {len(cleans)} cells with clean labels"]
  counts += [f"{_count(ok(r) for _, r in pairs)} of {len(pairs)} at noise {v:g}"
             for v, pairs in by_level.items()]
  accuracy = [f"{_median([c.best_mean for c, _ in cleans]):.3f} clean"]
  accuracy += [f"{_median([r.best_mean for _, r in pairs]):.3f} at noise {v:g}"
               for v, pairs in by_level.items()]
  out.append(f"{label}: a learning rate <= {report.format_lr(ref_lr)} is within the noise of "
             f"the best in {', '.join(counts)}; the median best validation accuracy (clean "
             f"validation labels) is {', '.join(accuracy)}.")
  return out


def _test_findings(budget: str, rows: Sequence[CellRow]) -> list[str]:
  """How optimistic the winner's validation score is: against its runs' held-out test score."""
  tested = [r for r in rows if math.isfinite(r.test_mean) and r.label_noise == 0]
  out = []
  label = _label(budget).capitalize()
  for n in sorted({r.train_size for r in tested}):
    mine = [r for r in tested if r.train_size == n and not r.regularisation]
    if not mine:
      continue
    gaps = [r.best_mean - r.test_mean for r in mine]
    below = _count(r.test_mean + np.nan_to_num(r.test_ci) < r.best_mean - np.nan_to_num(r.best_ci)
                   for r in mine)
    verb = "overstates" if _median(gaps) >= 0 else "understates"
    text = (f"{label}: at n={n} the chosen learning rate's best validation accuracy (median "
            f"{_median([r.best_mean for r in mine]):.3f}) {verb} the same runs' accuracy on "
            f"{mine[0].test_n} held-out test examples (median "
            f"{_median([r.test_mean for r in mine]):.3f}) by a median of "
            f"{abs(100 * _median(gaps)):.1f} points (gap from {_points(min(gaps))} to "
            f"{_points(max(gaps))} across {len(mine)} cells; the test interval lies wholly "
            f"below the validation one in {below})")
    tuned = [r.best_mean - r.test_mean for r in tested if r.train_size == n
             and r.regularisation == "tuned"]
    if tuned:
      text += (f"; with the regularisation tuned too (more points to choose from) the median "
               f"gap is {_points(_median(tuned))} points")
    out.append(text + ".")
  return out


class Conclusion(NamedTuple):
  """The study's conclusion: a short answer, then findings, one sentence each."""

  answer: tuple[str, ...]
  findings: tuple[str, ...]

  def markdown(self) -> str:
    """The answer as a paragraph, then the findings as a Markdown list."""
    return " ".join(self.answer) + "\n\n" + "\n".join(f"- {f}" for f in self.findings)

  def text(self) -> str:
    """The same for a terminal: the answer on one line, a finding per line."""
    return " ".join(self.answer) + "\n" + "\n".join(f"- {f}" for f in self.findings)


def conclusion(rows: Sequence[CellRow], *, reference_lr: float = 1e-4) -> Conclusion:
  """The study's conclusion per budget, every number computed from the table.

  "Within the noise of the best" is the cell's not-worse set (`CellRow.not_worse`): the
  learning rates a paired test cannot tell from the best.

  Args:
    rows: the table (`CellRow`s); any subset of budgets, optimizers, widths, schedules, sizes.
    reference_lr: the small learning rate the article recommends.

  Returns:
    The short answer (per budget: was a learning rate <= `reference_lr` necessary, was it good
    enough), from the main cells (`CellRow.main`); then per budget the findings: the
    reference's standing, the best learning rate's move from the smallest to the largest
    size, the optimizer, width and schedule, the selection's uncertainty, the steps a run
    had, (to convergence) the runs still training; then with tuned regularisation and with
    label noise, each against its plain cell (the best learning rate's move, counted only
    where the not-worse sets do not overlap), and the held-out test score of the winner
    against its validation score.
  """
  tables = by_budget([r for r in rows if r.main])
  if not tables:
    return Conclusion(("No cell has a finite result: nothing can be concluded.",), ())
  findings = []
  for budget, table in tables.items():
    findings += [_reference_finding(budget, table, reference_lr),
                 _move_finding(budget, table), _factor_finding(budget, table, reference_lr),
                 _uncertainty_finding(budget, table), _steps_finding(budget, table)]
    if budget == "converge":
      findings.append(_convergence_finding(budget, table, reference_lr))
    mine = [r for r in rows if r.budget == budget]
    findings += (_regularisation_findings(budget, mine, reference_lr)
                 + _noise_findings(budget, mine, reference_lr) + _test_findings(budget, mine))
  return Conclusion(tuple(_short_answer(tables, reference_lr)),
                    tuple(f for f in findings if f))


# ------------------------------------------------------------------------------ the study


SCHEDULES = ("constant", "exponential")  # one compiled program: constant is decay rate 1.0

# The regularisation axes the study tunes and their valid ranges (`lr_jax.hparams`' own).
REGULARISATION = {"dropout_rate": (0.0, 1.0), "weight_decay": (0.0, math.inf)}
# The family a regularised line runs as: weight decay needs an optimizer that declares it.
# Decoupled (AdamW) decay at 0 is Adam's update exactly, so the plain cell is unchanged.
WITH_WEIGHT_DECAY = {"adam": "adamw"}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """The small-data study: axes, the LR grid, and how each cell is trained and validated.

  Attributes:
    dataset: a classification data set (`lr_jax.data.DATASETS` or a file).
    train_sizes: training-set sizes; None = the whole training pool.
    optimizers: optimizer families.
    widths: hidden widths of a one-layer MLP. 16 and the article's 128: 256 would double the
      cost of the study's largest cells on a 2-core CPU for one more width that says little
      new.
    schedules: "constant" and/or "exponential"; both share one compile group (decay rate 1.0
      vs the cell's, a dynamic hyperparameter; see `Cell.decay_rate`).
    learning_rates: the grid; it must contain `reference_lr`. Half decades from 3.2e-5 to 3.2
      hold every optimizer's best on digits inside the grid (SGD's near 0.3-1).
    final_lr_fraction: the exponential schedule's decay is chosen per cell so that the
      learning rate falls to this fraction of its peak at the last step: Keras' fixed 1000
      steps would barely decay in a run of 50 steps (n=25).
    seeds: training seeds per fold (seeds x folds runs per learning rate: the 95% intervals).
    folds: k of the stratified k-fold cross-validation; capped per cell at the smallest class
      count (digits at n=25 has 2 examples of some classes, so 2 folds there).
    budgets: the training budgets each cell runs under (keys of `BUDGETS`).
    epochs: the fixed-epochs budget: maximum epochs, early stopping on.
    steps: the fixed-steps budget: exactly this many optimizer updates per run at every size
      (early stopping off: a run that stopped early would have fewer).
    converge_steps: the to-convergence budget: up to about this many steps (whole epochs),
      early stopping on; the report counts the runs still improving when it ran out.
    batch_size: minibatch size; a training fold smaller than a batch trains full-batch
      (Keras takes one partial batch), see `keras_batch`.
    patience: early-stopping patience on the validation loss.
    reference_lr: the article's small learning rate, reported in every cell.
    tolerance: accuracy within which a learning rate counts as near the best (one point).
    data_seed: seed of the subsample and the folds.
    regularisation: the tuned regularisation, `(name, values)` pairs of traced axes
      (`lr_jax.hparams`), each listing its off value 0: dropout rate and weight decay. They
      are swept on one line, Adam at the largest width, run as AdamW (weight decay needs it;
      AdamW at weight decay 0 is Adam, update for update), in the same compile groups, so
      the cell without regularisation is the subset where both are 0. Empty: none.
    label_noise: fractions of training labels replaced by a random other class (validation
      and test labels stay clean), a traced axis at the sizes up to `noise_up_to`; it must
      list 0 (the clean cell). `(0.0,)`: none.
    noise_up_to: the largest training size given `label_noise`.
    test_fraction: at the sizes up to `test_up_to`, this fraction of the data set is held out
      first as a test set (`DataConfig.test_fraction`), on which the chosen point's runs are
      scored beside their validation score.
    test_up_to: the largest training size given a test set (0: none).
  """

  dataset: str = "digits"
  train_sizes: tuple[int | None, ...] = (25, 50, 100, 200, 400, None)
  optimizers: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
  widths: tuple[int, ...] = (16, 128)
  schedules: tuple[str, ...] = ("constant", "exponential")
  learning_rates: tuple[float, ...] = log_spaced(10**-4.5, 10**0.5, 11)
  final_lr_fraction: float = 0.1
  seeds: int = 2
  folds: int = 3
  budgets: tuple[str, ...] = tuple(BUDGETS)
  epochs: int = 50
  steps: int = 2000
  converge_steps: int = 5000
  batch_size: int = 32
  patience: int = 5
  reference_lr: float = 1e-4
  tolerance: float = 0.01
  data_seed: int = 0
  regularisation: tuple[tuple[str, tuple[float, ...]], ...] = (
      ("dropout_rate", (0.0, 0.2, 0.5)), ("weight_decay", (0.0, 0.01, 0.1)))
  label_noise: tuple[float, ...] = (0.0, 0.2, 0.4)
  noise_up_to: int = 50
  test_fraction: float = 0.2
  test_up_to: int = 50

  def __post_init__(self):
    from lr_jax.optim import OPTIMIZERS
    for name in ("train_sizes", "optimizers", "widths", "schedules", "learning_rates",
                 "budgets"):
      value = tuple(getattr(self, name))
      if not value:
        raise ConfigError(f"{name} is empty; give at least one")
      if len(set(value)) != len(value):
        raise ConfigError(f"{name} has duplicates: {value}")
      object.__setattr__(self, name, value)
    for opt in self.optimizers:
      check_choice("optimizer", opt, OPTIMIZERS)
    for s in self.schedules:
      check_choice("schedule", s, SCHEDULES)
    for b in self.budgets:
      check_choice("budget", b, BUDGETS)
    for w in self.widths:
      check_positive("width", w, integer=True)
    for n in self.train_sizes:
      if n is not None:
        check_positive("train size", n, integer=True)
    lrs = tuple(sorted(check_learning_rates(self.learning_rates)))
    object.__setattr__(self, "learning_rates", lrs)
    if index_of(lrs, self.reference_lr) is None:
      raise ConfigError(
          f"reference_lr {self.reference_lr:g} is not in the learning-rate grid; valid "
          f"choices: {', '.join(f'{x:.3g}' for x in lrs)}")
    if not 0 < self.final_lr_fraction < 1:
      raise ConfigError(f"final_lr_fraction must be in (0, 1), got {self.final_lr_fraction!r}")
    check_positive("seeds", self.seeds, integer=True)
    if not isinstance(self.folds, int) or self.folds < 2:
      raise ConfigError(f"folds must be an integer >= 2, got {self.folds!r}")
    check_positive("epochs", self.epochs, integer=True)
    check_positive("steps", self.steps, integer=True)
    check_positive("converge_steps", self.converge_steps, integer=True)
    check_positive("batch_size", self.batch_size, integer=True)
    check_positive("patience", self.patience, integer=True, allow_zero=True)
    check_positive("tolerance", self.tolerance)
    self._check_axes()
    check_positive("noise_up_to", self.noise_up_to, integer=True, allow_zero=True)
    check_positive("test_up_to", self.test_up_to, integer=True, allow_zero=True)
    if not 0 < self.test_fraction < 1:
      raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")

  def _check_axes(self):
    """The regularisation and label-noise values: distinct, in range, each listing 0."""
    reg = self.regularisation
    reg = tuple((reg.items() if isinstance(reg, Mapping) else reg))
    reg = tuple((str(name), tuple(float(v) for v in values)) for name, values in reg)
    object.__setattr__(self, "regularisation", reg)
    if len({name for name, _ in reg}) != len(reg):
      raise ConfigError(f"regularisation names an axis twice: {[n for n, _ in reg]}")
    for name, values in reg:
      if name not in REGULARISATION:
        check_choice("regularisation axis", name, REGULARISATION)
      low, high = REGULARISATION[name]
      for v in values:
        if not (math.isfinite(v) and low <= v < high):
          raise ConfigError(f"regularisation {name}={v!r} is out of range; valid: [{low:g}, "
                            f"{high:g})")
      if len(set(values)) != len(values) or 0.0 not in values:
        raise ConfigError(f"regularisation {name} values {values} must be distinct and list "
                          "0 (the cell without it)")
    noise = tuple(float(v) for v in self.label_noise)
    object.__setattr__(self, "label_noise", noise)
    for v in noise:
      if not (math.isfinite(v) and 0 <= v < 1):
        raise ConfigError(f"label_noise {v!r} is out of range; valid: [0, 1)")
    if len(set(noise)) != len(noise) or 0.0 not in noise:
      raise ConfigError(f"label_noise values {noise} must be distinct and list 0 (the clean "
                        "cell)")

  @property
  def noisy(self) -> bool:
    return len(self.label_noise) > 1

  @classmethod
  def quick(cls, **changes) -> "StudyConfig":
    """A small version for a first look: Adam only, two sizes, the constant schedule, fewer
    steps and runs, two values of each regularisation axis and of the label noise."""
    base = dict(train_sizes=(25, 400), optimizers=("adam",), widths=(128,),
                schedules=("constant",), learning_rates=log_spaced(1e-5, 1.0, 6), seeds=2,
                folds=2, epochs=20, steps=300, converge_steps=1000,
                regularisation=(("dropout_rate", (0.0, 0.5)), ("weight_decay", (0.0, 0.1))),
                label_noise=(0.0, 0.4), noise_up_to=25, test_up_to=25)
    base.update(changes)
    return cls(**base)


@dataclasses.dataclass(frozen=True)
class Cell:
  """One compile group of the study: the static part of its cells."""

  optimizer: str
  width: int
  train_size: int
  folds: int
  batch_size: int
  steps: int          # optimizer steps of a run that trains to the end of its budget
  # The exponential schedule's decay per step (Keras' ExponentialDecay with decay_steps=1),
  # final_lr_fraction ** (1 / steps): the rate falls to that fraction at the budget's last
  # step. Per step, not per cell's decay_steps, so a cell's budgets share one program.
  decay_rate: float
  budget: str = "epochs"
  epochs: int = 0     # the epochs the budget gives
  regularised: bool = False  # swept over `StudyConfig.regularisation` (run as `family`)
  noisy: bool = False        # swept over `StudyConfig.label_noise`
  tested: bool = False       # has a held-out test set (`StudyConfig.test_fraction`)
  family: str = ""           # the optimizer family run; "" is `optimizer`


@dataclasses.dataclass(frozen=True)
class StudyPlan:
  """A checked study: its cells, their compile groups (from `engine.plan_sweep`), its grid.

  `grid` describes every axis of the study (the union of the cells' grids, for the results'
  config); each group has its own points (`Group.points`).
  """

  config: StudyConfig
  cells: tuple[Cell, ...]
  groups: tuple[Group, ...]
  grid: Grid
  call_epochs: tuple[int, ...] = ()  # per group: epochs per compiled call (`epochs_per_call`)


STEPS_PER_CALL = 200
"""Optimizer steps of one compiled call of the study, about. At n = 25 an epoch is one step,
and the engine's default calls of 10 epochs cost ~10 ms of host time per 10 steps: a
to-convergence cell (5000 one-step epochs, 88 variants, warm, on a loaded 2-core machine) ran
1.3-1.7x faster in calls of ~200 steps (MLP(128) without compaction: 32.4 -> 25.5 s; MLP(16)
with it: 11.0 -> 6.3 s)."""


def epochs_per_call(budget_epochs: Sequence[int], steps_per_epoch: int) -> int:
  """Epochs per compiled call at one size: about `STEPS_PER_CALL` steps, and no more than
  the shortest of the size's budgets, so that its budgets share one call length (the call's
  length is static: one program per length). A result does not depend on it."""
  return max(1, min(min(budget_epochs), math.ceil(STEPS_PER_CALL / steps_per_epoch)))


def _size_plan(dataset, cfg: StudyConfig, n: int | None, test_fraction: float | None = None
               ) -> tuple[int, int, int, int, int]:
  """(train_size, folds, batch_size, steps per epoch, the smallest fold's steps per epoch).

  A fold smaller than the largest may fill one batch fewer: its last batch is all padding,
  which the trainer skips.
  """
  from lr_jax import data as data_lib
  base = DataConfig(dataset=cfg.dataset, train_size=n, data_seed=cfg.data_seed,
                    test_fraction=test_fraction)
  holdout = data_lib.make_splits(dataset, base)  # Refuses sizes the data cannot give.
  train = holdout.train_idx[0][holdout.train_mask[0]]
  n = len(train)
  smallest = int(np.bincount(dataset.y[train], minlength=dataset.num_classes).min())
  folds = min(cfg.folds, smallest)
  if folds < 2:
    raise ConfigError(
        f"train size {n} leaves a class with {smallest} example(s) of {dataset.name!r}; k-fold "
        f"cross-validation needs 2 of each; valid: a train size of at least "
        f"{2 * dataset.num_classes}")
  splits = data_lib.make_splits(dataset, dataclasses.replace(base, train_size=n, folds=folds))
  batch = keras_batch(cfg.batch_size, int(splits.train_sizes.min()), splits.train_idx.shape[1])
  n_max = splits.train_idx.shape[1]
  n_min = int(splits.train_sizes.min())
  return n, folds, batch, math.ceil(n_max / (batch or n_max)), math.ceil(n_min / (batch or n_max))


def budget_plan(cfg: StudyConfig, budget: str, steps_per_epoch: int, fewest_per_epoch: int
                ) -> tuple[int, int, int, int]:
  """(epochs, max_steps, patience, steps of a full run) of a cell under one budget.

  Args:
    cfg: the study.
    budget: a key of `BUDGETS`.
    steps_per_epoch: optimizer steps per epoch of the largest training fold.
    fewest_per_epoch: of the smallest fold (one fewer where its last batch would be empty).

  Returns:
    epochs: epochs to configure; under "steps" enough for the smallest fold to reach
      `cfg.steps`.
    max_steps: the trainer's cap on updates (0: none): "steps" stops every run at exactly
      `cfg.steps`, however the epochs divide it.
    patience: early stopping (0: off).
    steps: the optimizer steps of a run that trains to the end.
  """
  if budget == "epochs":
    return cfg.epochs, 0, cfg.patience, steps_per_epoch * cfg.epochs
  if budget == "steps":
    return math.ceil(cfg.steps / fewest_per_epoch), cfg.steps, 0, cfg.steps
  epochs = math.ceil(cfg.converge_steps / steps_per_epoch)
  return epochs, 0, cfg.patience, steps_per_epoch * epochs


def keras_batch(batch_size: int, smallest: int, largest: int) -> int:
  """The batch size to give `TrainConfig` for Keras' behaviour on data smaller than a batch.

  Keras trains one partial batch when the data is smaller than `batch_size`; here that is full
  batch (0), which pads and masks the smaller folds. Between the folds' sizes it is capped at
  the smallest fold (the engine refuses a batch larger than a fold).

  Args:
    batch_size: the requested minibatch size.
    smallest: the smallest training fold.
    largest: the largest training fold.
  """
  if batch_size >= largest:
    return 0
  return min(batch_size, smallest)


def _tested(cfg: StudyConfig, n: int | None) -> bool:
  return n is not None and n <= cfg.test_up_to


def _noisy(cfg: StudyConfig, n: int | None) -> bool:
  return cfg.noisy and n is not None and n <= cfg.noise_up_to


def regularised_line(cfg: StudyConfig) -> tuple[str, int] | None:
  """(optimizer, width) of the line swept over the regularisation, or None without one.

  Adam at the study's largest width (the article's 128), when the study has Adam and a
  regularisation grid; the report says when it has none.
  """
  if not cfg.regularisation or "adam" not in cfg.optimizers:
    return None
  return ("adam", max(cfg.widths))


def schedule_rates(cell: Cell) -> dict[str, float]:
  """The decay rate per step that is each schedule in a cell."""
  return {"constant": 1.0, "exponential": cell.decay_rate}


def cell_grid(cfg: StudyConfig, cell: Cell) -> Grid:
  """The dynamic axes of one cell: learning rates x seeds x schedules [x label noise] [x
  regularisation]. The constant schedule is the exponential one's decay rate 1.0."""
  from lr_jax import engine
  hparams = [("decay_rate", tuple(schedule_rates(cell)[s] for s in cfg.schedules))]
  if cell.noisy:
    hparams.append(("label_noise", cfg.label_noise))
  if cell.regularised:
    hparams += list(cfg.regularisation)
  return engine.Grid(learning_rates=cfg.learning_rates, seeds=tuple(range(cfg.seeds)),
                     hparams=tuple(hparams))


def plan_study(cfg: StudyConfig) -> StudyPlan:
  """Checks the study and plans one compile group per (optimizer, width, size, budget).

  Label noise and regularisation are traced axes of those groups (`cell_grid`): they add
  runs, not programs. The budgets of an (optimizer, width, size) differ only in traced
  numbers (`train.Budget`, the decay rate), so they run one compiled program, planned one
  after another.

  Raises:
    ConfigError: on any bad input (unknown names, sizes the data cannot give, a regression
      data set), before anything is compiled.
  """
  from lr_jax import data as data_lib
  from lr_jax import engine
  dataset = data_lib.load_dataset(DataConfig(dataset=cfg.dataset))
  if dataset.task != "classification":
    raise ConfigError(
        f"the study compares accuracies, and {cfg.dataset!r} is a regression data set; valid "
        "choices: a classification data set, e.g. digits, iris, wine, breast_cancer, moons")
  requested = cfg.train_sizes
  sizes = [_size_plan(dataset, cfg, n, cfg.test_fraction if _tested(cfg, n) else None)
           for n in requested]
  resolved = [s[0] for s in sizes]
  if len(set(resolved)) != len(resolved):
    raise ConfigError(f"train sizes {cfg.train_sizes} name the same size twice ({resolved})")
  reg_line = regularised_line(cfg)
  cells, groups, calls = [], [], []
  for opt in cfg.optimizers:
    for width in cfg.widths:
      regularised = (opt, width) == reg_line
      family = WITH_WEIGHT_DECAY.get(opt, opt) if regularised and any(
          name == "weight_decay" for name, _ in cfg.regularisation) else opt
      for asked, (n, folds, batch, steps_per_epoch, fewest) in zip(requested, sizes):
        call = epochs_per_call([budget_plan(cfg, b, steps_per_epoch, fewest)[0] for b in cfg.budgets],
                           steps_per_epoch)
        for budget in cfg.budgets:
          epochs, max_steps, patience, steps = budget_plan(cfg, budget, steps_per_epoch, fewest)
          tested = _tested(cfg, asked)
          cell = Cell(opt, width, n, folds, batch, steps, cfg.final_lr_fraction ** (1 / steps),
                      budget, epochs, regularised=regularised, noisy=_noisy(cfg, asked),
                      tested=tested, family=family if family != opt else "")
          experiment = Experiment(
              data=DataConfig(dataset=cfg.dataset, train_size=n, folds=folds,
                              data_seed=cfg.data_seed,
                              test_fraction=cfg.test_fraction if tested else None),
              model=ModelConfig(name="mlp", hidden=(width,)),
              optim=OptimConfig(name=family, schedule="exponential", decay_steps=1),
              train=TrainConfig(epochs=epochs, batch_size=batch, patience=patience,
                                monitor="val_loss", max_steps=max_steps))
          cells.append(cell)
          planned = engine.plan_sweep([experiment], cell_grid(cfg, cell))
          groups += planned
          calls += [call] * len(planned)
  axes = [("decay_rate", tuple(sorted({r for c in cells
                                       for s, r in schedule_rates(c).items()
                                       if s in cfg.schedules})))]
  if any(c.noisy for c in cells):
    axes.append(("label_noise", cfg.label_noise))
  if reg_line:
    axes += list(cfg.regularisation)
  grid = engine.Grid(learning_rates=cfg.learning_rates, seeds=tuple(range(cfg.seeds)),
                     hparams=tuple(axes))
  return StudyPlan(config=cfg, cells=tuple(cells), groups=tuple(groups), grid=grid,
                   call_epochs=tuple(calls))


@dataclasses.dataclass
class StudyResult:
  """A finished study: the sweep, its table, and how long it took."""

  plan: StudyPlan
  sweep: SweepResult
  rows: list[CellRow]
  wall_s: float


def row_keys(cfg: StudyConfig, cell: Cell) -> list[tuple[str, float, str]]:
  """The (schedule, label noise, regularisation) of each table row of a cell, in table order."""
  noise = cfg.label_noise if cell.noisy else (0.0,)
  regs = ("", "tuned") if cell.regularised else ("",)
  return [(s, v, r) for r in regs for v in noise for s in cfg.schedules]


def _close(a, b) -> bool:
  return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)


def _off(entry: Mapping[str, float], name: str) -> float:
  """An aggregate's value of an axis; 0 (off) where its group does not sweep it (NaN)."""
  value = float(entry.get(name, math.nan))
  return 0.0 if math.isnan(value) else value


def study_rows(plan: StudyPlan, sweep: SweepResult) -> list[CellRow]:
  """The study's table: one `CellRow` per (cell, schedule, label noise, regularisation).

  P(best) and the not-worse set are the row's own, from its runs paired by stream
  (`cell_selection`): the aggregates' are over the whole compile group, every schedule,
  noise level and regularisation together. A row without regularisation is the subset of
  its group's points where every regularisation axis is 0; a tuned row has all of them,
  and reports per learning rate its best point (`CellRow.regularisation`). The runs still
  training at the end of the budget (neither stopped early nor diverged) come from the
  sweep's rows too. Where the cell has a test set, the best point's runs are scored on it.
  """
  cfg = plan.config
  runs = sweep.rows
  unfinished_N = ~np.asarray(runs["stopped_early"], bool) & ~np.asarray(runs["diverged"], bool)
  reg_names = [name for name, _ in cfg.regularisation]
  rows = []
  for gi, cell in enumerate(plan.cells):
    mine = [a for a in sweep.aggregates if a["group"] == gi]
    # The group's own axes: another group's are NaN in its entries and rows.
    points = [k for k in ("learning_rate", "decay_rate", "label_noise", *reg_names)
              if mine and math.isfinite(mine[0].get(k, math.nan))]
    in_group = np.asarray(runs["group"]) == gi
    for schedule, noise, reg in row_keys(cfg, cell):
      def wanted(a):
        return (_close(a["decay_rate"], schedule_rates(cell)[schedule])
                and _close(_off(a, "label_noise"), noise)
                and (reg or all(_close(_off(a, k), 0.0) for k in reg_names)))
      entries = [a for a in mine if wanted(a)]
      masks = []
      for a in entries:
        sel = in_group.copy()
        for k in points:
          sel &= np.isclose(np.asarray(runs[k], float), a[k], rtol=1e-6, atol=1e-12)
        masks.append(sel)
      rows.append(_row_of(cfg, cell, runs, entries, masks, unfinished_N, schedule=schedule,
                          label_noise=noise, regularisation=reg, reg_names=reg_names))
      if cell.tested and getattr(sweep, "groups", None):
        rows[-1] = _with_test(rows[-1], sweep, gi, entries, masks)
  return rows


def _row_of(cfg: StudyConfig, cell: Cell, runs: Mapping[str, np.ndarray], entries: list[dict],
            masks: list[np.ndarray], unfinished_N: np.ndarray, *, schedule: str,
            label_noise: float, regularisation: str, reg_names: Sequence[str]) -> CellRow:
  """One table row from its grid points' aggregates and run masks (several per learning rate
  when tuned: each learning rate shows its best point's numbers)."""
  eligible = [bool(a["eligible"]) for a in entries]
  p_point, keep_point = cell_selection(runs, masks, eligible)
  by_lr: dict[float, list[int]] = {}
  for i, a in enumerate(entries):
    by_lr.setdefault(float(a["learning_rate"]), []).append(i)
  lrs, chosen, p_best, keep = [], [], [], []
  for lr, idx in by_lr.items():
    ok = [i for i in idx if eligible[i] and math.isfinite(entries[i]["mean"])]
    chosen.append(max(ok, key=lambda i: entries[i]["mean"]) if ok else idx[0])
    lrs.append(lr)
    p = [p_point[i] for i in idx]
    p_best.append(math.nan if any(math.isnan(x) for x in p) else float(sum(p)))
    keep.append(any(keep_point[i] for i in idx))
  pick = [entries[i] for i in chosen]
  setting, plain_worse = (), None
  finite = [i for i, a in zip(chosen, pick) if a["eligible"] and math.isfinite(a["mean"])]
  if finite and regularisation:
    best = max(finite, key=lambda i: entries[i]["mean"])
    setting = tuple((k, _off(entries[best], k)) for k in reg_names)
    if regularisation:
      plain = [i for i in range(len(entries)) if eligible[i]
               and all(_close(_off(entries[i], k), 0.0) for k in reg_names)]
      if plain and not any(math.isnan(p_point[i]) for i in plain):
        top = max(plain, key=lambda i: entries[i]["mean"])
        plain_worse = not keep_point[top]
  return cell_row(
      optimizer=cell.optimizer, width=cell.width, schedule=schedule,
      train_size=cell.train_size, runs=max(a["n_total"] for a in entries), steps=cell.steps,
      lrs=lrs, mean=[a["mean"] for a in pick], ci95=[a["ci95"] for a in pick],
      diverged=[a["diverged"] for a in pick], reference_lr=cfg.reference_lr,
      tolerance=cfg.tolerance, budget=cell.budget, p_best=p_best, not_worse=keep,
      unfinished=[int(np.sum(unfinished_N & masks[i])) for i in chosen],
      regularisation=regularisation, label_noise=label_noise, best_setting=setting,
      plain_worse=plain_worse)


def _with_test(row: CellRow, sweep: SweepResult, group: int, entries: list[dict],
               masks: list[np.ndarray]) -> CellRow:
  """The row with its best point's runs scored on the group's held-out test rows."""
  from lr_jax import export
  from lr_jax.stats import summarize
  g = sweep.groups[group]
  test_idx = g.splits.test_idx
  if not len(test_idx) or not math.isfinite(row.best_lr):
    return row
  at_best = [i for i, a in enumerate(entries)
             if _close(a["learning_rate"], row.best_lr) and _close(a["mean"], row.best_mean)
             and a["eligible"]]
  if not at_best:
    return row
  x, y = g.dataset.x[test_idx], g.dataset.y[test_idx]
  scores = [export.scores(sweep.model_of(int(i)), x, y)["accuracy"]
            for i in np.flatnonzero(masks[at_best[0]])]
  summary = summarize(scores)
  return dataclasses.replace(row, test_mean=summary.mean, test_ci=summary.ci95,
                             test_n=int(len(test_idx)))


def cell_selection(runs: Mapping[str, np.ndarray], at_lr: Sequence[np.ndarray],
                   eligible: Sequence[bool]) -> tuple[list[float], list[bool]]:
  """P(best) and the not-worse set of one cell's learning rates, paired by (seed, fold).

  Args:
    runs: the sweep's rows (columns `seed`, `fold`, `best_val_accuracy`).
    at_lr: [P] boolean masks over the rows: the runs of each learning rate of the cell.
    eligible: [P] may be selected (no run diverged, every run has a score).

  Returns:
    [P] P(best) (0 where not eligible; NaN with fewer than 2 streams or where the streams do
    not pair) and [P] not significantly worse than the cell's best (`lr_jax.stats`).
  """
  from lr_jax import stats
  num = len(at_lr)
  p_best, keep = [0.0] * num, [False] * num
  chosen = [i for i in range(num) if eligible[i]]
  if not chosen:
    return p_best, keep
  streams, scores = [], []
  for i in chosen:
    idx = np.flatnonzero(at_lr[i])
    idx = idx[np.lexsort((runs["fold"][idx], runs["seed"][idx]))]
    streams.append(list(zip(np.asarray(runs["seed"])[idx].tolist(),
                            np.asarray(runs["fold"])[idx].tolist())))
    scores.append(np.asarray(runs["best_val_accuracy"], np.float64)[idx])
  if any(s != streams[0] for s in streams) or len(streams[0]) < 2:
    best = chosen[int(np.argmax([np.mean(s) for s in scores]))]
    keep[best] = True  # No pairing to test against: the best alone.
    for i in chosen:
      p_best[i] = math.nan
    return p_best, keep
  scores_SxP = np.stack(scores, axis=1)
  best = stats.best_index(scores_SxP.mean(axis=0), np.ones(len(chosen), bool), True)
  shares = stats.p_best(scores_SxP, True)
  kept = stats.not_worse(scores_SxP, best, True)
  for j, i in enumerate(chosen):
    p_best[i], keep[i] = float(shares[j]), bool(kept[j])
  return p_best, keep


def study_options() -> RunOptions:
  """How the study runs its groups: the engine's defaults without compaction.

  Compaction changes no result, but each narrower population it continues at is another
  program to compile, and the study's programs are shared only by a cell's budgets: from
  a cold cache on 2 cores, --quick's two to-convergence groups took 59 s of CPU with it and
  21.5 s without (n = 25 and 400; 1000 steps, 48 variants each).
  """
  from lr_jax import engine
  return engine.RunOptions(compact=False)


def run_study(plan: StudyPlan, options: RunOptions | None = None) -> StudyResult:
  """Runs every compile group of a planned study and builds its table.

  Args:
    plan: from `plan_study`.
    options: the engine's `RunOptions`, used as given for every group; default
      `study_options()` with each size's own call length (`StudyPlan.call_epochs`).
  """
  from lr_jax.results import SweepResult
  t0 = time.perf_counter()
  if options is None:
    outputs, _ = run_groups(plan.groups, options=study_options(),
                            call_epochs=plan.call_epochs or None)
  else:
    outputs, _ = run_groups(plan.groups, options=options)
  sweep = SweepResult.from_groups(plan.groups, outputs, grid=plan.grid)
  return StudyResult(plan=plan, sweep=sweep, rows=study_rows(plan, sweep),
                     wall_s=time.perf_counter() - t0)


def ci_band(mean: Sequence[float], ci95: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """[P] lower and upper edges of a 95% band of accuracies, clipped to [0, 1]."""
  mean, ci = np.array(mean, float), np.nan_to_num(np.array(ci95, float))
  return np.clip(mean - ci, 0.0, 1.0), np.clip(mean + ci, 0.0, 1.0)


def _p_best_text(row: CellRow) -> str:
  """The learning rates with a P(best) of at least 0.05, e.g. '1e-3: 0.62, 3.2e-3: 0.31'."""
  shown = [f"{report.format_lr(lr)}: {p:.2f}" for lr, p in zip(row.lrs, row.p_best)
           if math.isfinite(p) and p >= 0.05]
  return ", ".join(shown) if shown else "n/a"


def _not_worse_text(row: CellRow) -> str:
  kept = row.not_worse_lrs
  if not kept:
    return "n/a"
  return f"{report.format_lr(min(kept))} – {report.format_lr(max(kept))} ({len(kept)})"


def study_table(rows: Sequence[CellRow], *, reference_lr: float = 1e-4) -> str:
  """The study's Markdown table, one line per cell."""
  ref = report.format_lr(reference_lr)
  headers = ["budget", "optimizer", "model", "schedule", "label noise", "regularisation", "n",
             "runs", "steps", "best LR", "accuracy ± 95% CI", "test accuracy",
             f"accuracy at lr={ref}", "not worse than the best", "P(best) by LR",
             "still training", "diverged runs"]
  body = []
  order = list(dict.fromkeys(r.budget for r in rows))  # The study's, as the figures'.
  for r in sorted(rows, key=lambda r: order.index(r.budget)):
    edge = " (edge)" if r.best_at_edge else ""
    reg = f"tuned: {_setting_text(r.best_setting)}" if r.regularisation else "off"
    test = report.format_ci(r.test_mean, r.test_ci) if math.isfinite(r.test_mean) else "-"
    body.append([_label(r.budget), r.optimizer, _model(r.width), r.schedule,
                 f"{r.label_noise:g}", reg, r.train_size, r.runs, r.steps,
                 report.format_lr(r.best_lr) + edge, report.format_ci(r.best_mean, r.best_ci),
                 test, report.format_ci(r.ref_mean, r.ref_ci), _not_worse_text(r),
                 _p_best_text(r), sum(r.unfinished), sum(r.diverged)])
  return report.markdown_table(headers, body, align=["l"] * 6 + ["r"] * 11)


def _figures(cfg: StudyConfig, rows: Sequence[CellRow], out_dir: str) -> list[tuple[str, str]]:
  """Draws each budget's figures into `out_dir`: (file name, alt text) of each."""
  figures = []
  for budget in cfg.budgets:
    brows = [r for r in rows if r.budget == budget and r.main]
    label = _label(budget)
    panels = {}
    for width in cfg.widths:
      for schedule in cfg.schedules:
        curves = []
        for opt in cfg.optimizers:
          line = sorted((r for r in brows if r.line == (opt, width, schedule)),
                        key=lambda r: r.train_size)
          lo = [min(r.not_worse_lrs, default=math.nan) for r in line]
          hi = [max(r.not_worse_lrs, default=math.nan) for r in line]
          curves.append(report.Curve(
              opt, np.array([r.train_size for r in line]), np.array([r.best_lr for r in line]),
              np.array(lo), np.array(hi)))
        panels[f"{_model(width)}, {schedule}"] = curves
    name = f"best_lr_{budget}.png"
    report.plot_best_lr(
        os.path.join(out_dir, name), panels,
        lr_range=(cfg.learning_rates[0], cfg.learning_rates[-1]),
        suptitle=f"{label}: best learning rate vs training-set size (band: not significantly "
                 "worse)")
    figures.append((name, f"best learning rate vs training-set size, {label}"))
    for opt in cfg.optimizers:
      panels = {}
      for width in cfg.widths:
        for schedule in cfg.schedules:
          panels[f"{opt}, {_model(width)}, {schedule}"] = [
              report.Curve(f"n={r.train_size}", np.array(r.lrs), np.array(r.mean),
                           *ci_band(r.mean, r.ci95))
              for r in sorted(brows, key=lambda r: r.train_size)
              if r.line == (opt, width, schedule)]
      name = f"sensitivity_{budget}_{opt}.png"
      report.plot_lr_sensitivity(
          os.path.join(out_dir, name), panels, reference_lr=cfg.reference_lr,
          legend_title="training examples",
          suptitle=f"{opt}, {label}: mean best validation accuracy vs learning rate (band: 95% CI)")
      figures.append((name, f"LR sensitivity, {opt}, {label}"))
  return figures


def _budget_setup(cfg: StudyConfig, cells: Sequence[Cell]) -> str:
  """One line per budget: what a run gets under it."""
  lines = []
  for budget in cfg.budgets:
    mine = sorted((c for c in cells if c.budget == budget), key=lambda c: c.train_size)
    span = (f"{mine[0].steps} steps ({mine[0].epochs} epochs) at n={mine[0].train_size} to "
            f"{mine[-1].steps} ({mine[-1].epochs} epochs) at n={mine[-1].train_size}")
    what = {
        "epochs": f"up to {cfg.epochs} epochs at every size, early stopping on the validation "
                  f"loss (patience {cfg.patience}): {span}",
        "steps": f"exactly {cfg.steps} optimizer updates per run at every size, early stopping "
                 f"off (a run that stopped early would have fewer); {span}",
        "converge": f"up to about {cfg.converge_steps} steps (whole epochs), early stopping on "
                    f"the validation loss (patience {cfg.patience}); a run that neither stopped "
                    f"nor diverged was still improving when the budget ran out: {span}",
    }[budget]
    lines.append(f"  - *{_label(budget)}*: {what}")
  return "\n".join(lines)


def _arms_setup(cfg: StudyConfig, cells: Sequence[Cell]) -> str:
  """Setup lines of the regularisation, label-noise and test-set parts, or why there is none."""
  line = regularised_line(cfg)
  sizes = lambda pred: ", ".join(str(n) for n in sorted({c.train_size for c in cells if pred(c)}))
  if line:
    axes = "; ".join(f"{name} {', '.join(f'{v:g}' for v in values)}"
                     for name, values in cfg.regularisation)
    reg = (f"- regularisation: on the {line[0]} {_model(line[1])} line, every cell also sweeps "
           f"{axes} (traced axes of the same compiled program; Adam runs as AdamW, which at "
           "weight decay 0 is Adam update for update). *Off* is the subset where all are 0; "
           "*tuned* takes, per learning rate, its best setting")
  else:
    reg = ("- regularisation: not measured in this run (it needs adam among the optimizers and "
           "a regularisation grid)")
  if any(c.noisy for c in cells):
    noise = (f"- label noise: at n = {sizes(lambda c: c.noisy)}, every cell also sweeps the "
             f"fraction of training labels replaced by a random other class, "
             f"{', '.join(f'{v:g}' for v in cfg.label_noise)} (fixed per seed and row; "
             "validation and test labels stay clean)")
  else:
    noise = "- label noise: not measured in this run"
  if any(c.tested for c in cells):
    test = (f"- test set: at n = {sizes(lambda c: c.tested)}, {cfg.test_fraction:g} of the data "
            "set is held out first (stratified, data seed as above); the best point's runs, "
            "each trained on its folds, are scored on it")
  else:
    test = "- test set: none in this run"
  return "\n".join([reg, noise, test])


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
  figures = _figures(cfg, rows, out_dir)
  cells = study.plan.cells
  first = [c for c in cells if c.budget == cfg.budgets[0]]
  keras_final = {c.train_size: 0.9 ** (c.steps / 1000) for c in first}
  sizes = sorted(keras_final)
  setup = "\n".join([
      f"- data: `{cfg.dataset}`, training sizes {', '.join(str(n) for n in sizes)} "
      f"(stratified subsamples, data seed {cfg.data_seed}); each cell is "
      f"{'/'.join(str(k) for k in sorted({c.folds for c in cells}))}-fold stratified "
      f"cross-validation (k = min({cfg.folds}, smallest class count)) x {cfg.seeds} seeds",
      f"- models: one-hidden-layer ReLU MLPs of width {', '.join(map(str, cfg.widths))}; "
      f"optimizers {', '.join(cfg.optimizers)}",
      f"- learning rates: {len(cfg.learning_rates)} log-spaced from "
      f"{report.format_lr(cfg.learning_rates[0])} to {report.format_lr(cfg.learning_rates[-1])}",
      f"- budgets: every cell runs under {len(cfg.budgets)}; batch {cfg.batch_size} (the whole "
      "training fold where it is smaller, as Keras); best epoch (lowest validation loss) "
      "restored; score: best validation accuracy on the held-out fold",
      _budget_setup(cfg, cells),
      f"- schedules: {', '.join(cfg.schedules)}. Exponential decay is Keras' "
      "ExponentialDecay with decay_steps=1, lr * r^step, with r chosen per cell so "
      f"that the rate falls to {cfg.final_lr_fraction:g}x its peak at the budget's last step "
      f"(r = {cfg.final_lr_fraction:g}^(1 / steps)). The article's 0.9 per "
      f"decay_steps=1000 would end at {keras_final[sizes[0]]:.3f}x the peak at n={sizes[0]} "
      f"({min(c.steps for c in first)} steps, {_label(cfg.budgets[0])}) and "
      f"{keras_final[sizes[-1]]:.3f}x at n={sizes[-1]}. Both schedules share one compiled "
      "program: constant is decay rate 1.0",
      "- within the noise of the best: the learning rates a one-sided paired t-test (by "
      "seed and fold, 5%) cannot tell from the best (*not worse than the best*); P(best): the "
      "share of paired bootstrap resamples of the runs in which a learning rate is the best",
      f"- {len(study.plan.groups)} compile groups, {study.sweep.num_variants} training runs, "
      f"wall time {format_duration(study.wall_s)} ({study.wall_s:.0f} s) on "
      f"{os.cpu_count()} CPU cores",
  ])
  summary = conclusion(rows, reference_lr=cfg.reference_lr)
  setup += "\n" + _arms_setup(cfg, cells)
  sections = [
      ("Answer", summary.markdown()),
      ("Setup", setup),
      ("Figures", "\n\n".join(report.image(f, alt) for f, alt in figures)),
      ("Table", "One line per cell. *best LR*: highest mean best-validation accuracy over the "
                "runs (a learning rate where any run diverged is not eligible); *(edge)*: at "
                "the end of the grid. *regularisation*: off (dropout and weight decay 0), or "
                "tuned (each learning rate at its best setting; the best one's shown). *test "
                "accuracy*: the best point's runs on the held-out test set, where the cell has "
                "one. *not worse than the best*: the smallest and largest "
                "learning rate not significantly worse than the best, and how many there are. "
                "*P(best) by LR*: the learning rates with P(best) >= 0.05. *still training*: "
                "runs that neither stopped early nor diverged when the budget ran out.\n\n"
                + study_table(rows, reference_lr=cfg.reference_lr)),
      *extra,
  ]
  return report.write_report(out_dir, "Is a very small learning rate necessary with small data?",
                             sections)
