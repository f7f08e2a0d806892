"""`TrainConfig`: the training loop; `MONITORS`, the built-in metrics it may watch."""

from __future__ import annotations

import dataclasses

from lr_jax.config.checks import check_choice, check_positive
from lr_jax.config.fields import check_fields
from lr_jax.errors import ConfigError

MONITORS = ("val_loss", "val_accuracy")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The training loop: epochs, batches, early stopping, divergence.

  Attributes:
    epochs: maximum epochs per variant.
    batch_size: minibatch size; 0 trains full-batch. The last, partial batch of an epoch is
      kept (as Keras does).
    patience: early stopping after this many epochs without improvement of `monitor`; 0
      disables early stopping (the best epoch is still tracked and restored).
    monitor: "val_loss" (lower is better), "val_accuracy" (higher is better), or
      "val_<name>" for a user metric `name` given to `run_sweep(metrics=...)` (its own
      direction; checked against the metrics when the sweep is planned).
    min_delta: an improvement smaller than this does not count (Keras semantics).
    restore_best: end each variant with the parameters of its best epoch.
    divergence_factor: a variant diverges when a minibatch loss is non-finite or exceeds this
      multiple of its initial training loss; it is then frozen and flagged.
    max_steps: stop updating a variant after this many optimizer updates (0: no cap), so a
      budget of exactly S steps does not depend on how the epochs divide it.
  """

  epochs: int = 100
  batch_size: int = 32
  patience: int = 5
  monitor: str = "val_loss"
  min_delta: float = 0.0
  restore_best: bool = True
  divergence_factor: float = 10.0
  max_steps: int = 0

  def __post_init__(self):
    check_fields(self)
    check_positive("epochs", self.epochs, integer=True)
    check_positive("batch_size", self.batch_size, integer=True, allow_zero=True)
    check_positive("patience", self.patience, integer=True, allow_zero=True)
    self._check_monitor()
    check_positive("min_delta", self.min_delta, allow_zero=True)
    check_positive("divergence_factor", self.divergence_factor)
    if self.divergence_factor <= 1:
      raise ConfigError(f"divergence_factor must be > 1, got {self.divergence_factor!r}")
    check_positive("max_steps", self.max_steps, integer=True, allow_zero=True)

  def _check_monitor(self) -> None:
    """A built-in monitor, or "val_<name>" of a user metric (checked when planned) that does not
    abbreviate a built-in one: "val_acc" (Keras' old name) means val_accuracy, not a metric."""
    valid = MONITORS + ("val_<name> of a user metric given to run_sweep(metrics=...)",)
    name = self.monitor[len("val_"):]
    if self.monitor in MONITORS:
      return
    if not (self.monitor.startswith("val_") and name.isidentifier()):
      check_choice("monitor", self.monitor, valid)
    for builtin in MONITORS:
      if builtin.startswith(self.monitor):
        raise ConfigError(
            f"unknown monitor {self.monitor!r} (did you mean {builtin}? a user metric's name may "
            f"not abbreviate a built-in one); valid choices: {', '.join(valid)}")
