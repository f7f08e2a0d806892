"""`FineTuneConfig`: the fine-tuning experiment's tasks, sizes, arms, grid and budget."""

from __future__ import annotations

import dataclasses

from lr_jax.config import check_learning_rates, check_positive, log_spaced, tuple_fields
from lr_jax.errors import ConfigError

# The arms compared at each size: name -> the backbone's learning-rate scale (None: a fresh
# init, no pretrained start). The three pretrained arms are one compiled program (the scale is
# a traced number); from scratch is another model, so another program.
ARMS = {"scratch": None, "linear probe": 0.0, "discriminative": 0.1, "full fine-tuning": 1.0}


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
  """Pretrain a CNN on some classes of digits, fine-tune it on the others with few images.

  Attributes:
    source_classes: the digits the CNN is pretrained on (every image of them).
    target_classes: the digits of the small target task, which the source never saw; their
      labels are 0..K-1 in this order.
    train_sizes: target images trained on (a stratified draw of the target pool, the same
      draw for every arm and seed).
    val_size: target images held out to validate on (stratified, disjoint from every
      training draw): each arm's learning rates are compared on the same rows.
    widths: the CNN's convolution widths (3x3, each followed by 2x2 average pooling).
    learning_rates: the grid of every arm; it must contain `reference_lr`.
    reference_lr: the article's small learning rate, reported in every arm.
    discriminative_scale: the backbone's learning rate as a fraction of the head's in the
      discriminative arm (the linear probe is 0, full fine-tuning 1).
    seeds: training seeds per arm and learning rate (the head's init, the minibatch order).
    steps: optimizer steps per run, the same at every size (epochs = steps / minibatches per
      epoch), with early stopping on the validation loss after `patience` epochs without
      improvement; runs still improving at the end are counted.
    patience_fraction: early stopping's patience as a fraction of the epochs (at least 5).
    batch_size: minibatch size (a smaller training set trains full-batch).
    source_lrs: the pretraining's learning rates; the best (cross-fitted validation accuracy
      on a 20% holdout of the source images) is the start.
    source_epochs: the pretraining's epochs (early stopping, patience 5).
    data_seed: seed of the draws of training and validation images.
  """

  source_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
  target_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
  train_sizes: tuple[int, ...] = (10, 25, 50, 100)
  val_size: int = 250
  widths: tuple[int, ...] = (8, 16)
  learning_rates: tuple[float, ...] = log_spaced(1e-5, 1.0, 11)
  reference_lr: float = 1e-4
  discriminative_scale: float = 0.1
  seeds: int = 3
  steps: int = 300
  patience_fraction: float = 0.2
  batch_size: int = 32
  source_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
  source_epochs: int = 40
  data_seed: int = 0

  def __post_init__(self):
    tuple_fields(self, ("source_classes", "target_classes", "train_sizes", "widths",
                        "learning_rates", "source_lrs"))
    for c in (*self.source_classes, *self.target_classes):
      if c not in range(10):
        raise ConfigError(f"class {c!r} is not a digit; valid choices: 0..9")
    if set(self.source_classes) & set(self.target_classes):
      raise ConfigError(f"source_classes {self.source_classes} and target_classes "
                        f"{self.target_classes} share a class; the target must be unseen")
    if len(self.target_classes) < 2:
      raise ConfigError("target_classes needs at least 2 classes")
    for n in self.train_sizes:
      check_positive("train size", n, integer=True)
      if n < len(self.target_classes):
        raise ConfigError(f"train size {n} is below one image per target class "
                          f"({len(self.target_classes)}); valid: >= {len(self.target_classes)}")
    for name in ("val_size", "seeds", "steps", "batch_size", "source_epochs"):
      check_positive(name, getattr(self, name), integer=True)
    for w in self.widths:
      check_positive("width", w, integer=True)
    object.__setattr__(self, "learning_rates",
                       tuple(sorted(check_learning_rates(self.learning_rates))))
    check_learning_rates(self.source_lrs)
    if not any(abs(lr / self.reference_lr - 1) < 1e-6 for lr in self.learning_rates):
      raise ConfigError(f"reference_lr {self.reference_lr:g} is not in the learning-rate grid; "
                        f"valid choices: {', '.join(f'{x:.3g}' for x in self.learning_rates)}")
    if not 0 < self.discriminative_scale < 1:
      raise ConfigError(f"discriminative_scale must be in (0, 1), got "
                        f"{self.discriminative_scale!r}")
    if not 0 < self.patience_fraction <= 1:
      raise ConfigError(f"patience_fraction must be in (0, 1], got {self.patience_fraction!r}")

  @property
  def arms(self) -> dict[str, float | None]:
    """Arm name -> backbone scale (None: from scratch)."""
    return {**ARMS, "discriminative": self.discriminative_scale}

  @classmethod
  def quick(cls, **changes) -> "FineTuneConfig":
    """A first look: two sizes, six learning rates, two seeds, fewer steps."""
    base = dict(train_sizes=(10, 50), learning_rates=log_spaced(1e-5, 1.0, 6), seeds=2,
                steps=120, source_epochs=20, val_size=150)
    base.update(changes)
    return cls(**base)
