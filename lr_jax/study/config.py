"""The study's configuration (`StudyConfig`): its axes, grid and budgets, checked when built."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from lr_jax.config import (check_choice, check_learning_rates, check_positive, log_spaced,
                           tuple_fields)
from lr_jax.errors import ConfigError
from lr_jax.study.cells import BUDGETS, index_of


SCHEDULES = ("constant", "exponential")  # one compiled program: constant is decay rate 1.0

# The regularisation axes the study tunes and their valid ranges (`lr_jax.hparams`' own).
REGULARISATION = {"dropout_rate": (0.0, 1.0), "weight_decay": (0.0, math.inf)}
# The family a regularised line runs as: weight decay needs an optimizer that declares it.
# Decoupled (AdamW) decay at 0 is Adam's update exactly, so the plain cell is unchanged.
WITH_WEIGHT_DECAY = {"adam": "adamw"}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """The small-data study: axes, the LR grid, and how each cell is trained and validated.

  Attributes:
    dataset: a classification data set (`lr_jax.data.DATASETS` or a file).
    train_sizes: training-set sizes; None = the whole training pool.
    optimizers: optimizer families.
    widths: hidden widths of a one-layer MLP. 16 and the article's 128: 256 would double the
      cost of the study's largest cells on a 2-core CPU for one more width that says little
      new.
    schedules: "constant" and/or "exponential"; both share one compile group (decay rate 1.0
      vs the cell's, a dynamic hyperparameter; see `Cell.decay_rate`).
    learning_rates: the grid; it must contain `reference_lr`. Half decades from 3.2e-5 to 3.2
      hold every optimizer's best on digits inside the grid (SGD's near 0.3-1).
    final_lr_fraction: the exponential schedule's decay is chosen per cell so that the
      learning rate falls to this fraction of its peak at the last step: Keras' fixed 1000
      steps would barely decay in a run of 50 steps (n=25).
    seeds: training seeds per fold (seeds x folds runs per learning rate).
    folds: k of the stratified k-fold cross-validation; capped per cell at the smallest class
      count (digits at n=25 has 2 examples of some classes, so 2 folds there).
    budgets: the training budgets each cell runs under (keys of `BUDGETS`).
    epochs: the fixed-epochs budget: maximum epochs, early stopping on.
    steps: the fixed-steps budget: exactly this many optimizer updates per run at every size
      (early stopping off: a run that stopped early would have fewer).
    converge_steps: the to-convergence budget: up to about this many steps (whole epochs),
      early stopping on; the report counts the runs still improving when it ran out.
    batch_size: minibatch size; a training fold smaller than a batch trains full-batch
      (Keras takes one partial batch), see `keras_batch`.
    patience: early-stopping patience on the validation loss.
    reference_lr: the article's small learning rate, reported in every cell.
    tolerance: accuracy within which a learning rate counts as near the best (one point).
    data_seed: seed of the subsample and the folds.
    regularisation: the tuned regularisation, `(name, values)` pairs of traced axes
      (`lr_jax.hparams`), each listing its off value 0: dropout rate and weight decay. They
      are swept on one line, Adam at the largest width, run as AdamW (weight decay needs it;
      AdamW at weight decay 0 is Adam, update for update), in the same compile groups, so
      the cell without regularisation is the subset where both are 0. Empty: none.
    label_noise: fractions of training labels replaced by a random other class (validation
      and test labels stay clean), a traced axis at the sizes up to `noise_up_to`; it must
      list 0 (the clean cell). `(0.0,)`: none.
    noise_up_to: the largest training size given `label_noise`.
    test_fraction: at the sizes up to `test_up_to`, this fraction of the data set is held out
      first as a test set (`DataConfig.test_fraction`), on which the chosen point's runs are
      scored beside their validation score.
    test_up_to: the largest training size given a test set (0: none).
  """

  dataset: str = "digits"
  train_sizes: tuple[int | None, ...] = (25, 50, 100, 200, 400, None)
  optimizers: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
  widths: tuple[int, ...] = (16, 128)
  schedules: tuple[str, ...] = ("constant", "exponential")
  learning_rates: tuple[float, ...] = log_spaced(10**-4.5, 10**0.5, 11)
  final_lr_fraction: float = 0.1
  seeds: int = 2
  folds: int = 3
  budgets: tuple[str, ...] = tuple(BUDGETS)
  epochs: int = 50
  steps: int = 2000
  converge_steps: int = 5000
  batch_size: int = 32
  patience: int = 5
  reference_lr: float = 1e-4
  tolerance: float = 0.01
  data_seed: int = 0
  regularisation: tuple[tuple[str, tuple[float, ...]], ...] = (
      ("dropout_rate", (0.0, 0.2, 0.5)), ("weight_decay", (0.0, 0.01, 0.1)))
  label_noise: tuple[float, ...] = (0.0, 0.2, 0.4)
  noise_up_to: int = 50
  test_fraction: float = 0.2
  test_up_to: int = 50

  def __post_init__(self):
    from lr_jax.optim import OPTIMIZERS
    tuple_fields(self, ("train_sizes", "optimizers", "widths", "schedules", "learning_rates",
                        "budgets"))
    for opt in self.optimizers:
      check_choice("optimizer", opt, OPTIMIZERS)
    for s in self.schedules:
      check_choice("schedule", s, SCHEDULES)
    for b in self.budgets:
      check_choice("budget", b, BUDGETS)
    for w in self.widths:
      check_positive("width", w, integer=True)
    for n in self.train_sizes:
      if n is not None:
        check_positive("train size", n, integer=True)
    lrs = tuple(sorted(check_learning_rates(self.learning_rates)))
    object.__setattr__(self, "learning_rates", lrs)
    if index_of(lrs, self.reference_lr) is None:
      raise ConfigError(
          f"reference_lr {self.reference_lr:g} is not in the learning-rate grid; valid "
          f"choices: {', '.join(f'{x:.3g}' for x in lrs)}")
    if not 0 < self.final_lr_fraction < 1:
      raise ConfigError(f"final_lr_fraction must be in (0, 1), got {self.final_lr_fraction!r}")
    check_positive("seeds", self.seeds, integer=True)
    if not isinstance(self.folds, int) or self.folds < 2:
      raise ConfigError(f"folds must be an integer >= 2, got {self.folds!r}")
    check_positive("epochs", self.epochs, integer=True)
    check_positive("steps", self.steps, integer=True)
    check_positive("converge_steps", self.converge_steps, integer=True)
    check_positive("batch_size", self.batch_size, integer=True)
    check_positive("patience", self.patience, integer=True, allow_zero=True)
    check_positive("tolerance", self.tolerance)
    self._check_axes()
    check_positive("noise_up_to", self.noise_up_to, integer=True, allow_zero=True)
    check_positive("test_up_to", self.test_up_to, integer=True, allow_zero=True)
    if not 0 < self.test_fraction < 1:
      raise ConfigError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")

  def _check_axes(self):
    """The regularisation and label-noise values: distinct, in range, each listing 0."""
    reg = self.regularisation
    reg = tuple((reg.items() if isinstance(reg, Mapping) else reg))
    reg = tuple((str(name), tuple(float(v) for v in values)) for name, values in reg)
    object.__setattr__(self, "regularisation", reg)
    if len({name for name, _ in reg}) != len(reg):
      raise ConfigError(f"regularisation names an axis twice: {[n for n, _ in reg]}")
    for name, values in reg:
      if name not in REGULARISATION:
        check_choice("regularisation axis", name, REGULARISATION)
      low, high = REGULARISATION[name]
      for v in values:
        if not (math.isfinite(v) and low <= v < high):
          raise ConfigError(f"regularisation {name}={v!r} is out of range; valid: [{low:g}, "
                            f"{high:g})")
      if len(set(values)) != len(values) or 0.0 not in values:
        raise ConfigError(f"regularisation {name} values {values} must be distinct and list "
                          "0 (the cell without it)")
    noise = tuple(float(v) for v in self.label_noise)
    object.__setattr__(self, "label_noise", noise)
    for v in noise:
      if not (math.isfinite(v) and 0 <= v < 1):
        raise ConfigError(f"label_noise {v!r} is out of range; valid: [0, 1)")
    if len(set(noise)) != len(noise) or 0.0 not in noise:
      raise ConfigError(f"label_noise values {noise} must be distinct and list 0 (the clean "
                        "cell)")

  @property
  def noisy(self) -> bool:
    return len(self.label_noise) > 1

  @classmethod
  def quick(cls, **changes) -> "StudyConfig":
    """A small version for a first look: Adam only, two sizes, the constant schedule, fewer
    steps and runs, two values of each regularisation axis and of the label noise."""
    base = dict(train_sizes=(25, 400), optimizers=("adam",), widths=(128,),
                schedules=("constant",), learning_rates=log_spaced(1e-5, 1.0, 6), seeds=2,
                folds=2, epochs=20, steps=300, converge_steps=1000,
                regularisation=(("dropout_rate", (0.0, 0.5)), ("weight_decay", (0.0, 0.1))),
                label_noise=(0.0, 0.4), noise_up_to=25, test_up_to=25)
    base.update(changes)
    return cls(**base)
