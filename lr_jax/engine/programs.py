"""A group's programs: its static signature, the trainer and initializers compiled once."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import numpy as np

from lr_jax import hparams as hparams_lib
from lr_jax import optim as optim_lib
from lr_jax.config import Experiment, ModelConfig, OptimConfig, TrainConfig
from lr_jax.engine.plan import Group, _num_outputs
from lr_jax.models import Model, build_model
from lr_jax.optim import SCHEDULES
from lr_jax.train import DataArrays, Hparams, Loss, Metrics, initial_params, make_trainer


def compiler_options() -> dict | None:
  """XLA options of lr_jax's programs on a CPU.

  LLVM optimization level 1 instead of 2. Measured on a study cell and workload P (2-core
  CPU): XLA compiles them 20-30% faster (the trainer 3.6 -> 2.8 s, the initializers 1.5 ->
  0.5 s); they run as fast within the noise (workload P at N=64: 0.078 vs 0.075 s per
  variant, medians of two runs each, level 1 vs 2).

  Copy insertion with region analysis: without it XLA cannot see that the step reads the old
  Adam moments before it overwrites them in place, and copies both every minibatch step (1.2
  MB per step at workload P's 16-variant chunk).
  """
  if jax.default_backend() != "cpu":
    return None
  return {"xla_backend_optimization_level": 1,
          "xla_cpu_copy_insertion_use_region_analysis": True}


@functools.lru_cache(maxsize=32)
def _engine_model(model_cfg, model: Model | None, num_outputs: int,
                  feature_shape: tuple[int, ...]) -> Model:
  """The model the engine trains: the user's, or the built-in one (built once per
  configuration, so that its programs are built once too)."""
  if model is None:
    model = build_model(model_cfg, num_outputs, feature_shape)
  return model


def _group_model(group: Group) -> Model:
  # The model of the compile key (`_compiled`'s): one initializer for every dropout default.
  return _engine_model(_without_defaults(group.experiment).model, group.model,
                       _num_outputs(group.dataset), tuple(group.dataset.feature_shape))


@functools.lru_cache(maxsize=32)
def _compiled(key: "ProgramKey", model: Model | None, loss: Loss | None = None,
              metrics: Metrics = (), traced: tuple = (), frozen_backbone: bool = False):
  """The trainer of a static signature and its jitted functions, built once per process.

  Keyed by the static signature only (`ProgramKey`), so a new learning rate (or seed, or grid
  of the same size) reuses the compiled program instead of tracing again; a user loss or
  metric is part of it (by identity), so another one never reuses a program traced with the
  first. `traced` is the structure of the points' tree (`traced_points`: which numbers they
  trace), which the trainer does not read (`jax.jit` would key its programs by it anyway):
  one trainer per program, so a trainer traces once. `frozen_backbone`: every point's
  `backbone_lr_scale` is 0, so the program skips the backbone's backward pass and optimizer
  state (a linear probe).
  """
  model = _engine_model(key.model, model, key.num_outputs, key.feature_shape)
  trainer = make_trainer(key.experiment(), model, task=key.task, n_max=key.n_max, loss=loss,
                         metrics=metrics, feature_shape=key.feature_shape,
                         frozen_backbone=frozen_backbone)
  init = jax.jit(trainer.init, compiler_options=compiler_options())
  run = jax.jit(trainer.run, static_argnames="num_epochs", donate_argnums=0,
                compiler_options=compiler_options())
  return trainer, init, run


optim_lib.on_reregister(_compiled.cache_clear)


@functools.lru_cache(maxsize=32)
def _compiled_init(model: Model):
  """`seed -> params` of a model, jitted once per process for every group with that model."""
  return jax.jit(functools.partial(initial_params, model), compiler_options=compiler_options())


def _init_fn(group: Group):
  return _compiled_init(_group_model(group))


def stream_params(group: Group, seeds: np.ndarray) -> object:
  """Initial params of streams with these seeds, leaves [S, ...] on the host."""
  init = _init_fn(group)
  by_seed = {int(s): jax.device_get(init(np.int32(s))) for s in dict.fromkeys(seeds.tolist())}
  return jax.tree_util.tree_map(lambda *a: np.stack(a), *[by_seed[int(s)] for s in seeds])


def traced_points(group: Group, columns: dict[str, np.ndarray]) -> Hparams:
  """A group's points columns (short name -> [H]) as the namespaced tree its program traces."""
  return hparams_lib.nest(columns, _group_axes(group))


