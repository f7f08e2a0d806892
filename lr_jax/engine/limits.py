"""Whether a group fits, from its shapes: steps in int32, one variant's memory, all variants'."""

from __future__ import annotations

import math

import jax
import numpy as np

from lr_jax import data as data_lib
from lr_jax import hparams as hparams_lib
from lr_jax.config import INT32_MAX, Experiment
from lr_jax.engine.grid import _ROW_BYTES
from lr_jax.engine.placement import _device_memory_bytes, _host_memory_bytes, _size
from lr_jax.errors import ConfigError
from lr_jax.models import Model, param_shapes
from lr_jax.optim import OPTIMIZERS, SCHEDULES, make_optimizer
from lr_jax.train import History, batching


def _check_steps(exp: Experiment, splits: data_lib.Splits) -> None:
  """Refuses a run whose optimizer step count does not fit the int32 the program counts it in.

  A variant counts its updates in int32 (`VariantState.steps_run`, optax's count), and a
  schedule with a horizon (cosine, warmup_cosine, onecycle) multiplies by epochs x steps per
  epoch when the program is built: past 2**31 - 1 that overflows while tracing (a traceback
  after the data is loaded), or wraps the count. `TrainConfig.max_steps` caps the updates of
  the other schedules; a horizon schedule's shape spans all the epochs whatever the cap.
  """
  train = exp.train
  n_max = int(splits.train_idx.shape[1])
  _, steps_per_epoch = batching(train.batch_size, n_max)
  total = train.epochs * steps_per_epoch
  horizon = SCHEDULES[exp.optim.schedule].horizon
  if total <= INT32_MAX or (train.max_steps and not horizon):
    return
  batch = f"batch_size={train.batch_size}" if train.batch_size else "full batch (batch_size=0)"
  valid = f"epochs <= {INT32_MAX // steps_per_epoch:,} at this batch size, or a larger batch_size"
  if horizon:
    why = (f"the {exp.optim.schedule!r} schedule's horizon, an int32 in the program (max_steps "
           "does not shorten it)")
  else:
    why = "a variant's step count, an int32"
    valid += f", or max_steps in 1..{INT32_MAX} to cap the updates"
  raise ConfigError(
      f"epochs={train.epochs:,} x {steps_per_epoch:,} steps per epoch ({batch}, {n_max:,} "
      f"training rows) = {total:,} optimizer steps, more than {INT32_MAX:,}, the most {why} "
      f"holds; valid: {valid}")


def _activation_bytes(exp: Experiment, dataset: data_lib.Dataset, splits: data_lib.Splits) -> int:
  """A variant's activations: a validation pass (`v_max` rows) and a quarter of the training
  rows through every layer of the built-in MLP's widths (`default_max_variants`)."""
  widths = sum(exp.model.hidden) + max(dataset.num_classes, 1)
  return 4 * widths * (splits.val_idx.shape[1] + splits.train_idx.shape[1] // 4)


def _tree_bytes(tree) -> int:
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree_util.tree_leaves(tree))


def _check_memory(exp: Experiment, model: Model, dataset: data_lib.Dataset,
                  splits: data_lib.Splits, columns: dict[str, tuple], *, num_seeds: int,
                  user_model: bool, num_metrics: int) -> None:
  """Refuses a group whose smallest unit cannot fit, from shapes alone (nothing allocated).

  Two units: one variant on the device (its parameters, their best copy, gradients, optimizer
  state, activations: what a chunk of one variant holds, `default_max_variants`' estimate),
  and the whole grid on the host, where the chunks wait between calls and the result is
  assembled (every variant's final state, its history, its result row). Each estimate is
  compared with the memory as a whole: a refusal means it cannot fit at all, not that it
  would be tight.

  Raises:
    ConfigError: one line naming the estimate, its parts and the memory it exceeds.
  """
  params = param_shapes(model)  # Shapes only: nothing compiles before --out is checked.
  param_bytes = _tree_bytes(params)
  n_max = int(splits.train_idx.shape[1])
  _, steps_per_epoch = batching(exp.train.batch_size, n_max)
  family = OPTIMIZERS.get(exp.optim.name)
  eval_bytes = param_bytes if family is not None and family.eval_params is not None else 0
  # Each validation row's outcome at the best, the last and the cross-fitted epoch
  # (`VariantState.best_outcomes`).
  outcome_bytes = 3 * int(splits.val_idx.shape[1]) * (
      1 if dataset.task == "classification" else 4)
  state = {"parameters": param_bytes, "best parameters": param_bytes,
           "optimizer state": 0, "validated parameters": eval_bytes,
           "validation outcomes": outcome_bytes}
  device = {**state, "gradients": param_bytes,
            "activations": _activation_bytes(exp, dataset, splits)}
  memory = _device_memory_bytes()
  host = _host_memory_bytes()
  num_points = math.prod(len(v) for v in columns.values())
  num_streams = num_seeds * splits.num_folds
  epochs = exp.train.epochs
  history = 4 * epochs * (len(History._fields) + num_metrics)
  variants = num_streams * num_points
  # The optimizer's state from its shapes, traced only where it could decide: it would have to
  # be over three times the rest (nine times the parameters) to matter otherwise, and tracing
  # calls the family's factory, which a sweep should do once, when it compiles.
  rest_host = variants * (sum(state.values()) + history + _ROW_BYTES)
  if 4 * sum(device.values()) > memory or (host is not None and 4 * rest_host > host):
    try:  # A family that cannot say counts none.
      make_tx = make_optimizer(exp.optim, exp.train.epochs * steps_per_epoch)
      known = hparams_lib.axes(exp, task=dataset.task, feature_shape=dataset.feature_shape,
                               model=model if user_model else None)
      hparams = hparams_lib.nest({k: np.float32(v[0]) for k, v in columns.items()}, known)
      with jax.log_compiles(False):
        opt_bytes = _tree_bytes(jax.eval_shape(lambda p, h: make_tx(h).init(p), params, hparams))
    except Exception:  # pylint: disable=broad-except
      opt_bytes = 0
    state["optimizer state"] = device["optimizer state"] = opt_bytes
  per_device = sum(device.values())
  if per_device > memory:
    if user_model:
      what, valid = f"the model {model.name!r}", "a smaller model"
    else:
      what = (f"ModelConfig(name={exp.model.name!r}, hidden={tuple(exp.model.hidden)}) (--model, "
              "--hidden)")
      valid = "narrower or fewer hidden layers"
    parts = ", ".join(f"{k} {_size(v)}" for k, v in device.items() if v)
    where = "this machine's" if jax.default_backend() == "cpu" else "this device's"
    raise ConfigError(
        f"{what} on {dataset.name!r} ({int(np.prod(dataset.feature_shape)):,} features): one "
        f"variant needs ~{_size(per_device)} ({parts}), more than {where} {_size(memory)}; "
        f"valid: {valid}, or a machine with more memory")
  if host is None:
    return
  per_host = sum(state.values()) + history + _ROW_BYTES
  if variants * per_host > host:
    folds = f" x {splits.num_folds} folds" if splits.num_folds > 1 else ""
    raise ConfigError(
        f"{num_seeds:,} seeds{folds} x {num_points:,} grid points = {variants:,} variants need "
        f"~{_size(variants * per_host)} of host memory ({_size(per_host)} each: the final "
        f"state, {epochs:,} epochs of history and the result row), more than this machine's "
        f"{_size(host)}; valid: at most {host // per_host:,} variants with this model and "
        "epochs (fewer learning rates, seeds, folds or hyperparameter values)")
