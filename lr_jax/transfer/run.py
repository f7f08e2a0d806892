"""Running the fine-tuning experiment: the source task's pretraining, then each size's arms."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from lr_jax.transfer.config import FineTuneConfig
from lr_jax.transfer.rows import ArmRow, arm_rows

if TYPE_CHECKING:
  from lr_jax.results import SweepResult

IMAGE_SHAPE = (8, 8, 1)


@dataclasses.dataclass
class FineTuneResult:
  """What the experiment measured.

  Attributes:
    config: the configuration.
    source_lr: the pretraining's chosen learning rate.
    source_accuracy: its cross-fitted validation accuracy on held-out source images.
    source_val_rows: how many source images that accuracy counts.
    rows: one `ArmRow` per (size, arm).
    sweeps: size -> {"scratch": its sweep, "pretrained": the three pretrained arms' sweep}.
    wall_s: seconds in all.
  """

  config: FineTuneConfig
  source_lr: float
  source_accuracy: float
  source_val_rows: int
  rows: list[ArmRow]
  sweeps: dict[int, dict[str, "SweepResult"]]
  wall_s: float


def digit_images(classes) -> tuple[np.ndarray, np.ndarray]:
  """[N, 8, 8, 1] float32 pixels in [0, 1] and [N] labels 0..K-1 of scikit-learn's digits
  whose digit is one of `classes` (label k is `classes[k]`)."""
  from lr_jax.config import DataConfig
  from lr_jax.data import load_dataset
  digits = load_dataset(DataConfig(dataset="digits"))  # pixels 0..16, [N, 8, 8, 1] row-major
  keep = np.isin(digits.y, classes)
  x = (digits.x[keep] / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  y = np.asarray([list(classes).index(t) for t in digits.y[keep]], np.int32)
  return x, y


def target_dataset(cfg: FineTuneConfig):
  """The target task: its validation images set apart, the rest the pool each size draws from."""
  from lr_jax.data import Dataset, stratified_draw
  x, y = digit_images(cfg.target_classes)
  if cfg.val_size + max(cfg.train_sizes) > len(y):
    raise ValueError(f"{len(y)} target images cannot hold {cfg.val_size} validation and "
                     f"{max(cfg.train_sizes)} training images")
  val, pool = stratified_draw(np.arange(len(y)), y, cfg.val_size,
                              np.random.default_rng(cfg.data_seed), keep_each=True)
  names = tuple(str(c) for c in cfg.target_classes)
  return Dataset.from_arrays(x[pool], y[pool], x[val], y[val], class_names=names,
                             name=f"digits {'/'.join(names)}")


def _cnn(cfg: FineTuneConfig, num_classes: int):
  from lr_jax.config import ModelConfig
  from lr_jax.models import build_model
  return build_model(ModelConfig(name="cnn", hidden=cfg.widths), num_classes, IMAGE_SHAPE)


def pretrain(cfg: FineTuneConfig) -> tuple[object, float, float, int]:
  """The source CNN: every source image, the best of `source_lrs` on a 20% holdout.

  Returns:
    (its parameters, the chosen learning rate, its cross-fitted validation accuracy, the
    validation images it counts).
  """
  from lr_jax.api import run_sweep
  from lr_jax.config import DataConfig, Experiment, OptimConfig, TrainConfig
  from lr_jax.data import Dataset
  from lr_jax.engine import Grid
  x, y = digit_images(cfg.source_classes)
  data = Dataset.from_arrays(x, y, name="digits " + "/".join(map(str, cfg.source_classes)))
  exp = Experiment(
      data=DataConfig(dataset=data, standardize=False, data_seed=cfg.data_seed),
      optim=OptimConfig(name="adam"),
      train=TrainConfig(epochs=cfg.source_epochs, patience=5, batch_size=cfg.batch_size))
  result = run_sweep(exp, Grid(learning_rates=cfg.source_lrs, seeds=(0,)),
                     model=_cnn(cfg, len(cfg.source_classes)))
  best = result.best[0]
  row = int(np.flatnonzero(np.isclose(result.rows["learning_rate"], best["learning_rate"]))[0])
  return (result.params_of(row), float(best["learning_rate"]), float(best["mean"]),
          int(best.get("n_rows", 0)))


def budget(cfg: FineTuneConfig, size: int):
  """The `TrainConfig` of a size: `cfg.steps` optimizer steps as whole epochs, early stopping."""
  from lr_jax.config import TrainConfig
  per_epoch = math.ceil(size / min(cfg.batch_size, size))
  epochs = math.ceil(cfg.steps / per_epoch)
  return TrainConfig(epochs=epochs, batch_size=0 if size <= cfg.batch_size else cfg.batch_size,
                            patience=max(5, round(cfg.patience_fraction * epochs)))


def run_fine_tune(cfg: FineTuneConfig) -> FineTuneResult:
  """Pretrains on the source classes, then sweeps every arm at every size on the target's."""
  from lr_jax.api import run_sweep
  from lr_jax.config import DataConfig, Experiment, OptimConfig
  from lr_jax.engine import Grid
  from lr_jax.models import pretrained
  t0 = time.perf_counter()
  source_params, source_lr, source_acc, source_rows = pretrain(cfg)
  logging.info("pretrained on digits %s: lr %g, validation accuracy %.3f (%d images)",
               cfg.source_classes, source_lr, source_acc, source_rows)
  data = target_dataset(cfg)
  model = _cnn(cfg, len(cfg.target_classes))
  start = pretrained(model, source_params, head="last")
  scales = tuple(s for s in cfg.arms.values() if s is not None)
  rows, sweeps = [], {}
  for size in cfg.train_sizes:
    exp = Experiment(
        data=DataConfig(dataset=data, train_size=size, standardize=False,
                        data_seed=cfg.data_seed),
        optim=OptimConfig(name="adam"), train=budget(cfg, size))
    seeds = tuple(range(cfg.seeds))
    sweeps[size] = {
        "scratch": run_sweep(exp, Grid(learning_rates=cfg.learning_rates, seeds=seeds),
                             model=model),
        "pretrained": run_sweep(exp, Grid(learning_rates=cfg.learning_rates, seeds=seeds,
                                          hparams=(("backbone_lr_scale", scales),)),
                                model=start)}
    rows += arm_rows(cfg, size, sweeps[size])
    logging.info("size %d done, %.0f s elapsed", size, time.perf_counter() - t0)
  return FineTuneResult(config=cfg, source_lr=source_lr, source_accuracy=source_acc,
                        source_val_rows=source_rows, rows=rows, sweeps=sweeps,
                        wall_s=time.perf_counter() - t0)
