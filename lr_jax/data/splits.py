"""Splits of a data set: holdout, k-fold, nested folds and a test set, as padded index arrays."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lr_jax.config import DataConfig
from lr_jax.data.dataset import CLASSIFICATION, Dataset
from lr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """The training and validation indices of each fold (F = 1 for a holdout split).

  Attributes:
    train_idx: [F, n_max] int32 indices into `Dataset.x`, sorted; padded entries are 0.
    train_mask: [F, n_max] bool, True for real entries.
    val_idx: [F, v_max] int32 indices, sorted; padded entries are 0.
    val_mask: [F, v_max] bool.
    mean: [F, D] float32 feature mean of each fold's training rows (zeros if not standardizing).
    std: [F, D] float32 feature std of each fold's training rows, 0 replaced by 1 (ones if not
      standardizing).
    test_idx: [T] int32 sorted indices of the test rows (`DataConfig.test_fraction` or
      `test_dataset`), in no fold's training or validation rows; empty without a test set.
    outer_test_idx: [K, t_max] int32 sorted indices of each outer fold's test part (nested
      cross-validation, `DataConfig.outer_folds`); padded entries are 0; [0, 0] without.
      Folds `o * inner_folds ... (o + 1) * inner_folds - 1` are outer fold o's inner folds:
      they train and validate on its other parts only.
    outer_test_mask: [K, t_max] bool, True for real entries.
  """

  train_idx: np.ndarray
  train_mask: np.ndarray
  val_idx: np.ndarray
  val_mask: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  test_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
  outer_test_idx: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 0), np.int32))
  outer_test_mask: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros((0, 0), bool))

  @property
  def num_folds(self) -> int:
    return self.train_idx.shape[0]

  @property
  def num_outer(self) -> int:
    """K, the outer folds of nested cross-validation; 0 without."""
    return self.outer_test_idx.shape[0]

  @property
  def inner_folds(self) -> int:
    """Folds per outer fold (all of them without nested cross-validation)."""
    return self.num_folds // max(1, self.num_outer)

  def outer_rows(self, outer: int) -> tuple[np.ndarray, np.ndarray]:
    """(training part, test part) of outer fold `outer`: sorted row indices.

    The training part is every row its inner folds train or validate on.
    """
    if not 0 <= outer < self.num_outer:
      raise ConfigError(f"outer fold must be in 0..{self.num_outer - 1}, got {outer!r}")
    folds = slice(outer * self.inner_folds, (outer + 1) * self.inner_folds)
    seen = np.union1d(self.train_idx[folds][self.train_mask[folds]],
                      self.val_idx[folds][self.val_mask[folds]])
    return seen.astype(np.int32), self.outer_test_idx[outer][self.outer_test_mask[outer]]

  @property
  def train_sizes(self) -> np.ndarray:
    """[F] int32 number of training examples of each fold."""
    return self.train_mask.sum(axis=1).astype(np.int32)

  @property
  def val_sizes(self) -> np.ndarray:
    """[F] int32 number of validation examples of each fold."""
    return self.val_mask.sum(axis=1).astype(np.int32)


def _check_seed(seed: int) -> None:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ConfigError(f"data_seed must be an integer >= 0, got {seed!r}")


def _apportion(quota: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: int) -> np.ndarray:
  """Integers lo <= a <= hi summing to `total`, each as close to its `quota` as the rest allow."""
  alloc = np.clip(np.floor(quota).astype(np.int64), lo, hi)
  # Few steps: flooring and clipping leave at most ~2 per class to hand out or take back.
  while (gap := total - int(alloc.sum())) != 0:
    if gap > 0:
      alloc[np.argmax(np.where(alloc < hi, quota - alloc, -np.inf))] += 1
    else:
      alloc[np.argmax(np.where(alloc > lo, alloc - quota, -np.inf))] -= 1
  return alloc


def stratified_draw(idx: np.ndarray, labels: np.ndarray | None, size: int,
                    rng: np.random.Generator, keep_each: bool) -> tuple[np.ndarray, np.ndarray]:
  """Draws `size` of `idx` at random, stratified by `labels` (None: unstratified).

  Every class present in `idx` is drawn at least once and, with `keep_each`, also left at
  least once in the rest. Callers check that this is possible.

  Returns:
    (drawn, rest), each sorted.
  """
  order = idx[rng.permutation(len(idx))]
  taken = np.zeros(len(order), bool)
  if labels is None:
    taken[:size] = True
  else:
    lab = labels[order]
    counts = np.bincount(lab)
    present = (counts > 0).astype(np.int64)
    alloc = _apportion(size * counts / len(order), present, counts - keep_each * present, size)
    for c, k in enumerate(alloc):
      taken[np.flatnonzero(lab == c)[:k]] = True
  return np.sort(order[taken]), np.sort(order[~taken])


def _kfold(idx: np.ndarray, labels: np.ndarray | None, k: int,
           rng: np.random.Generator) -> list[np.ndarray]:
  """Splits `idx` into `k` sorted parts, each class spread over them as evenly as possible."""
  order = idx[rng.permutation(len(idx))]
  if labels is not None:
    # Grouping classes, then dealing positions round-robin, gives every part floor or ceil of
    # each class's share, and part sizes within one of each other.
    order = order[np.argsort(labels[order], kind="stable")]
  part = np.arange(len(order)) % k
  return [np.sort(order[part == f]) for f in range(k)]


def _pad(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  width = max(len(p) for p in parts)
  idx = np.zeros((len(parts), width), np.int32)
  mask = np.zeros((len(parts), width), bool)
  for f, p in enumerate(parts):
    idx[f, :len(p)] = p
    mask[f, :len(p)] = True
  return idx, mask


def _test_rows(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Draws the test rows, before any other split: (test, rest), stratified; none without one.

  With a given validation split the test rows come from the training rows only; a given test
  split (`Dataset.num_test`) is used as it is.
  """
  n_all = len(dataset.y)
  rows = np.arange(n_all - dataset.num_val - dataset.num_test)
  if dataset.num_test:
    if cfg.test_fraction is not None:
      raise ConfigError(
          f"test_fraction={cfg.test_fraction} does not apply to {dataset.name!r}: its "
          f"{dataset.num_test} test rows are given; drop test_fraction")
    return np.arange(n_all - dataset.num_test, n_all, dtype=np.int32), rows
  if cfg.test_fraction is None:
    return np.zeros(0, np.int32), rows
  n_test = math.ceil(round(cfg.test_fraction * len(rows), 6))  # As `_holdout`'s n_val.
  if labels is not None:
    counts = np.bincount(labels[rows], minlength=dataset.num_classes)
    if counts.min() < 3:
      raise ConfigError(
          f"class {int(counts.argmin())} of {dataset.name!r} has {int(counts.min())} example(s); "
          "test_fraction needs at least 3 of each class (to test, train and validate)")
  if n_test < need or len(rows) - n_test < 2 * need:
    raise ConfigError(
        f"test_fraction={cfg.test_fraction} holds out {n_test} of {len(rows)} examples; the test "
        f"set needs at least {need} and the rest {2 * need}; valid: test_fraction in "
        f"[{need / len(rows):.4g}, {(len(rows) - 2 * need) / len(rows):.4g}]")
  test, rest = stratified_draw(rows, labels, n_test, rng, keep_each=True)
  return test.astype(np.int32), rest


