"""The small-data study: many compile groups, one table, a conclusion computed from it.

    plan = plan_study(StudyConfig(train_sizes=(25, 100, None), optimizers=("sgd", "adam")))
    study = run_study(plan)                 # one compile group per (optimizer, width, size)
    write_study_report(study, "runs/study")
    print(conclusion(study.rows))           # every claim computed from the table

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
from typing import TYPE_CHECKING

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
  its work; both are fitted on the finished groups. The engine's `compile_s` covers the
  compilation and the first chunk of epochs, `run_s` the whole group.

  Args:
    done: one dict per finished group: `work` (`group_work`), `chunk_fraction` (first chunk's
      share of the epochs), `executed_fraction` (epochs run before the early exit, as a share),
      `compile_s`, `run_s`.
    remaining_work: `group_work` of each group still to run.

  Returns:
    The estimate in seconds; NaN before any group has finished.
  """
  if not done:
    return math.nan
  timed = sum(d["work"] * max(d["executed_fraction"] - d["chunk_fraction"], 0.0) for d in done)
  if timed > 0:
    rate = sum(max(d["run_s"] - d["compile_s"], 0.0) for d in done) / timed
    overhead = float(np.mean([max(d["compile_s"] - rate * d["work"] * d["chunk_fraction"], 0.0)
                              for d in done]))
  else:  # Every group ran in one chunk: compilation and run cannot be told apart.
    rate = sum(d["run_s"] for d in done) / sum(d["work"] * d["executed_fraction"] for d in done)
    overhead = 0.0
  executed = float(np.mean([d["executed_fraction"] for d in done]))
  return float(sum(overhead + rate * w * executed for w in remaining_work))


def describe_group(group: Group) -> str:
  """A short name of a compile group for logs, e.g. 'adam MLP(16) n=25'."""
  exp = group.experiment
  n = exp.data.train_size or int(group.splits.train_sizes.max())
  widths = ",".join(map(str, exp.model.hidden))
  return f"{exp.optim.name} {exp.model.name.upper()}({widths}) n={n}"


def run_groups(groups: Sequence[Group], *, options: RunOptions | None = None
               ) -> tuple[list[dict], float]:
  """Runs planned compile groups one after another, logging the overall progress.

  After each group it logs "cell i/n ... elapsed, ETA" over all groups (the engine logs the
  epochs inside a group).

  Args:
    groups: from `engine.plan_sweep`.
    options: the engine's `RunOptions` (chunking, progress); default its defaults.

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
    out = engine.run_group(group, index=i, options=options)
    outputs.append(out)
    epochs = group.experiment.train.epochs
    chunk = min(group.experiment.train.chunk_epochs or epochs, epochs)
    done.append({"work": works[i], "chunk_fraction": chunk / epochs,
                 "executed_fraction": out.epochs_executed / epochs,
                 "compile_s": out.compile_s, "run_s": out.run_s})
    elapsed = time.perf_counter() - t0
    eta = estimate_remaining(done, works[i + 1:])
    logging.info("cell %d/%d done in %s (compile %s), elapsed %s, ETA %s", i + 1, len(groups),
                 format_duration(out.run_s), format_duration(out.compile_s), format_duration(elapsed),
                 format_duration(eta))
  return outputs, time.perf_counter() - t0


# ------------------------------------------------------------------------- one cell's numbers


@dataclasses.dataclass(frozen=True)
class CellRow:
  """One cell of the study: an LR sweep of one (optimizer, width, schedule, training size).

  Attributes:
    optimizer: optimizer family.
    width: hidden width of the one-layer MLP.
    schedule: "constant" or "exponential".
    train_size: training examples (before the k-fold split).
    runs: runs per learning rate (seeds x folds).
    steps: optimizer steps of a run that trains every epoch.
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

  @property
  def line(self) -> tuple[str, int, str]:
    """The (optimizer, width, schedule) this cell belongs to, across training sizes."""
    return (self.optimizer, self.width, self.schedule)

  @property
  def best_at_edge(self) -> bool:
    return math.isfinite(self.best_lr) and (
        math.isclose(self.best_lr, self.lrs[0]) or math.isclose(self.best_lr, self.lrs[-1]))


