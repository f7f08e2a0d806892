"""Running the study: its compile groups one after another, with progress and an ETA."""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from lr_jax.study.cells import CellRow
from lr_jax.study.plan import PlanCost, StudyPlan, StudyRate, group_work
from lr_jax.study.rows import study_rows

if TYPE_CHECKING:  # The engine imports JAX: only the functions that run anything import it.
  from lr_jax.engine import Group, RunOptions
  from lr_jax.results import SweepResult


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = max(0.0, seconds)
  return f"{seconds:.0f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


REFERENCE_RATE = StudyRate(compile_s=2.0, step_s=0.36e-3, flops=121e9)
"""The study's rate on the machine its defaults were sized on (2-core Intel Xeon with AVX-512,
7 Dec 2026, cold compilation cache): seconds per program, per sequential optimizer step of a
group, and FLOP/s of its arithmetic (`PlanCost.tflop` over the seconds a group trains), fitted
on the default study's groups (n = 25: 5000 one-step epochs in 5.4 s; all 1437 rows: 1.4
TFLOP in 13.4 s)."""
REFERENCE_MATMUL_FLOPS = 420e9
"""`matmul_flops()` on that machine, the same day: the yardstick a machine's rate scales by."""


def matmul_flops(size: int = 512, repeats: int = 20) -> float:
  """This machine's float32 matmul rate in FLOP/s: the median of a few timed [size, size]
  products, compiled once, after as many untimed ones (~0.2 s). The study's estimate scales its reference rate by it."""
  import jax
  import jax.numpy as jnp
  x = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  for _ in range(repeats):  # The first calls wake the thread pool: not timed.
    f(x).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(x).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * size**3 / float(np.median(times))


def machine_rate(flops: float | None = None) -> StudyRate:
  """`REFERENCE_RATE` scaled to this machine by its matmul rate (`matmul_flops`, measured
  unless given): arithmetic and per-step costs scale with it, compiling does not."""
  ratio = (flops if flops is not None else matmul_flops()) / REFERENCE_MATMUL_FLOPS
  return StudyRate(compile_s=REFERENCE_RATE.compile_s, step_s=REFERENCE_RATE.step_s / ratio,
                   flops=REFERENCE_RATE.flops * ratio)


def cost_text(cost: PlanCost, rate: StudyRate) -> str:
  """The plan's cost in one line, before anything trains."""
  return (f"plan: {cost.groups} compile groups in {cost.programs} programs, {cost.runs} "
          f"training runs, at most {cost.tflop:.1f} TFLOP; estimated "
          f"{format_duration(cost.seconds(rate))} on this machine ({rate.flops / 1e9:.0f} "
          f"GFLOP/s for the study's arithmetic, scaled by its matmul rate from the "
          f"{REFERENCE_RATE.flops / 1e9:.0f} measured on a 2-core AVX-512 CPU; early stopping "
          "usually ends the to-convergence groups sooner)")


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
  each = [options if n is None else dataclasses.replace(options, chunk_epochs=n)
          for n in (call_epochs or [None] * len(groups))]
  done: list[dict] = []
  outputs = []
  with engine.InTurn(groups, each) as in_turn:  # The next cell's program builds meanwhile.
    for i, group in enumerate(groups):
      logging.info("cell %d/%d: %s, %d streams x %d points", i + 1, len(groups),
                   describe_group(group), len(group.seeds), len(group.points["learning_rate"]))
      out = engine.run_group(group, index=i, options=each[i], in_turn=in_turn)
      outputs.append(out)
      epochs = group.experiment.train.epochs
      done.append({"work": works[i], "executed_fraction": out.epochs_executed / epochs,
                   "compile_s": out.compile_s, "run_s": out.run_s})
      elapsed = time.perf_counter() - t0
      eta = estimate_remaining(done, works[i + 1:])
      logging.info("cell %d/%d done in %s (compile %s), elapsed %s, ETA %s", i + 1,
                   len(groups), format_duration(out.run_s), format_duration(out.compile_s),
                   format_duration(elapsed), format_duration(eta))
  return outputs, time.perf_counter() - t0


@dataclasses.dataclass
class StudyResult:
  """A finished study: the sweep, its table, and how long it took."""

  plan: StudyPlan
  sweep: SweepResult
  rows: list[CellRow]
  wall_s: float


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
  sweep = _named_schedules(SweepResult.from_groups(plan.groups, outputs, grid=plan.grid))
  return StudyResult(plan=plan, sweep=sweep, rows=study_rows(plan, sweep),
                     wall_s=time.perf_counter() - t0)


def _named_schedules(sweep):
  """The sweep with each row's `schedule` as the study names it: one compile group holds both
  schedules as an exponential decay, and a decay rate of 1.0 is the constant one (results.csv
  said "exponential" for the rows the report calls constant)."""
  if "decay_rate" not in sweep.rows:
    return sweep
  rows = dict(sweep.rows)
  constant = np.isclose(np.asarray(rows["decay_rate"], np.float64), 1.0)
  rows["schedule"] = np.where(constant, "constant", np.asarray(rows["schedule"], object))
  return dataclasses.replace(sweep, rows=rows)