def _holdout(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
             rng: np.random.Generator, rows: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, int]:
  """Draws the validation rows of a holdout split from `rows` (default all): (val, pool, n_val)."""
  rows = np.arange(len(dataset.y)) if rows is None else rows
  n_all = len(rows)
  # ceil, as scikit-learn's train_test_split: digits at 0.2 holds out 360 of 1797. The round
  # keeps float error (0.1 * 30 = 3.0000000000000004) from adding one.
  n_val = math.ceil(round(cfg.val_fraction * n_all, 6))
  if labels is not None:
    counts = np.bincount(labels[rows], minlength=dataset.num_classes)
    if counts.min() < 2:
      # Rare "classes" are typical of counts read as classes: say how to train them as numbers.
      hint = ("; if the labels are quantities, pass task='regression' (--task=regression)"
              if "integer labels" in dataset.task_reason else "")
      raise ConfigError(
          f"class {int(counts.argmin())} of {dataset.name!r} has {int(counts.min())} example(s); "
          f"a stratified split needs at least 2 of each class (one to train, one to validate)"
          f"{hint}")
    if n_val < need:
      raise ConfigError(
          f"val_fraction={cfg.val_fraction} holds out {n_val} of {n_all} examples, fewer than "
          f"the {need} classes; valid: val_fraction > {(need - 1) / n_all:.4g}")
  if n_all - n_val < need:
    raise ConfigError(
        f"val_fraction={cfg.val_fraction} leaves {n_all - n_val} of {n_all} examples to train "
        f"on, fewer than {need}; valid: val_fraction <= {(n_all - need) / n_all:.4g}")
  val, pool = stratified_draw(rows, labels, n_val, rng, keep_each=True)
  return val, pool, n_val