def index_of(lrs: Sequence[float], lr: float) -> int | None:
  for i, x in enumerate(lrs):
    if math.isclose(x, lr, rel_tol=1e-6):
      return i
  return None


def cell_row(*, optimizer: str, width: int, schedule: str, train_size: int, runs: int, steps: int,
             lrs: Sequence[float], mean: Sequence[float], ci95: Sequence[float],
             diverged: Sequence[int], reference_lr: float, tolerance: float) -> CellRow:
  """Summarizes one cell's LR sweep: best LR, accuracy at the reference LR, near-best range.

  The best point follows `lr_jax.results.best_points`: a learning rate where any run diverged
  is not eligible; when no point is, there is no best.

  Args:
    optimizer, width, schedule, train_size, runs, steps: the cell (see `CellRow`).
    lrs: [P] learning rates.
    mean: [P] mean best validation accuracy.
    ci95: [P] 95% half-widths.
    diverged: [P] diverged runs.
    reference_lr: the learning rate to report separately (the article's 1e-4).
    tolerance: accuracy difference that counts as "within one point" (0.01).

  Returns:
    The `CellRow`, points sorted by learning rate.
  """
  order = np.argsort(np.asarray(lrs, float))
  lrs_P = np.asarray(lrs, float)[order]
  mean_P = np.asarray(mean, float)[order]
  ci_P = np.asarray(ci95, float)[order]
  div_P = np.asarray(diverged, int)[order]
  finite = np.isfinite(mean_P)
  eligible = finite & (div_P == 0)
  if eligible.any():
    best = int(np.flatnonzero(eligible)[np.argmax(mean_P[eligible])])
    near = eligible & (mean_P >= mean_P[best] - tolerance)
    best_lr, best_mean, best_ci = float(lrs_P[best]), float(mean_P[best]), float(ci_P[best])
    near_lo, near_hi = float(lrs_P[near].min()), float(lrs_P[near].max())
    num_near = int(near.sum())
  else:
    best_lr = best_mean = best_ci = near_lo = near_hi = math.nan
    num_near = 0
  ref = index_of(lrs_P, reference_lr)
  return CellRow(
      optimizer=optimizer, width=int(width), schedule=schedule, train_size=int(train_size),
      runs=int(runs), steps=int(steps), lrs=tuple(map(float, lrs_P)),
      mean=tuple(map(float, mean_P)), ci95=tuple(map(float, ci_P)),
      diverged=tuple(map(int, div_P)), best_lr=best_lr, best_mean=best_mean, best_ci=best_ci,
      ref_mean=float(mean_P[ref]) if ref is not None else math.nan,
      ref_ci=float(ci_P[ref]) if ref is not None else math.nan,
      near_lo=near_lo, near_hi=near_hi, num_near=num_near)


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


