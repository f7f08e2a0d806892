"""`lr_finder`: the range test's arguments checked, its program run over seeds, its result."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from absl import logging

from lr_jax import engine
from lr_jax.config import Experiment, TrainConfig, check_positive
from lr_jax.data import config_dict
from lr_jax.errors import ConfigError
from lr_jax.models import Model
from lr_jax import hparams as hparams_lib
from lr_jax.io import jsonable
from lr_jax.train import DataArrays
from lr_jax.finder.ramp import finder_learning_rates, finder_optim
from lr_jax.finder.program import _compiled
from lr_jax.finder.suggestions import SKIP_END, suggest
from lr_jax.finder.result import FinderResult

# The fewest steps: the suggestions skip the first tenth and the last `SKIP_END`.
MIN_STEPS = 10


def check_finder_args(lr_min: float, lr_max: float, num_steps: int, beta: float, *,
                      names: Sequence[str] = ("lr_min", "lr_max", "num_steps", "beta")) -> None:
  """Raises `ConfigError` for a bad range, step count or smoothing.

  Args:
    lr_min, lr_max, num_steps, beta: as `lr_finder`'s.
    names: how the message names the four values (a script passes its flag names).
  """
  n_min, n_max, n_steps, n_beta = names
  check_positive(n_min, lr_min)
  check_positive(n_max, lr_max)
  if lr_min >= lr_max:
    raise ConfigError(f"{n_min} must be < {n_max}, got {n_min}={lr_min!r} {n_max}={lr_max!r}")
  check_positive(n_steps, num_steps, integer=True)
  if num_steps < MIN_STEPS:
    raise ConfigError(f"{n_steps} must be >= {MIN_STEPS} (the suggestions skip the first "
                      f"tenth and the last {SKIP_END} steps), got {num_steps!r}")
  if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
    raise ConfigError(f"{n_beta} must be in [0, 1), got {beta!r}")


def lr_finder(experiment: Experiment, *, lr_min: float = 1e-7, lr_max: float = 10.0,
              num_steps: int = 200, seeds: Sequence[int] = (0, 1, 2), beta: float = 0.98,
              model: Model | None = None,
              hparams: Mapping[str, float] | None = None) -> FinderResult:
  """Runs the LR range test: one run per seed, all seeds in one compiled program.

  Args:
    experiment: data, model, optimizer family and batch size (see `finder_optim`; epochs and
      early stopping are not used). Fold 0's training rows are trained on.
    lr_min: the learning rate of the first step.
    lr_max: the learning rate of the last step.
    num_steps: K, minibatch steps (one learning rate each); at batch size B on N training
      examples they cover K * B / N epochs.
    seeds: training seeds; seed s starts from the trainer's initial parameters of seed s.
    beta: the decay of the loss's moving average.
    model: a user model (`lr_jax.models.from_linen` / `from_nnx`) instead of the experiment's.
    hparams: the experiment's other numbers (`lr_jax.hparams.axes`), short or qualified, e.g.
      `{"momentum": 0.95, "model.dropout_rate": 0.2}`: one value each, as a sweep's variant;
      unset ones take the experiment's defaults. Not the learning rate (the ramp) nor a
      schedule's numbers (the ramp replaces the schedule).

  Returns:
    A `FinderResult` with the curves and the suggested learning rates.

  Raises:
    ConfigError: on bad input, before anything is compiled.
  """
  check_finder_args(lr_min, lr_max, num_steps, beta)
  hparams = dict(hparams or {})
  catalog = hparams_lib.catalog()
  for name in hparams:  # The rest is checked by the planner, as a sweep's grid.
    axis = catalog.get(name.rpartition(".")[2]) if isinstance(name, str) else None
    if axis is not None and (axis.name == "learning_rate" or axis.namespace == "schedule"):
      raise ConfigError(
          f"the LR finder takes no {axis.namespace}.{axis.name}: its ramp sets the learning "
          "rate and replaces the schedule; valid choices: the experiment's optimizer, loss, "
          "model and data numbers")
  grid = engine.Grid(learning_rates=(lr_min,), seeds=tuple(seeds),
                     hparams=tuple((k, (v,)) for k, v in hparams.items()))
  # The planner makes every check the sweep makes (batch size, model against data, unknown
  # hyperparameters) and loads the data through the sweep's cache.
  group = engine.plan_sweep(experiment, grid, model)[0]
  dataset, splits = group.dataset, group.splits
  # Every number the points trace (an off one is not there), but the ramp's and the schedule's.
  axes = hparams_lib.axes(experiment, task=dataset.task, feature_shape=dataset.feature_shape,
                          model=model)
  extras = {k: np.float32(v[0]) for k, v in group.points.items()
            if k != "learning_rate" and axes[k].namespace != "schedule"}
  # The engine's allow-list signature, of the experiment with the finder's optimizer (its
  # ramp: no schedule, so no horizon), and the range test's own statics.
  program = engine.programs.ProgramKey.of(experiment, dataset, splits.train_idx.shape[1])
  program = program._replace(optim=finder_optim(program.optim), horizon_epochs=None,
                             monitor=TrainConfig().monitor)
  run = _compiled((program, num_steps, float(beta), tuple(extras)), model)
  ramp = np.array([lr_min, lr_max], np.float32)
  data = DataArrays.of(dataset, splits, slice(0, 1))  # Fold 0's training rows.
  logging.info("LR finder: %s on %s, %d seeds x %d steps, lr %.3g -> %.3g",
               experiment.optim.name, dataset.name, len(grid.seeds), num_steps, lr_min, lr_max)
  t0 = time.perf_counter()
  trace = jax.device_get(run(hparams_lib.nest(extras, axes), ramp,
                             np.asarray(grid.seeds, np.int32), data))
  elapsed = time.perf_counter() - t0
  lrs = finder_learning_rates(lr_min, lr_max, num_steps)
  smoothed = np.asarray(trace.smoothed, np.float64)
  result = FinderResult(
      lrs=lrs, losses=np.asarray(trace.loss, np.float64), smoothed=smoothed, seeds=grid.seeds,
      suggestions=suggest(lrs, smoothed),
      config={"experiment": jsonable(config_dict(experiment)),
              "model": model.name if model is not None else experiment.model.name,
              "lr_min": lr_min, "lr_max": lr_max, "num_steps": num_steps, "beta": beta,
              "hparams": {k: float(v) for k, v in extras.items()},
              "train_size": int(splits.train_sizes[0])},
      timings={"compile_run_s": elapsed})
  logging.info("LR finder: done in %.1fs; steps kept per seed %s; steepest %.3g, min/10 %.3g",
               elapsed, result.steps_kept.tolist(), result.suggestions["steepest"]["mean"],
               result.suggestions["min_div_10"]["mean"])
  return result