def _init_shape(group: Group, trainer, points: Hparams, num_streams: int):
  """The shapes of `trainer.init`'s state for `num_streams` streams and these points (a tree)."""
  params = jax.eval_shape(_init_fn(group), np.int32(0))
  params_S = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct((num_streams,) + a.shape, a.dtype), params)
  return jax.eval_shape(trainer.init, params_S, points, np.zeros(num_streams, np.int32),
                        _data_arrays(group))


class ProgramKey(NamedTuple):
  """A program's static signature, as an allow-list: every field the traced functions read,
  and nothing else. Numbers the points or the budget trace are not in it (a dynamic number's
  config default, epochs, patience, the step cap, min_delta, the divergence factor), nor are
  host-only fields (`restore_best`, the data config): two groups that differ only there
  share one program. The engine's trainer and the LR finder key their programs by it.

  Attributes:
    model: the `ModelConfig`, its dynamic numbers' defaults reset.
    optim: the `OptimConfig`, likewise.
    batch_size: the minibatch size (a shape).
    monitor: what early stopping and the best epoch track (which code the epoch's end runs).
    horizon_epochs: the epochs of a schedule whose shape spans the run (`Schedule.horizon`);
      None for any other schedule.
    task, num_outputs, feature_shape, n_max: the data's shapes.
  """

  model: ModelConfig
  optim: OptimConfig
  batch_size: int
  monitor: str
  horizon_epochs: int | None
  task: str
  num_outputs: int
  feature_shape: tuple[int, ...]
  n_max: int

  @classmethod
  def of(cls, experiment: Experiment, dataset, n_max: int) -> "ProgramKey":
    """The key of an experiment on a data set whose folds train on `n_max` padded rows."""
    reset = _without_defaults(experiment)
    horizon = SCHEDULES[experiment.optim.schedule].horizon
    return cls(reset.model, reset.optim, experiment.train.batch_size, experiment.train.monitor,
               experiment.train.epochs if horizon else None, dataset.task,
               _num_outputs(dataset), tuple(dataset.feature_shape), int(n_max))

  def experiment(self) -> Experiment:
    """The experiment a program is built from: the key's fields, defaults elsewhere."""
    train = TrainConfig(batch_size=self.batch_size, monitor=self.monitor)
    if self.horizon_epochs is not None:
      train = dataclasses.replace(train, epochs=self.horizon_epochs)
    return Experiment(model=self.model, optim=self.optim, train=train)


def _compile_key(group: Group) -> tuple:
  """What `_compiled` is keyed by: the group's `ProgramKey`, its user model, loss and metrics
  (by identity), and which numbers its points trace (an off axis is not)."""
  key = ProgramKey.of(group.experiment, group.dataset, group.splits.train_idx.shape[1])
  tree = traced_points(group, group.points)
  scales = group.points.get("backbone_lr_scale")
  return (key, group.model, group.loss, group.metrics,
          tuple((namespace, tuple(numbers)) for namespace, numbers in tree.items()),
          scales is not None and not np.any(scales))


def _without_defaults(exp: Experiment) -> Experiment:
  """The experiment with every config field that is only a dynamic number's default reset."""
  changes = {}
  for axis in hparams_lib.catalog().values():
    if axis.spec.field:
      part, _, field = axis.spec.field.partition(".")
      default = getattr(type(getattr(exp, part))(), field)
      changes[f"{part}__{field}"] = default
  return exp.replace(**changes)


def _group_axes(group: Group) -> dict[str, hparams_lib.Axis]:
  return hparams_lib.axes(group.experiment, task=group.dataset.task,
                          feature_shape=group.dataset.feature_shape, model=group.model)


def _data_arrays(group: Group) -> DataArrays:
  return DataArrays.of(group.dataset, group.splits)
