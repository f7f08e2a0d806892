"""A group's programs: its static signature, the trainer and initializers compiled once."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from lr_jax import hparams as hparams_lib
from lr_jax import optim as optim_lib
from lr_jax.config import DataConfig, Experiment, TrainConfig
from lr_jax.engine.plan import Group, _num_outputs
from lr_jax.models import Flat, Model, build_model, flattened
from lr_jax.optim import SCHEDULES
from lr_jax.train import DataArrays, Loss, Metrics, initial_params, make_trainer


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
def _flat_model(model_cfg, model: Model | None, num_outputs: int,
                feature_shape: tuple[int, ...]) -> Flat:
  """The model the engine trains: the user's or the built-in one, its parameters one vector."""
  if model is None:
    model = build_model(model_cfg, num_outputs, feature_shape)
  return flattened(model)


def _group_model(group: Group) -> Flat:
  # The model of the compile key (`_compiled`'s): one initializer for every dropout default.
  return _flat_model(_without_defaults(group.experiment).model, group.model,
                     _num_outputs(group.dataset), group.dataset.feature_shape)


@functools.lru_cache(maxsize=32)
def _compiled(experiment: Experiment, model: Model | None, task: str, num_outputs: int,
              feature_shape: tuple[int, ...], n_max: int, loss: Loss | None = None,
              metrics: Metrics = (), namespaces: tuple[tuple[str, str], ...] = ()):
  """The trainer of a static signature and its jitted functions, built once per process.

  Keyed by the static signature only, so a new learning rate (or seed, or grid of the same
  size) reuses the compiled program instead of tracing again; a user loss or metric is part
  of it (by identity), so another one never reuses a program traced with the first.
  `namespaces` is `(name, namespace)` of each number the group's points trace.
  """
  flat = _flat_model(experiment.model, model, num_outputs, feature_shape)
  trainer = make_trainer(experiment, flat, task=task, n_max=n_max, loss=loss, metrics=metrics,
                         namespaces=dict(namespaces), feature_shape=feature_shape)
  init = jax.jit(trainer.init, compiler_options=compiler_options())
  run = jax.jit(trainer.run, static_argnames="num_epochs", donate_argnums=0,
                compiler_options=compiler_options())
  return trainer, init, run


@functools.lru_cache(maxsize=32)
def _compiled_flat(*key):
  """The trainer's run over a compacted population: W variants, each its own stream of one
  point (its own seed, fold and hyperparameters), so any set of survivors is rectangular.

  Its state has `epoch` [W] and variant leaves [W, 1, 1, ...]; hyperparameters, seeds and
  folds are [W, 1]; its history leaves [E, W, 1, 1]. A variant's minibatches depend only on
  its seed and fold, so it trains as it would in its chunk, to float32 rounding.
  """
  trainer = _compiled(*key)[0]

  def run_flat(state, hparams_W, seeds_W, folds_W, data, budget, num_epochs):
    one = lambda st, hp, s, f: trainer.run(st, hp, s, f, data, budget, num_epochs)
    return jax.vmap(one, out_axes=(0, 1))(state, hparams_W, seeds_W, folds_W)

  return jax.jit(run_flat, static_argnames="num_epochs", donate_argnums=0,
                 compiler_options=compiler_options())


optim_lib.on_reregister(_compiled.cache_clear)
optim_lib.on_reregister(_compiled_flat.cache_clear)


@functools.lru_cache(maxsize=32)
def _compiled_init(flat: Flat):
  """`seed -> params` of a model, jitted once per process for every group with that model."""
  return jax.jit(functools.partial(initial_params, flat.model), compiler_options=compiler_options())


def _init_fn(group: Group):
  return _compiled_init(_group_model(group))


def stream_params(group: Group, seeds: np.ndarray) -> object:
  """Initial params of streams with these seeds, leaves [S, ...] on the host."""
  init = _init_fn(group)
  by_seed = {int(s): jax.device_get(init(np.int32(s))) for s in dict.fromkeys(seeds.tolist())}
  return jax.tree_util.tree_map(lambda *a: np.stack(a), *[by_seed[int(s)] for s in seeds])


def _init_shape(group: Group, trainer, points: dict[str, np.ndarray], num_streams: int):
  """The shapes of `trainer.init`'s state for `num_streams` streams and these points."""
  params = jax.eval_shape(_init_fn(group), np.int32(0))
  params_S = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct((num_streams,) + a.shape, a.dtype), params)
  return jax.eval_shape(trainer.init, params_S, points, np.zeros(num_streams, np.int32),
                        _data_arrays(group))


def _compile_key(group: Group) -> tuple:
  """The static signature of a group: what `_compiled` is keyed by."""
  # The data config shapes nothing beyond what the key already holds (task, sizes), so two
  # data seeds or subsamples of equal size share one program; likewise the config fields that
  # only give defaults of dynamic numbers (decay_rate, dropout, ...): the points carry them,
  # and which numbers are traced (an off axis is not) is the key's last part. The budget
  # (epochs, patience, step cap, min_delta, divergence factor) is traced too (`train.Budget`),
  # except the epochs of a schedule whose shape depends on the run's length.
  exp = group.experiment
  return (_without_defaults(exp), group.model, group.dataset.task, _num_outputs(group.dataset),
          group.dataset.feature_shape, group.splits.train_idx.shape[1], group.loss, group.metrics,
          tuple((name, axis.namespace) for name, axis in _group_axes(group).items()
                if name in group.points))


def _without_defaults(exp: Experiment) -> Experiment:
  """The experiment with every config field that is only a dynamic number's default, or the
  traced budget, reset."""
  train = TrainConfig()
  changes = {"train__patience": train.patience, "train__max_steps": train.max_steps,
             "train__min_delta": train.min_delta,
             "train__divergence_factor": train.divergence_factor}
  if not SCHEDULES[exp.optim.schedule].horizon:
    changes["train__epochs"] = train.epochs
  for axis in hparams_lib.catalog().values():
    if axis.spec.field:
      part, _, field = axis.spec.field.partition(".")
      default = getattr(type(getattr(exp, part))(), field)
      changes[f"{part}__{field}"] = default
  return dataclasses.replace(exp.replace(**changes), data=DataConfig())


def _group_axes(group: Group) -> dict[str, hparams_lib.Axis]:
  return hparams_lib.axes(group.experiment, task=group.dataset.task,
                          feature_shape=group.dataset.feature_shape, model=group.model)


def _data_arrays(group: Group) -> DataArrays:
  return DataArrays.of(group.dataset, group.splits)
