"""Planning the study: each cell's size, folds, batch, budget and grid; one compile group each."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lr_jax.config import DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig
from lr_jax.errors import ConfigError
from lr_jax.study.config import WITH_WEIGHT_DECAY, StudyConfig

if TYPE_CHECKING:  # The engine imports JAX: only the functions that run anything import it.
  from lr_jax.engine import Grid, Group


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
  schedules: tuple[str, ...] = ("constant",)  # the schedules the cell sweeps (traced)

  @property
  def arm(self) -> str:
    """"" for a factor line's cell; "label noise" or "regularisation" for an arm's."""
    return "label noise" if self.noisy else "regularisation" if self.regularised else ""


@dataclasses.dataclass(frozen=True)
class Line:
  """A line of the study: an (optimizer, width) at some training sizes, with the schedules
  (traced) and budgets (one group each, one program) it runs; `arm` as `Cell.arm`."""

  optimizer: str
  width: int
  schedules: tuple[str, ...]
  budgets: tuple[str, ...]
  sizes: tuple[int | None, ...]
  arm: str = ""


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


def regularised_line(cfg: StudyConfig) -> tuple[str, int] | None:
  """(optimizer family, width) of the regularisation arm, or None without one: the reference
  line's, Adam run as AdamW when weight decay is tuned (AdamW at weight decay 0 is Adam)."""
  if not cfg.regularisation or not cfg.regularisation_sizes:
    return None
  opt, width = cfg.optimizers[0], cfg.widths[0]
  if any(name == "weight_decay" for name, _ in cfg.regularisation):
    opt = WITH_WEIGHT_DECAY.get(opt, opt)
  return (opt, width)


def study_lines(cfg: StudyConfig) -> list[Line]:
  """The lines a study runs: its factors as unions around the reference line, or their product
  (`StudyConfig.design`), then its label-noise and regularisation arms on the reference line.

  Under "union" the reference line (each factor's first value) runs every schedule and budget
  at every size; each other optimizer and each other width is one more line with the
  reference's schedule and budget. The noise arm runs every budget (the fixed-steps budget
  is the one without early stopping on clean labels); the regularisation arm the reference
  budget.
  """
  opt, width, schedule, budget = cfg.reference
  sizes = cfg.train_sizes
  if cfg.design == "product":
    lines = [Line(o, w, cfg.schedules, cfg.budgets, sizes)
             for o in cfg.optimizers for w in cfg.widths]
  else:
    lines = [Line(opt, width, cfg.schedules, cfg.budgets, sizes)]
    lines += [Line(o, width, (schedule,), (budget,), sizes) for o in cfg.optimizers[1:]]
    lines += [Line(opt, w, (schedule,), (budget,), sizes) for w in cfg.widths[1:]]
  if cfg.noisy:
    lines.append(Line(opt, width, (schedule,), cfg.budgets, cfg.noise_sizes, "label noise"))
  if regularised_line(cfg):
    lines.append(Line(opt, width, (schedule,), (budget,), cfg.regularisation_sizes,
                      "regularisation"))
  return lines


def schedule_rates(cell: Cell) -> dict[str, float]:
  """The decay rate per step that is each schedule in a cell."""
  return {"constant": 1.0, "exponential": cell.decay_rate}


def cell_grid(cfg: StudyConfig, cell: Cell) -> Grid:
  """The dynamic axes of one cell: learning rates x seeds x its schedules [x label noise |
  x regularisation]. The constant schedule is the exponential one's decay rate 1.0."""
  from lr_jax import engine
  hparams = [("decay_rate", tuple(schedule_rates(cell)[s] for s in cell.schedules))]
  if cell.noisy:
    hparams.append(("label_noise", cfg.label_noise))
  if cell.regularised:
    hparams += list(cfg.regularisation)
  return engine.Grid(learning_rates=cfg.learning_rates, seeds=tuple(range(cfg.seeds)),
                     hparams=tuple(hparams))