def make_splits(dataset: Dataset, cfg: DataConfig) -> Splits:
  """Splits a data set into training and validation indices, deterministically in `data_seed`.

  Holdout (`cfg.folds` None, F = 1): ceil(val_fraction * N) examples are held out for
  validation, stratified by class for classification; the rest is the training pool, of which
  a stratified subsample of `cfg.train_size` is trained on. A data set with a given validation
  split (`Dataset.num_val` > 0) validates on exactly those rows and draws `train_size` from the
  others (`val_fraction` and `folds` do not apply). With `cfg.test_fraction`, a stratified test
  set is drawn first, from every row (the training rows, with a given validation split), and
  everything above applies to the rest: no fold trains or validates on a test row.
  k-fold (`cfg.folds` = k, F = k): nothing is held out (`val_fraction` does not apply): every
  row that is not a test row, or a stratified subsample of `cfg.train_size` of them, is split
  into k stratified folds, and fold f trains on the other k - 1 and validates on fold f.
  Nested (`cfg.outer_folds` = K, F = K x inner folds): the pool, a stratified subsample of
  `train_size` examples (default all), is split into K stratified outer folds; outer fold o's
  other K - 1 parts are split as above, into `folds` k-folds (all its rows) or a
  `val_fraction` holdout; these are folds o * F/K ... and outer fold o tests on its part
  (`Splits.outer_test_idx`).

  Args:
    dataset: the whole data set.
    cfg: the data configuration.

  Returns:
    The padded indices of each fold and their standardization statistics.

  Raises:
    ConfigError: when `val_fraction`, `train_size` or `folds` do not fit the data.
  """
  _check_seed(cfg.data_seed)
  rng = np.random.default_rng(cfg.data_seed)
  n_all = len(dataset.y)
  labels = dataset.y if dataset.task == CLASSIFICATION else None
  need = dataset.num_classes if labels is not None else 1
  test, rest = _test_rows(dataset, cfg, labels, need, rng)  # First: nothing else sees them.
  if cfg.outer_folds is not None:
    train_parts, val_parts, outer = _nested(dataset, cfg, labels, need, rng, rest)
    return _fold_splits(dataset, cfg.standardize, train_parts, val_parts, test, outer)
  if dataset.num_val:
    if cfg.folds is not None:
      raise ConfigError(
          f"folds={cfg.folds} does not apply to {dataset.name!r}: its {dataset.num_val} "
          "validation rows are given; drop folds, or give no validation split to cross-validate")
    # Taken as given: building the data set checked that training holds every class.
    n_val = dataset.num_val
    end = n_all - dataset.num_test
    val, pool = np.arange(end - n_val, end), rest
  elif cfg.folds is not None:
    # k-fold: every row that is not a test row is in some fold; val_fraction does not apply
    # (each fold's validation part is its k-th), so nothing is held out here.
    val, pool, n_val = np.zeros(0, np.int64), rest, 0
  else:
    val, pool, n_val = _holdout(dataset, cfg, labels, need, rng, rest)

  size = len(pool) if cfg.train_size is None else cfg.train_size
  if size > len(pool):
    held = [f"{n_val} held out for validation"] if n_val else []
    held += [f"{len(test)} for test"] if len(test) else []
    raise ConfigError(
        f"train_size={size} is larger than the training pool of {len(pool)} examples ({n_all}"
        f"{' minus ' + ' and '.join(held) if held else ''}); valid: {need}..{len(pool)}")
  if size < need:
    raise ConfigError(
        f"train_size={size} is smaller than the {need} classes of {dataset.name!r}; every class "
        f"needs an example; valid: {need}..{len(pool)}")
  train, _ = stratified_draw(pool, labels, size, rng, keep_each=False)

  if cfg.folds is None:
    train_parts, val_parts = [train], [val]
  else:
    k = cfg.folds
    if labels is not None:
      smallest = int(np.bincount(labels[train]).min())
      if k > smallest:
        valid = f"2..{smallest}" if smallest >= 2 else "none, use a larger train_size"
        raise ConfigError(
            f"folds={k} is more than {smallest}, the smallest class count among the {size} "
            f"training examples; every fold must hold each class; valid: {valid}")
    elif k > size:
      raise ConfigError(
          f"folds={k} is more than the {size} training examples; valid: 2..{size}")
    val_parts = _kfold(train, labels, k, rng)
    train_parts = [np.concatenate(val_parts[:f] + val_parts[f + 1:]) for f in range(k)]
    train_parts = [np.sort(p) for p in train_parts]

  return _fold_splits(dataset, cfg.standardize, train_parts, val_parts, test)