def conclusion(rows: Sequence[CellRow], *, reference_lr: float = 1e-4,
               tolerance: float = 0.01) -> list[str]:
  """The study's conclusion as sentences, every number computed from the table.

  Args:
    rows: the table (`CellRow`s); any subset of optimizers, widths, schedules and sizes.
    reference_lr: the small learning rate the article recommends.
    tolerance: "within one point" in accuracy.

  Returns:
    Sentences, in order: the reference LR's standing, the best LR's move from the smallest
    to the largest training set per optimizer and overall, the width of the near-best range,
    schedule and width effects, how well the best LR is resolved, and grid-edge cases.
  """
  rows = [r for r in rows if math.isfinite(r.best_lr)]
  if not rows:
    return ["No cell has a finite result: nothing can be concluded."]
  out = []
  n_all = len(rows)
  sizes = sorted({r.train_size for r in rows})
  small, large = sizes[0], sizes[-1]
  pt = f"{tolerance * 100:.3g} point" + ("" if math.isclose(tolerance, 0.01) else "s")
  ref = report.format_lr(reference_lr)

  # 0. The article's question: was a learning rate this small necessary, i.e. was every
  # learning rate within tolerance of the best at most the reference?
  needed = [r.near_hi <= reference_lr * (1 + 1e-6) for r in rows]
  out.append(f"A learning rate of {ref} or smaller was necessary (every learning rate within "
             f"{pt} of the best was {ref} or smaller) in {_count(needed)} of {n_all} cells.")

  # 1. The article's small learning rate.
  with_ref = [r for r in rows if math.isfinite(r.ref_mean)]
  if with_ref:
    near = [r.ref_mean >= r.best_mean - tolerance for r in with_ref]
    text = (f"lr={ref} is within {pt} ({tolerance:g} accuracy) of the best learning rate in "
            f"{_count(near)} of {len(with_ref)} cells")
    if len(sizes) > 1:
      at = lambda n: [r for r in with_ref if r.train_size == n]
      text += (f" ({_count(r.ref_mean >= r.best_mean - tolerance for r in at(small))} of "
               f"{len(at(small))} at n={small}, "
               f"{_count(r.ref_mean >= r.best_mean - tolerance for r in at(large))} of "
               f"{len(at(large))} at n={large})")
    out.append(text + ".")
  smaller_or_equal = [r.best_lr <= reference_lr * (1 + 1e-6) for r in rows]
  out.append(f"The best learning rate is {ref} or smaller in {_count(smaller_or_equal)} of "
             f"{n_all} cells; its median over all cells is "
             f"{report.format_lr(_median([r.best_lr for r in rows]))}.")

  # 2. How the best LR moves with the training-set size.
  lines = _lines(rows)
  if len(sizes) > 1:
    moves = []
    for opt in dict.fromkeys(r.optimizer for r in rows):
      clauses = []
      for (o, width, schedule), by_size in lines.items():
        if o != opt or small not in by_size or large not in by_size:
          continue
        a, b = by_size[small].best_lr, by_size[large].best_lr
        moves.append(b / a)
        clauses.append(f"{report.format_lr(a)} -> {report.format_lr(b)} ({format_ratio(b / a)}) "
                       f"with {_model(width)}, {schedule}")
      if clauses:
        out.append(f"For {opt}, from n={small} to n={large} the best learning rate goes "
                   + "; ".join(clauses) + ".")
    if moves:
      out.append(
          f"Over the {len(moves)} (optimizer, width, schedule) lines, the best learning rate at "
          f"n={small} is smaller than at n={large} in {_count(m > 1 + 1e-6 for m in moves)}, "
          f"the same in {_count(math.isclose(m, 1, rel_tol=1e-6) for m in moves)} and larger in "
          f"{_count(m < 1 - 1e-6 for m in moves)} (median change: "
          f"{format_ratio(10 ** _median([math.log10(m) for m in moves]))}).")

    # 3. Sensitivity: how wide is the near-best range?
    decades = lambda n: _decades(_median([math.log10(r.near_hi / r.near_lo)
                                          for r in rows if r.train_size == n]))
    out.append(
        f"The learning rates within {pt} of the best span a median of {decades(small)} at "
        f"n={small} and {decades(large)} at n={large}.")
    steps = lambda n: max(r.steps for r in rows if r.train_size == n)
    out.append(
        f"Every cell had the same epoch budget, so a run had at most {steps(small)} optimizer "
        f"steps at n={small} and {steps(large)} at n={large}: a small learning rate there "
        "is judged on how far it gets in that budget.")

  # 4. Schedule and width, paired on everything else.
  by_key = {(r.optimizer, r.width, r.schedule, r.train_size): r for r in rows}
  pairs = [(by_key[(o, w, "exponential", n)], r) for (o, w, s, n), r in by_key.items()
           if s == "constant" and (o, w, "exponential", n) in by_key]
  if pairs:
    diff = [e.best_mean - c.best_mean for e, c in pairs]
    out.append(
        f"Exponential decay beats the constant schedule by more than {pt} at their best "
        f"learning rates in {_count(d > tolerance for d in diff)} of {len(pairs)} cells and "
        f"loses by more than {pt} in {_count(d < -tolerance for d in diff)}; its best "
        f"learning rate is larger in {_count(e.best_lr > c.best_lr * (1 + 1e-6) for e, c in pairs)}"
        f" and smaller in {_count(e.best_lr < c.best_lr * (1 - 1e-6) for e, c in pairs)}.")
  widths = sorted({r.width for r in rows})
  if len(widths) > 1:
    narrow, wide = widths[0], widths[-1]
    wpairs = [(by_key[(o, wide, s, n)], r) for (o, w, s, n), r in by_key.items()
              if w == narrow and (o, wide, s, n) in by_key]
    if wpairs:
      ratio = [a.best_lr / b.best_lr for a, b in wpairs]
      out.append(
          f"{_model(wide)}'s best learning rate is smaller than {_model(narrow)}'s in "
          f"{_count(r < 1 - 1e-6 for r in ratio)} of {len(wpairs)} paired cells, the same in "
          f"{_count(math.isclose(r, 1, rel_tol=1e-6) for r in ratio)} and larger in "
          f"{_count(r > 1 + 1e-6 for r in ratio)}; its best accuracy is higher by more than "
          f"{pt} in {_count(a.best_mean - b.best_mean > tolerance for a, b in wpairs)}.")

  # 5. Is the best LR resolved at all, and did the grid contain it?
  unresolved = []
  for r in rows:
    others = [m for lr, m, d in zip(r.lrs, r.mean, r.diverged)
              if not math.isclose(lr, r.best_lr) and math.isfinite(m) and d == 0]
    unresolved.append(math.isfinite(r.best_ci) and any(m >= r.best_mean - r.best_ci
                                                       for m in others))
  out.append(
      f"In {_count(unresolved)} of {n_all} cells another learning rate's mean lies inside the "
      f"best one's 95% interval, so the best learning rate is not resolved from its "
      f"neighbours with {_median([r.runs for r in rows]):.0f} runs per point; the best lies at "
      f"the edge of the grid in {_count(r.best_at_edge for r in rows)} cells.")
  return out