def plan_study(cfg: StudyConfig) -> StudyPlan:
  """Checks the study and plans one compile group per (line, size, budget) (`study_lines`).

  Label noise and regularisation are traced axes of their arms' groups, the schedules of
  every group (`cell_grid`). The budgets of a line's size differ only in traced numbers
  (`train.Budget`, the decay rate), so they run one compiled program, planned one after
  another.

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
  sizes = {n: _size_plan(dataset, cfg, n, cfg.test_fraction if _tested(cfg, n) else None)
           for n in cfg.train_sizes}
  resolved = [s[0] for s in sizes.values()]
  if len(set(resolved)) != len(resolved):
    raise ConfigError(f"train sizes {cfg.train_sizes} name the same size twice ({resolved})")
  cells, groups, calls = [], [], []
  for line in study_lines(cfg):
    regularised = line.arm == "regularisation"
    family = regularised_line(cfg)[0] if regularised else line.optimizer
    for asked in line.sizes:
      n, folds, batch, steps_per_epoch, fewest = sizes[asked]
      call = epochs_per_call([budget_plan(cfg, b, steps_per_epoch, fewest)[0]
                              for b in line.budgets], steps_per_epoch)
      for budget in line.budgets:
        epochs, max_steps, patience, steps = budget_plan(cfg, budget, steps_per_epoch, fewest)
        tested = _tested(cfg, asked)
        cell = Cell(line.optimizer, line.width, n, folds, batch, steps,
                    cfg.final_lr_fraction ** (1 / steps), budget, epochs,
                    regularised=regularised, noisy=line.arm == "label noise", tested=tested,
                    family=family if family != line.optimizer else "",
                    schedules=line.schedules)
        experiment = Experiment(
            data=DataConfig(dataset=cfg.dataset, train_size=n, folds=folds,
                            data_seed=cfg.data_seed,
                            test_fraction=cfg.test_fraction if tested else None),
            model=ModelConfig(name="mlp", hidden=(line.width,)),
            optim=OptimConfig(name=family, schedule="exponential", decay_steps=1),
            train=TrainConfig(epochs=epochs, batch_size=batch, patience=patience,
                              monitor="val_loss", max_steps=max_steps))
        cells.append(cell)
        planned = engine.plan_sweep([experiment], cell_grid(cfg, cell))
        groups += planned
        calls += [call] * len(planned)
  axes = [("decay_rate", tuple(sorted({schedule_rates(c)[s] for c in cells
                                       for s in c.schedules})))]
  if any(c.noisy for c in cells):
    axes.append(("label_noise", cfg.label_noise))
  if any(c.regularised for c in cells):
    axes += list(cfg.regularisation)
  grid = engine.Grid(learning_rates=cfg.learning_rates, seeds=tuple(range(cfg.seeds)),
                     hparams=tuple(axes))
  return StudyPlan(config=cfg, cells=tuple(cells), groups=tuple(groups), grid=grid,
                   call_epochs=tuple(calls))


@dataclasses.dataclass(frozen=True)
class PlanCost:
  """What a planned study costs before it trains: counted from the plan alone.

  Attributes:
    groups: compile groups (one per line, size and budget).
    programs: distinct compiled programs (a line's budgets at one size share one).
    runs: training runs (variants), every group's.
    tflop: float32 TFLOP of the training and validation matmuls if every run trains to the
      end of its budget (6 x multiply-adds per training example, 2 per validation example):
      an upper bound where early stopping fires first.
    steps: optimizer steps of the longest run of each group, summed: the sequential work a
      step's fixed costs scale with.
  """

  groups: int
  programs: int
  runs: int
  tflop: float
  steps: int

  def seconds(self, rate: StudyRate) -> float:
    """The wall time this plan takes at most at `rate` (compiles, steps, arithmetic)."""
    return (self.programs * rate.compile_s + self.steps * rate.step_s
            + self.tflop * 1e12 / rate.flops)


@dataclasses.dataclass(frozen=True)
class StudyRate:
  """How fast a machine runs the study: seconds per compiled program, per sequential step,
  and float32 FLOP/s of the training arithmetic (`run.measure_rate` measures the last)."""

  compile_s: float
  step_s: float
  flops: float


def group_macs(group: Group) -> float:
  """Multiply-adds of one example through a compile group's model (an MLP's weights)."""
  exp = group.experiment
  if group.model is not None or exp.model.name != "mlp":
    return 1.0
  widths = [int(np.prod(group.dataset.x.shape[1:])), *exp.model.hidden,
            max(group.dataset.num_classes, 1)]
  return float(sum(a * b for a, b in zip(widths[:-1], widths[1:])))


def group_work(group: Group) -> float:
  """Training work of a planned compile group in example-weights if every run trains to the
  end of its budget: variants x examples x epochs x `group_macs`, validation counted at a
  third of an example's training cost (a forward pass only)."""
  splits, exp = group.splits, group.experiment
  per_epoch = splits.train_idx.shape[1] + splits.val_idx.shape[1] / 3
  variants = len(group.seeds) * len(group.points["learning_rate"])
  return float(variants * per_epoch * exp.train.epochs * group_macs(group))


def plan_cost(plan: StudyPlan) -> PlanCost:
  """Counts a planned study's groups, programs, runs, TFLOP and sequential steps.

  A program is one (compile key, variants, call length): `engine.programs`' cache key with
  the shapes it traces at."""
  from lr_jax.engine.programs import _compile_key
  programs = set()
  runs = steps = 0
  work = 0.0
  for cell, group, call in zip(plan.cells, plan.groups,
                               plan.call_epochs or (0,) * len(plan.groups)):
    variants = len(group.seeds) * len(group.points["learning_rate"])
    programs.add((_compile_key(group), variants, call))
    runs += variants
    work += group_work(group)
    steps += cell.steps
  return PlanCost(groups=len(plan.groups), programs=len(programs), runs=runs,
                  tflop=6 * work / 1e12, steps=steps)