def _fold_splits(dataset: Dataset, standardize: bool, train_parts: Sequence[np.ndarray],
                 val_parts: Sequence[np.ndarray], test: np.ndarray | None = None,
                 outer: Sequence[np.ndarray] = ()) -> Splits:
  """`Splits` of given row indices per fold, each fold standardized by its training rows."""
  train_idx, train_mask = _pad(list(train_parts))
  val_idx, val_mask = _pad(list(val_parts))
  num_features = dataset.x.shape[1]
  mean = np.zeros((len(train_parts), num_features), np.float32)
  std = np.ones((len(train_parts), num_features), np.float32)
  if standardize:
    for f, part in enumerate(train_parts):
      # float64 makes a constant column's std exactly 0 (not ~1e-16, which would blow it up).
      rows = dataset.x[part].astype(np.float64)
      mean[f], std[f] = rows.mean(axis=0), rows.std(axis=0)
  std[std == 0] = 1.0
  extra = dict(zip(("outer_test_idx", "outer_test_mask"), _pad(list(outer)))) if outer else {}
  return Splits(train_idx, train_mask, val_idx, val_mask, mean, std,
                test_idx=np.zeros(0, np.int32) if test is None else test, **extra)


def fold_splits(dataset: Dataset, standardize: bool, train_parts: Sequence[np.ndarray],
                val_parts: Sequence[np.ndarray]) -> Splits:
  """`Splits` whose fold f trains on rows `train_parts[f]` and validates on `val_parts[f]`.

  For splits of one's own (e.g. refitting each outer fold's choice on its training part and
  scoring it on its test part); each fold is standardized by its training rows if asked.
  """
  return _fold_splits(dataset, standardize, train_parts, val_parts)


def _nested(dataset: Dataset, cfg: DataConfig, labels: np.ndarray | None, need: int,
            rng: np.random.Generator, rows: np.ndarray
            ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
  """Nested cross-validation's folds: (inner training parts, inner validation parts, outer
  test parts), the inner ones outer fold by outer fold (see `make_splits`)."""
  k = cfg.outer_folds
  size = len(rows) if cfg.train_size is None else cfg.train_size
  if not need <= size <= len(rows):
    raise ConfigError(f"train_size={size} does not fit {dataset.name!r}: the pool of nested "
                      f"cross-validation needs {need}..{len(rows)} examples")
  pool, _ = stratified_draw(rows, labels, size, rng, keep_each=False)
  smallest = int(np.bincount(labels[pool]).min()) if labels is not None else size
  if k > smallest:
    what = (f"the smallest class count among the {size} examples" if labels is not None
            else f"the {size} examples")
    raise ConfigError(
        f"outer_folds={k} is more than {smallest}, {what}; every outer fold must test "
        f"{'each class' if labels is not None else 'an example'}; valid: "
        f"{f'2..{smallest}' if smallest >= 2 else 'none, use a larger train_size'}")
  outer = _kfold(pool, labels, k, rng)
  train_parts, val_parts = [], []
  for o in range(k):
    part = np.sort(np.concatenate(outer[:o] + outer[o + 1:]))
    if cfg.folds is None:
      val, train, _ = _holdout(dataset, cfg, labels, need, rng, part)
      train_parts.append(train)
      val_parts.append(val)
      continue
    inner = int(np.bincount(labels[part]).min()) if labels is not None else len(part)
    if cfg.folds > inner:
      raise ConfigError(
          f"folds={cfg.folds} is more than {inner}, the smallest class count of outer fold "
          f"{o}'s {len(part)} training examples; every inner fold must hold each class; "
          f"valid: {f'2..{inner}' if inner >= 2 else 'none, use a larger train_size'}")
    parts = _kfold(part, labels, cfg.folds, rng)
    val_parts += parts
    train_parts += [np.sort(np.concatenate(parts[:f] + parts[f + 1:]))
                    for f in range(cfg.folds)]
  return train_parts, val_parts, outer
