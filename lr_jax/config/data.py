"""`DataConfig`: which data, how much of it, and how it is split."""

from __future__ import annotations

import dataclasses
import os

from lr_jax.config.checks import check_choice, check_positive
from lr_jax.config.fields import DatasetLike, check_fields
from lr_jax.errors import ConfigError

# How the images of a folder data set are read (`DataConfig.color`): one channel or three.
COLORS = ("grayscale", "rgb")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data, how much of it, and how it is split.

  Attributes:
    dataset: a built-in name (see `lr_jax.data.DATASETS`), a path to a `.npz` (arrays `x`,
      `y`) or `.csv` file or to a folder of images (`DIR/<class>/*.png`, see
      `Dataset.from_folder`), or a `lr_jax.Dataset` (e.g. `Dataset.from_arrays(x, y)`), which
      compares and hashes by identity.
    train_size: examples to train on, a stratified subsample of the training pool (the "small
      dataset" knob); None uses the whole pool.
    val_fraction: fraction of the whole data set held out for validation (holdout mode only).
    folds: None for one holdout split; k >= 2 for stratified k-fold cross-validation over the
      `train_size` examples (each fold validates on its held-out k-th).
    standardize: scale features to zero mean, unit variance using training statistics only
      (per fold).
    data_seed: seed of the split and subsample; fixed across training seeds so that seeds vary
      only the init and the minibatch order.
    label_column: the label column of a `.csv` file (name or 0-based index); default the last.
    task: for user files, "classification" or "regression"; None infers it from the labels.
    noise: noise level of the synthetic data sets.
    num_samples: size of the synthetic data sets.
    val_dataset: a `.npz` or `.csv` file of validation rows with the training file's columns,
      used as they are: `val_fraction` and `folds` do not apply, `train_size` subsamples the
      training file only.
    test_fraction: None, or the fraction of the data (of the training file, with a given
      validation split) held out as a test set, stratified and drawn first with `data_seed`;
      the sweep never sees it (`Splits.test_idx`; `lr_jax.export.refit` scores on it).
    test_dataset: a `.npz` or `.csv` file of test rows with the training file's columns, used
      as they are (`Splits.test_idx`), the sweep never sees them; not with `test_fraction`.
    outer_folds: None, or K >= 2 for nested cross-validation: the `train_size` pool is split
      into K stratified outer folds, each outer fold's other K - 1 parts are split as
      configured (`folds` or `val_fraction`), the selection runs per outer fold and its choice
      is refit and scored on the held-out part (`SweepResult.nested`).
    image_size: for a folder of images, the side each image is resized to (a square); None
      keeps their size, which must then be the same for all.
    color: for a folder of images, "grayscale" (one channel) or "rgb" (three).
  """

  dataset: str | os.PathLike | DatasetLike = "digits"
  train_size: int | None = None
  val_fraction: float = 0.2
  folds: int | None = None
  standardize: bool = True
  data_seed: int = 0
  label_column: str | int | None = None
  task: str | None = None
  noise: float = 0.1
  num_samples: int = 1000
  val_dataset: str | None = None
  test_fraction: float | None = None
  test_dataset: str | None = None
  outer_folds: int | None = None
  image_size: int | None = None
  color: str = "grayscale"

  def __post_init__(self):
    if isinstance(self.dataset, (tuple, list)):  # Arrays given as they are: say how instead.
      self._check_dataset_object()
    check_fields(self)
    if self.test_fraction is not None and not 0 < self.test_fraction < 1:
      raise ConfigError(f"test_fraction must be in (0, 1) (or unset for no test set), got "
                        f"{self.test_fraction!r}")
    self._check_test_and_outer()
    if not isinstance(self.dataset, str):
      self._check_dataset_object()
    if self.val_dataset is not None:
      self._check_given_split(f"val_dataset={self.val_dataset!r}")
    if not 0 < self.val_fraction < 1:
      raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
    if self.train_size is not None:
      check_positive("train_size", self.train_size, integer=True)
    if self.folds is not None and self.folds < 2:
      raise ConfigError(
          f"folds must be an integer >= 2 (or unset for a holdout split), got {self.folds!r}")
    if self.task is not None:
      check_choice("task", self.task, ("classification", "regression"))
    check_positive("noise", self.noise, allow_zero=True)
    check_positive("num_samples", self.num_samples, integer=True)
    if self.image_size is not None:
      check_positive("image_size", self.image_size, integer=True)
    check_choice("color", self.color, COLORS)

  def _check_test_and_outer(self) -> None:
    if self.test_dataset is not None and self.test_fraction is not None:
      raise ConfigError(
          f"test_dataset={self.test_dataset!r} and test_fraction={self.test_fraction!r} both "
          "give a test set; keep one")
    if self.outer_folds is None:
      return
    if self.outer_folds < 2:
      raise ConfigError(f"outer_folds must be an integer >= 2 (or unset for no nested "
                        f"cross-validation), got {self.outer_folds!r}")
    for field in ("test_fraction", "test_dataset", "val_dataset"):
      if getattr(self, field) is not None:
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply with outer_folds="
            f"{self.outer_folds}: nested cross-validation makes its own test and validation "
            f"parts; drop {field} or outer_folds")

  def _check_dataset_object(self) -> None:
    if not isinstance(self.dataset, DatasetLike):
      raise ConfigError(
          f"dataset must be a name, a file path or a lr_jax.Dataset (for arrays: "
          f"Dataset.from_arrays(x, y)), got a {type(self.dataset).__name__}")
    if self.val_dataset is not None:
      raise ConfigError(
          f"val_dataset={self.val_dataset!r} applies to data files; give a Dataset's validation "
          "rows as Dataset.from_arrays(x, y, x_val, y_val)")
    if self.test_dataset is not None:
      raise ConfigError(
          f"test_dataset={self.test_dataset!r} applies to data files; give a Dataset's test "
          "rows as Dataset.from_arrays(x, y, x_test=..., y_test=...)")
    if self.outer_folds is not None and (self.dataset.num_val or self.dataset.num_test):
      raise ConfigError(
          f"outer_folds={self.outer_folds} does not apply to {self.dataset.name!r}: its "
          "validation or test rows are given; nested cross-validation makes its own")
    for field, value in (("label_column", None), ("task", self.dataset.task)):
      if getattr(self, field) not in (None, value):
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply to the Dataset object "
            f"{self.dataset.name!r}; give it to Dataset.from_arrays")
    if self.dataset.num_val:
      self._check_given_split(f"{self.dataset.name!r} with x_val, y_val")

  def _check_given_split(self, given: str) -> None:
    # 0.2 is val_fraction's default, so as far as a dataclass can tell it was not given.
    for field, unset in (("folds", None), ("val_fraction", 0.2)):
      if getattr(self, field) != unset:
        raise ConfigError(
            f"{field}={getattr(self, field)!r} does not apply with a given validation split "
            f"({given}); drop {field}")