# ------------------------------------------------------------------------------ the study


SCHEDULE_DECAY = {"constant": 1.0, "exponential": 0.9}  # decay_rate per decay_steps


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
      vs 0.9 per `decay_steps`, a dynamic hyperparameter).
    learning_rates: the grid; it must contain `reference_lr`. Half decades from 3.2e-5 to 3.2
      hold every optimizer's best on digits inside the grid (SGD's near 0.3-1).
    final_lr_fraction: the exponential schedule's decay_steps is chosen per cell so that the
      learning rate falls to this fraction of its peak at the last epoch: Keras' fixed 1000
      steps would barely decay in a run of 50 steps (n=25).
    seeds: training seeds per fold (seeds x folds runs per learning rate: the 95% intervals).
    folds: k of the stratified k-fold cross-validation; capped per cell at the smallest class
      count (digits at n=25 has 2 examples of some classes, so 2 folds there).
    epochs: maximum epochs (early stopping on).
    batch_size: minibatch size; a training fold smaller than a batch trains full-batch
      (Keras takes one partial batch), see `keras_batch`.
    patience: early-stopping patience on the validation loss.
    reference_lr: the article's small learning rate, reported in every cell.
    tolerance: accuracy within which a learning rate counts as near the best (one point).
    data_seed: seed of the subsample and the folds.
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
  epochs: int = 50
  batch_size: int = 32
  patience: int = 5
  reference_lr: float = 1e-4
  tolerance: float = 0.01
  data_seed: int = 0

  def __post_init__(self):
    from lr_jax.optim import OPTIMIZERS
    for name in ("train_sizes", "optimizers", "widths", "schedules", "learning_rates"):
      value = tuple(getattr(self, name))
      if not value:
        raise ConfigError(f"{name} is empty; give at least one")
      if len(set(value)) != len(value):
        raise ConfigError(f"{name} has duplicates: {value}")
      object.__setattr__(self, name, value)
    for opt in self.optimizers:
      check_choice("optimizer", opt, OPTIMIZERS)
    for s in self.schedules:
      check_choice("schedule", s, SCHEDULE_DECAY)
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
    check_positive("batch_size", self.batch_size, integer=True)
    check_positive("patience", self.patience, integer=True, allow_zero=True)
    check_positive("tolerance", self.tolerance)

  @classmethod
  def quick(cls, **changes) -> "StudyConfig":
    """A small version for a first look (minutes on a laptop): fewer cells, epochs, runs."""
    base = dict(train_sizes=(25, 400), optimizers=("sgd", "adam"), widths=(128,),
                learning_rates=log_spaced(1e-5, 1.0, 6), seeds=2, folds=2, epochs=20)
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
  steps: int          # optimizer steps of a run that trains every epoch
  decay_steps: int


