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
