"""The host shell: plans compile groups, places variants on devices, runs epochs in chunks.

    result = run_sweep(Experiment(...), Grid(learning_rates=(1e-4, 1e-3), seeds=(0, 1, 2)))

Everything traced lives in `lr_jax.train`; this module only decides shapes, moves arrays and
logs progress. All input checks run in `plan_sweep`, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lr_jax import data as data_lib
from lr_jax.config import DataConfig, Experiment, OptimConfig, check_learning_rates, check_positive
from lr_jax.errors import ConfigError
from lr_jax.models import Model, build_model
from lr_jax.optim import SCHEDULES, dynamic_hparams
from lr_jax.results import SweepResult
from lr_jax.train import DataArrays, final_params, make_trainer


@dataclasses.dataclass(frozen=True)
class Grid:
  """The dynamic axes of a sweep; their product is the variant axis of every compile group.

  Attributes:
    learning_rates: peak learning rates.
    seeds: training seeds (init and minibatch order; the data split has its own `data_seed`).
    hparams: other per-variant numbers of the optimizer, e.g. `(("weight_decay", (0, 1e-4)),)`;
      a name the optimizer does not have is refused, one it has but not listed takes its
      default (`lr_jax.optim.OPTIMIZERS`).
  """

  learning_rates: tuple[float, ...] = (1e-3,)
  seeds: tuple[int, ...] = (0,)
  hparams: tuple[tuple[str, tuple[float, ...]], ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "learning_rates", check_learning_rates(self.learning_rates))
    seeds = tuple(self.seeds)
    if not seeds:
      raise ConfigError("the seed list is empty; give at least one seed")
    for s in seeds:
      check_positive("seed", s, integer=True, allow_zero=True)
    if len(set(seeds)) != len(seeds):
      raise ConfigError(f"seeds must be distinct, got {seeds}")
    object.__setattr__(self, "seeds", seeds)
    hparams = tuple((str(k), tuple(float(x) for x in v)) for k, v in dict(self.hparams).items())
    for name, values in hparams:
      if not values:
        raise ConfigError(f"hyperparameter {name!r} has an empty list of values")
      for x in values:
        check_positive(name, x, allow_zero=True)
    object.__setattr__(self, "hparams", hparams)


@dataclasses.dataclass(frozen=True)
class Group:
  """One compile group, planned and checked: a static configuration and its variants."""

  experiment: Experiment
  dataset: data_lib.Dataset
  splits: data_lib.Splits
  model: Model | None            # a user model; None builds the experiment's ModelConfig
  points: dict[str, np.ndarray]  # name -> [H] float64; learning_rate first
  seeds: np.ndarray              # [S] int32, streams are seeds x folds (seed-major)
  folds: np.ndarray              # [S] int32


def _points(experiment: Experiment, grid: Grid) -> dict[str, np.ndarray]:
  defaults = dynamic_hparams(experiment.optim)
  extra = dict(grid.hparams)
  unknown = sorted(set(extra) - set(defaults))
  if unknown:
    valid = ", ".join(k for k in defaults if k != "learning_rate") or "none"
    raise ConfigError(
        f"optimizer {experiment.optim.name!r} with schedule {experiment.optim.schedule!r} has "
        f"no hyperparameter {unknown[0]!r}; "
        f"valid choices: {valid}")
  axes = {"learning_rate": grid.learning_rates}
  axes.update({k: extra.get(k, (v,)) for k, v in defaults.items() if k != "learning_rate"})
  combos = list(itertools.product(*axes.values()))
  # float64 on the host, so results report the values as given; float32 on the device.
  return {k: np.array([c[i] for c in combos], np.float64) for i, k in enumerate(axes)}


@functools.lru_cache(maxsize=8)
def _load(data_cfg) -> data_lib.Dataset:
  return data_lib.load_dataset(data_cfg)


def plan_sweep(experiments: Experiment | Sequence[Experiment], grid: Grid,
               model: Model | None = None) -> list[Group]:
  """Checks every input and plans one compile group per distinct experiment.

  Args:
    experiments: one static configuration or several (duplicates are merged).
    grid: the dynamic axes.
    model: a user model (`lr_jax.models.from_linen` / `from_nnx`) used instead of the
      experiments' built-in `ModelConfig`.

  Returns:
    The groups, in the order given.

  Raises:
    ConfigError: on any bad input, before anything is compiled.
  """
  if isinstance(experiments, Experiment):
    experiments = [experiments]
  experiments = list(dict.fromkeys(experiments))
  if not experiments:
    raise ConfigError("no experiments to run; give at least one configuration")
  groups = []
  for exp in experiments:
    dataset = _load(dataclasses.replace(exp.data, train_size=None, folds=None))
    splits = data_lib.make_splits(dataset, exp.data)
    smallest = int(splits.train_sizes.min())
    if exp.train.batch_size > smallest:
      raise ConfigError(
          f"batch_size {exp.train.batch_size} is larger than the training set ({smallest} "
          f"examples); valid choices: 1..{smallest}, or 0 for full batch")
    if dataset.task == "regression" and exp.train.monitor == "val_accuracy":
      raise ConfigError(
          f"monitor 'val_accuracy' needs a classification data set, {dataset.name!r} is "
          "regression; valid choice: val_loss")
    if model is None:  # Build once here so a bad model/data pairing is refused before compiling.
      build_model(exp.model, _num_outputs(dataset), dataset.feature_shape)
    folds = range(splits.num_folds) if exp.data.folds else [0]
    streams = [(s, f) for s in grid.seeds for f in folds]
    groups.append(Group(
        experiment=exp, dataset=dataset, splits=splits, model=model,
        points=_points(exp, grid),
        seeds=np.array([s for s, _ in streams], np.int32),
        folds=np.array([f for _, f in streams], np.int32)))
  return groups


def _num_outputs(dataset: data_lib.Dataset) -> int:
  return dataset.num_classes if dataset.task == "classification" else 1


@functools.lru_cache(maxsize=32)
def _compiled(experiment: Experiment, model: Model | None, task: str, num_outputs: int,
              feature_shape: tuple[int, ...], n_max: int):
  """The trainer of a static signature and its jitted functions, built once per process.

  Keyed by the static signature only, so a new learning rate (or seed, or grid of the same
  size) reuses the compiled program instead of tracing again.
  """
  if model is None:
    model = build_model(experiment.model, num_outputs, feature_shape)
  trainer = make_trainer(experiment, model, task=task, n_max=n_max)
  init = jax.jit(trainer.init)
  run = jax.jit(trainer.run, static_argnames="num_epochs", donate_argnums=0)
  return trainer, init, run


def _compile_key(group: Group) -> tuple:
  """The static signature of a group: what `_compiled` is keyed by."""
  # The data config shapes nothing beyond what the key already holds (task, sizes), so two
  # data seeds or subsamples of equal size share one program; likewise the OptimConfig fields
  # that only give defaults of dynamic hyperparameters (the decay rate).
  exp = group.experiment
  optim = dataclasses.replace(
      exp.optim, **{field: getattr(OptimConfig(), field)
                    for field in SCHEDULES[exp.optim.schedule].hparams.values()})
  return (dataclasses.replace(exp, data=DataConfig(), optim=optim), group.model, group.dataset.task, _num_outputs(group.dataset),
          group.dataset.feature_shape, group.splits.train_idx.shape[1])


def _mesh() -> Mesh | None:
  devices = jax.devices()
  return Mesh(np.array(devices), ("points",)) if len(devices) > 1 else None


def run_group(group: Group, *, log_every_s: float = 10.0) -> dict:
  """Trains every variant of one compile group; returns its final state and history on the host.

  Returns:
    A dict with `variants` (the final `VariantState`, numpy leaves [S, H, ...]), `history`
    (name -> [S, H, E]), `steps_per_epoch` and `compile_s` / `run_s` timings.
  """
  exp = group.experiment
  trainer, init, run = _compiled(*_compile_key(group))
  num_points = len(group.points["learning_rate"])
  mesh = _mesh()
  pad = (-num_points) % mesh.size if mesh else 0
  # Padding repeats the last point: a valid variant whose rows are dropped below.
  points = {k: np.concatenate([v, np.repeat(v[-1:], pad)]).astype(np.float32)
            for k, v in group.points.items()}
  splits = group.splits
  data = DataArrays(
      x=group.dataset.x, y=group.dataset.y, train_idx=splits.train_idx,
      train_mask=splits.train_mask, val_idx=splits.val_idx, val_mask=splits.val_mask,
      mean=splits.mean, std=splits.std)
  if mesh is not None:
    replicated = NamedSharding(mesh, P())
    data = jax.device_put(data, replicated)
    points = jax.device_put(points, NamedSharding(mesh, P("points")))
    seeds, folds = jax.device_put((group.seeds, group.folds), replicated)
  else:
    data, points, seeds, folds = jax.device_put((data, points, group.seeds, group.folds))

  chunk = exp.train.chunk_epochs or trainer.num_epochs
  chunk = min(chunk, trainer.num_epochs)
  t0 = time.perf_counter()
  state = init(points, seeds, folds, data)
  jax.block_until_ready(state)
  history_chunks = []
  compile_s = None
  last_log = t0
  while True:
    state, hist = run(state, points, seeds, folds, data, num_epochs=chunk)
    history_chunks.append(jax.device_get(hist))
    epoch = int(state.epoch)
    active = int(jnp.sum(~state.variants.stopped & ~state.variants.diverged))
    now = time.perf_counter()
    if compile_s is None:
      compile_s = now - t0
    done = epoch >= trainer.num_epochs or active == 0
    if done or now - last_log >= log_every_s:
      rate = epoch / (now - t0)
      eta = (trainer.num_epochs - epoch) / rate if rate > 0 and not done else 0.0
      logging.info("%s: epoch %d/%d, %d/%d variants active, %.1f epochs/s, ETA %.0fs",
                   exp.optim.name, epoch, trainer.num_epochs, active,
                   state.variants.stopped.size, rate, eta)
      last_log = now
    if done:
      break
  run_s = time.perf_counter() - t0
  variants = jax.device_get(state.variants)
  variants = variants._replace(params=final_params(variants, exp.train.restore_best))
  # [E, S, H] chunks -> [S, H, E], real epochs only, padding points dropped.
  history = {name: np.moveaxis(np.concatenate([getattr(h, name) for h in history_chunks]), 0, -1)
             [:, :num_points, :trainer.num_epochs]
             for name in history_chunks[0]._fields}
  variants = jax.tree_util.tree_map(lambda a: np.asarray(a)[:, :num_points], variants)
  params = jax.tree_util.tree_map(
      lambda a: a.reshape((-1,) + a.shape[2:]), variants.params)  # [S*H, ...], stream-major
  return {"variants": variants, "params": params, "history": history, "steps_per_epoch": trainer.steps_per_epoch,
          "compile_s": compile_s, "run_s": run_s, "epochs_executed": epoch}


def run_sweep(experiments: Experiment | Sequence[Experiment], grid: Grid, *,
              model: Model | None = None, target: float | None = None) -> SweepResult:
  """Runs a learning-rate sweep: every experiment x every grid point x seed x fold.

  Args:
    experiments: static configurations; each distinct one is compiled once.
    grid: learning rates, seeds and other dynamic hyperparameters.
    model: optional user model replacing the built-in one (see `lr_jax.models`).
    target: a validation metric to reach (accuracy for classification, loss for regression),
      for epochs- and steps-to-target.

  Returns:
    A `SweepResult`: one row per variant, histories, aggregates and the best learning rate.
  """
  return run_planned(plan_sweep(experiments, grid, model), grid, target=target)


def run_planned(groups: Sequence[Group], grid: Grid, *, target: float | None = None) -> SweepResult:
  """Runs groups from `plan_sweep` (so a script can check all input before compiling)."""
  outputs = []
  for i, group in enumerate(groups):
    logging.info("compile group %d/%d: %s, %d streams x %d points", i + 1, len(groups),
                 group.experiment.optim.name, len(group.seeds), len(group.points["learning_rate"]))
    outputs.append(run_group(group))
  return SweepResult.from_groups(groups, outputs, grid=grid, target=target)