@dataclasses.dataclass(frozen=True)
class StudyPlan:
  """A checked study: its cells, their compile groups (from `engine.plan_sweep`), its grid."""

  config: StudyConfig
  cells: tuple[Cell, ...]
  groups: tuple[Group, ...]
  grid: Grid


def _size_plan(dataset, cfg: StudyConfig, n: int | None) -> tuple[int, int, int, int]:
  """(train_size, folds, batch_size, steps per epoch) of one training-set size."""
  from lr_jax import data as data_lib
  base = DataConfig(dataset=cfg.dataset, train_size=n, data_seed=cfg.data_seed)
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
  splits = data_lib.make_splits(dataset, dataclasses.replace(base, folds=folds))
  batch = keras_batch(cfg.batch_size, int(splits.train_sizes.min()), splits.train_idx.shape[1])
  n_max = splits.train_idx.shape[1]
  return n, folds, batch, math.ceil(n_max / (batch or n_max))


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


def plan_study(cfg: StudyConfig) -> StudyPlan:
  """Checks the study against its data and plans one compile group per (optimizer, width, size).

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
  sizes = [_size_plan(dataset, cfg, n) for n in cfg.train_sizes]
  resolved = [s[0] for s in sizes]
  if len(set(resolved)) != len(resolved):
    raise ConfigError(f"train sizes {cfg.train_sizes} name the same size twice ({resolved})")
  cells, experiments = [], []
  for opt in cfg.optimizers:
    for width in cfg.widths:
      for n, folds, batch, steps_per_epoch in sizes:
        steps = steps_per_epoch * cfg.epochs
        # 0.9 ** (steps / decay_steps) = final_lr_fraction at the last step.
        decay_steps = max(1, round(steps * math.log(0.9) / math.log(cfg.final_lr_fraction)))
        cells.append(Cell(opt, width, n, folds, batch, steps, decay_steps))
        experiments.append(Experiment(
            data=DataConfig(dataset=cfg.dataset, train_size=n, folds=folds,
                            data_seed=cfg.data_seed),
            model=ModelConfig(name="mlp", hidden=(width,)),
            optim=OptimConfig(name=opt, schedule="exponential", decay_steps=decay_steps,
                              decay_rate=0.9),
            train=TrainConfig(epochs=cfg.epochs, batch_size=batch, patience=cfg.patience,
                              monitor="val_loss")))
  grid = engine.Grid(learning_rates=cfg.learning_rates, seeds=tuple(range(cfg.seeds)),
                     hparams=(("decay_rate", tuple(SCHEDULE_DECAY[s] for s in cfg.schedules)),))
  groups = engine.plan_sweep(experiments, grid)
  return StudyPlan(config=cfg, cells=tuple(cells), groups=tuple(groups), grid=grid)


@dataclasses.dataclass
class StudyResult:
  """A finished study: the sweep, its table, and how long it took."""

  plan: StudyPlan
  sweep: SweepResult
  rows: list[CellRow]
  wall_s: float


def study_rows(plan: StudyPlan, sweep: SweepResult) -> list[CellRow]:
  """The study's table: one `CellRow` per (cell, schedule), from the sweep's aggregates."""
  cfg = plan.config
  rows = []
  for gi, cell in enumerate(plan.cells):
    for schedule in cfg.schedules:
      rate = SCHEDULE_DECAY[schedule]
      entries = [a for a in sweep.aggregates
                 if a["group"] == gi and math.isclose(a["decay_rate"], rate, rel_tol=1e-6)]
      rows.append(cell_row(
          optimizer=cell.optimizer, width=cell.width, schedule=schedule,
          train_size=cell.train_size, runs=max(a["n_total"] for a in entries), steps=cell.steps,
          lrs=[a["learning_rate"] for a in entries], mean=[a["mean"] for a in entries],
          ci95=[a["ci95"] for a in entries], diverged=[a["diverged"] for a in entries],
          reference_lr=cfg.reference_lr, tolerance=cfg.tolerance))
  return rows


def run_study(plan: StudyPlan) -> StudyResult:
  """Runs every compile group of a planned study and builds its table."""
  from lr_jax.results import SweepResult
  t0 = time.perf_counter()
  outputs, _ = run_groups(plan.groups)
  sweep = SweepResult.from_groups(plan.groups, outputs, grid=plan.grid)
  return StudyResult(plan=plan, sweep=sweep, rows=study_rows(plan, sweep),
                     wall_s=time.perf_counter() - t0)


def ci_band(mean: Sequence[float], ci95: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """[P] lower and upper edges of a 95% band of accuracies, clipped to [0, 1]."""
  mean, ci = np.array(mean, float), np.nan_to_num(np.array(ci95, float))
  return np.clip(mean - ci, 0.0, 1.0), np.clip(mean + ci, 0.0, 1.0)


def study_table(rows: Sequence[CellRow], *, reference_lr: float = 1e-4,
                tolerance: float = 0.01) -> str:
  """The study's Markdown table, one line per cell."""
  ref = report.format_lr(reference_lr)
  headers = ["optimizer", "model", "schedule", "n", "runs", "best LR", "accuracy ± 95% CI",
             f"accuracy at lr={ref}", f"LRs within {tolerance:g} of best", "diverged runs"]
  body = []
  for r in rows:
    edge = " (edge)" if r.best_at_edge else ""
    span = (f"{report.format_lr(r.near_lo)} – {report.format_lr(r.near_hi)} ({r.num_near})"
            if r.num_near else "n/a")
    body.append([r.optimizer, _model(r.width), r.schedule, r.train_size, r.runs,
                 report.format_lr(r.best_lr) + edge, report.format_ci(r.best_mean, r.best_ci),
                 report.format_ci(r.ref_mean, r.ref_ci), span, sum(r.diverged)])
  return report.markdown_table(headers, body, align=["l", "l", "l"] + ["r"] * 7)


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
  from lr_jax.results import write_outputs
  cfg, rows = study.plan.config, study.rows
  write_outputs(study.sweep, out_dir)
  figures = []
  for opt in cfg.optimizers:
    panels = {}
    for width in cfg.widths:
      for schedule in cfg.schedules:
        curves = [report.Curve(f"n={r.train_size}", np.array(r.lrs), np.array(r.mean),
                               *ci_band(r.mean, r.ci95))
                  for r in sorted(rows, key=lambda r: r.train_size)
                  if r.line == (opt, width, schedule)]
        panels[f"{opt}, {_model(width)}, {schedule}"] = curves
    name = f"sensitivity_{opt}.png"
    report.plot_lr_sensitivity(
        os.path.join(out_dir, name), panels, reference_lr=cfg.reference_lr,
        legend_title="training examples",
        suptitle=f"{opt}: mean best validation accuracy vs learning rate (band: 95% CI)")
    figures.append((name, f"LR sensitivity, {opt}"))
  panels = {}
  for width in cfg.widths:
    for schedule in cfg.schedules:
      curves = []
      for opt in cfg.optimizers:
        line = sorted((r for r in rows if r.line == (opt, width, schedule)),
                      key=lambda r: r.train_size)
        curves.append(report.Curve(
            opt, np.array([r.train_size for r in line]), np.array([r.best_lr for r in line]),
            np.array([r.near_lo for r in line]), np.array([r.near_hi for r in line])))
      panels[f"{_model(width)}, {schedule}"] = curves
  report.plot_best_lr(
      os.path.join(out_dir, "best_lr.png"), panels,
      lr_range=(cfg.learning_rates[0], cfg.learning_rates[-1]),
      suptitle=f"best learning rate vs training-set size (band: LRs within {cfg.tolerance:g} "
               "of the best)")
  figures.insert(0, ("best_lr.png", "best learning rate vs training-set size"))

  sentences = conclusion(rows, reference_lr=cfg.reference_lr, tolerance=cfg.tolerance)
  cells = study.plan.cells
  keras_final = {c.train_size: 0.9 ** (c.steps / 1000) for c in cells}
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
      f"- training: up to {cfg.epochs} epochs, batch {cfg.batch_size} (the whole training fold "
      "where it is smaller, as Keras), "
      f"early stopping on the validation loss (patience {cfg.patience}, best epoch restored); "
      "score: best validation accuracy on the held-out fold",
      f"- schedules: {', '.join(cfg.schedules)}. Exponential decay is Keras' "
      "ExponentialDecay, lr * 0.9^(step / decay_steps), with decay_steps chosen per cell so "
      f"that the rate falls to {cfg.final_lr_fraction:g}x its peak at the last epoch "
      f"(decay_steps = steps x ln 0.9 / ln {cfg.final_lr_fraction:g}; from "
      f"{min(c.decay_steps for c in cells)} at n={sizes[0]} to "
      f"{max(c.decay_steps for c in cells)} at n={sizes[-1]}). The article's decay_steps=1000 "
      f"would end at {keras_final[sizes[0]]:.3f}x the peak at n={sizes[0]} "
      f"({min(c.steps for c in cells)} steps) and {keras_final[sizes[-1]]:.3f}x at "
      f"n={sizes[-1]} ({max(c.steps for c in cells)} steps): hardly a decay at all. "
      "Both schedules share one compiled program: constant is decay rate 1.0",
      f"- {len(study.plan.groups)} compile groups, {study.sweep.num_variants} training runs, "
      f"wall time {format_duration(study.wall_s)} ({study.wall_s:.0f} s) on "
      f"{os.cpu_count()} CPU cores",
  ])
  sections = [
      ("Conclusion", " ".join(sentences)),
      ("Setup", setup),
      ("Figures", "\n\n".join(report.image(f, alt) for f, alt in figures)),
      ("Table", "One line per cell. *best LR*: highest mean best-validation accuracy over the "
                "runs (a learning rate where any run diverged is not eligible); *(edge)*: at "
                "the end of the grid. *LRs within*: the smallest and largest learning rate whose "
                "mean is within the tolerance of the best, and how many grid points are.\n\n"
                + study_table(rows, reference_lr=cfg.reference_lr, tolerance=cfg.tolerance)),
      *extra,
  ]
  return report.write_report(out_dir, "Is a very small learning rate necessary with small data?",
                             sections)
