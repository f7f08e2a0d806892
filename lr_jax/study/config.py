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
DESIGNS = ("union", "product")
"""How the study combines its factors: "union" varies each factor around one reference line
(the first value of each), "product" runs every combination (the wide grid)."""

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
    design: "union" (default): each factor is varied around one *reference line*, the first
      value of `optimizers`, `widths`, `schedules` and `budgets`, at every training size:
      the reference line runs every schedule and budget, each other optimizer and width one
      line of its own (reference schedule and budget). "product": every (optimizer, width)
      line under every schedule and budget (the wide grid; `plan_cost` says what it costs).
      The label-noise and regularisation arms are on the reference line in both.
    train_sizes: training-set sizes (before the k-fold split); None = the whole pool.
    optimizers: optimizer families, the reference first (SGD against an adaptive one).
    widths: hidden widths of a one-layer MLP, the reference first (the article's 128, and 16).
    schedules: "constant" and/or "exponential", the reference first; one compile group holds
      both (decay rate 1.0 vs the cell's, a dynamic hyperparameter; see `Cell.decay_rate`).
    learning_rates: the grid; it must contain `reference_lr`. Half decades from 3.2e-5 to 3.2
      hold every optimizer's best on digits inside the grid (SGD's near 0.3-1).
    final_lr_fraction: the exponential schedule's decay is chosen per cell so that the
      learning rate falls to this fraction of its peak at the last step: Keras' fixed 1000
      steps would barely decay in a run of 50 steps (n=25).
    seeds: training seeds per fold (seeds x folds runs per learning rate).
    folds: k of the stratified k-fold cross-validation; capped per cell at the smallest class
      count (digits at n=25 has 2 examples of some classes, so 2 folds there).
    budgets: the training budgets (keys of `BUDGETS`), the reference first.
    epochs: the fixed-epochs budget: maximum epochs, early stopping on.
    steps: the fixed-steps budget: exactly this many optimizer updates per run at every size
      (early stopping off: a run that stopped early would have fewer).
    converge_steps: the to-convergence budget's cap: up to about this many steps (whole
      epochs), early stopping on; a point with a run still improving at the cap is
      *unconverged*, and no finding rests on it.
    batch_size: minibatch size; a training fold smaller than a batch trains full-batch
      (Keras takes one partial batch), see `keras_batch`.
    patience: early-stopping patience on the validation loss.
    reference_lr: the article's small learning rate, reported in every cell.
    tolerance: accuracy within which a learning rate counts as near the best (one point).
    data_seed: seed of the subsample and the folds.
    regularisation: the regularisation arm's axes, `(name, values)` pairs of traced numbers
      (`lr_jax.hparams`), each listing its off value 0: dropout rate and weight decay, swept
      as their product on the reference line at `regularisation_sizes`, run as AdamW when the
      reference is Adam (AdamW at weight decay 0 is Adam, update for update); its cell
      without regularisation is the subset where all are 0. Empty: no arm.
    regularisation_sizes: the training sizes of the regularisation arm (each in
      `train_sizes`; None = the whole pool).
    label_noise: the label-noise arm's fractions of training labels replaced by a random
      other class (validation and test labels stay clean), on the reference line at
      `noise_sizes` under every budget; it must list 0 (the clean cell). `(0.0,)`: no arm.
    noise_sizes: the training sizes of the label-noise arm (each in `train_sizes`).
    test_fraction: at the sizes up to `test_up_to`, this fraction of the data set is held out
      first as a test set (`DataConfig.test_fraction`), on which the chosen point's runs are
      scored beside their validation score.
    test_up_to: the largest training size given a test set (0: none).
  """

  dataset: str = "digits"
  design: str = "union"
  train_sizes: tuple[int | None, ...] = (25, 50, 100, 200, 400, None)
  optimizers: tuple[str, ...] = ("adam", "sgd")
  widths: tuple[int, ...] = (128, 16)
  schedules: tuple[str, ...] = ("constant", "exponential")
  learning_rates: tuple[float, ...] = log_spaced(10**-4.5, 10**0.5, 11)
  final_lr_fraction: float = 0.1
  seeds: int = 2
  folds: int = 3
  budgets: tuple[str, ...] = ("converge", "steps")
  epochs: int = 50
  steps: int = 2000
  converge_steps: int = 10000
  batch_size: int = 32
  patience: int = 5
  reference_lr: float = 1e-4
  tolerance: float = 0.01
  data_seed: int = 0
  regularisation: tuple[tuple[str, tuple[float, ...]], ...] = (
      ("dropout_rate", (0.0, 0.2, 0.5)), ("weight_decay", (0.0, 0.01, 0.1)))
  regularisation_sizes: tuple[int | None, ...] = (50, 400)
  label_noise: tuple[float, ...] = (0.0, 0.2, 0.4)
  noise_sizes: tuple[int | None, ...] = (50, 200)
  test_fraction: float = 0.2
  test_up_to: int = 50

  def __post_init__(self):
    from lr_jax.optim import OPTIMIZERS
    tuple_fields(self, ("train_sizes", "optimizers", "widths", "schedules", "learning_rates",
                        "budgets", "regularisation_sizes", "noise_sizes"))
    check_choice("design", self.design, DESIGNS)
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
    arms = (("regularisation_sizes", self.regularisation_sizes, bool(self.regularisation)),
            ("noise_sizes", self.noise_sizes, len(self.label_noise) > 1))
    for what, sizes, on in arms:
      for n in sizes if on else ():  # An arm that is off has no sizes to check.
        if n not in self.train_sizes:
          raise ConfigError(f"{what} lists {'all' if n is None else n}, which is not one of the "
                            f"train sizes; valid choices: "
                            f"{', '.join('all' if m is None else str(m) for m in self.train_sizes)}")
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
    """The study has a label-noise arm."""
    return len(self.label_noise) > 1 and bool(self.noise_sizes)

  @property
  def reference(self) -> tuple[str, int, str, str]:
    """The reference line: (optimizer, width, schedule, budget), each factor's first value."""
    return (self.optimizers[0], self.widths[0], self.schedules[0], self.budgets[0])

  @classmethod
  def quick(cls, **changes) -> "StudyConfig":
    """A small version for a first look: the reference line alone (Adam, MLP(128), constant)
    at two sizes under both budgets, fewer steps and runs, two values of each regularisation
    axis and of the label noise, each arm at one size."""
    base = dict(train_sizes=(25, 400), optimizers=("adam",), widths=(128,),
                schedules=("constant",), learning_rates=log_spaced(1e-5, 1.0, 6), seeds=2,
                folds=2, epochs=20, steps=300, converge_steps=1000,
                regularisation=(("dropout_rate", (0.0, 0.5)), ("weight_decay", (0.0, 0.1))),
                regularisation_sizes=(400,), label_noise=(0.0, 0.4), noise_sizes=(25,),
                test_up_to=25)
    base.update(changes)
    return cls(**base)
