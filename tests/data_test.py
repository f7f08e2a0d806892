"""Tests of lr_jax.data: built-in data sets, files, splits and their refusals."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from absl import flags

from lr_jax import data
from lr_jax.config import DataConfig
from lr_jax.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
  return data.load_dataset(DataConfig())


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _npz(tmp_path, name, **arrays):
  path = tmp_path / name
  np.savez(path, **arrays)
  return str(path)


def _rows(splits, f, which="train"):
  idx, mask = getattr(splits, f"{which}_idx")[f], getattr(splits, f"{which}_mask")[f]
  return idx[mask]


# ------------------------------------------------------------------------------ data sets


@pytest.mark.parametrize("name, n, d, task, classes, shape", [
    ("digits", 1797, 64, "classification", 10, (8, 8, 1)),
    ("iris", 150, 4, "classification", 3, (4,)),
    ("wine", 178, 13, "classification", 3, (13,)),
    ("breast_cancer", 569, 30, "classification", 2, (30,)),
    ("moons", 1000, 2, "classification", 2, (2,)),
    ("spirals", 1000, 2, "classification", 2, (2,)),
    ("blobs", 1000, 2, "classification", 4, (2,)),
    ("linear", 1000, 8, "regression", 0, (8,)),
    ("teacher", 1000, 8, "regression", 0, (8,)),
])
def test_builtin_shapes_and_dtypes(name, n, d, task, classes, shape):
  ds = data.load_dataset(DataConfig(dataset=name))
  assert ds.name == name and ds.task == task and ds.num_classes == classes
  assert ds.x.shape == (n, d) and ds.x.dtype == np.float32 and ds.y.shape == (n,)
  assert ds.feature_shape == shape and np.prod(shape) == d
  assert np.isfinite(ds.x).all() and not ds.x.flags.writeable
  if task == "classification":
    assert ds.y.dtype == np.int32 and set(np.unique(ds.y)) == set(range(classes))
  else:
    assert ds.y.dtype == np.float32 and ds.y.std() > 0.3


@pytest.fixture
def data_cache(tmp_path, monkeypatch):
  """scikit-learn's data sets kept in `tmp_path/cache` (`LR_JAX_DATA_CACHE`), read afresh."""
  from lr_jax.data import builtin
  monkeypatch.setenv("LR_JAX_DATA_CACHE", str(tmp_path / "cache"))
  builtin._sklearn_arrays.cache_clear()
  yield tmp_path / "cache"
  builtin._sklearn_arrays.cache_clear()


def _sklearn(name):
  import sklearn.datasets
  bunch = getattr(sklearn.datasets, f"load_{name}")()
  return bunch.data, bunch.target, list(bunch.feature_names)


def test_a_scikit_learn_data_set_is_kept_and_read_back_the_same_without_scikit_learn(
    data_cache):
  import subprocess
  import sys
  from lr_jax.data import builtin
  x, y, columns = builtin._sklearn_arrays("wine")
  (path,) = data_cache.iterdir()
  assert path.name.startswith("wine-scikit-learn-") and path.suffix == ".npz"
  want_x, want_y, want_columns = _sklearn("wine")
  np.testing.assert_array_equal(x, want_x)
  np.testing.assert_array_equal(y, want_y)
  assert x.dtype == want_x.dtype and y.dtype == want_y.dtype and columns == want_columns
  # A new process reads the file: the same data set, and scikit-learn (a second) not imported.
  code = ("import sys, lr_jax; ds = lr_jax.load_dataset(lr_jax.DataConfig(dataset='wine')); "
          "print('sklearn' in sys.modules, repr(ds.x.sum()), ds.feature_names[0])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=120).stdout.split()
  here = data.load_dataset(DataConfig(dataset="wine"))
  assert out == ["False", repr(here.x.sum()), here.feature_names[0]]


def test_a_damaged_or_unwritable_cache_gives_scikit_learns_arrays(data_cache, tmp_path,
                                                                  monkeypatch):
  from lr_jax.data import builtin
  want_x, want_y, _ = _sklearn("iris")
  builtin._sklearn_arrays("iris")
  (path,) = data_cache.iterdir()
  path.write_bytes(path.read_bytes()[:100])  # A file cut short: read again from scikit-learn.
  builtin._sklearn_arrays.cache_clear()
  x, y, _ = builtin._sklearn_arrays("iris")
  np.testing.assert_array_equal(x, want_x)
  np.testing.assert_array_equal(y, want_y)
  assert builtin._read_cached(str(path)) is not None  # ... and written whole again.
  (tmp_path / "a_file").write_text("")  # A cache folder that cannot be made: no cache, no error.
  monkeypatch.setenv("LR_JAX_DATA_CACHE", str(tmp_path / "a_file" / "cache"))
  builtin._sklearn_arrays.cache_clear()
  x, _, _ = builtin._sklearn_arrays("iris")
  np.testing.assert_array_equal(x, want_x)


def test_synthetic_sets_follow_the_config():
  a = data.load_dataset(DataConfig(dataset="spirals", num_samples=101, data_seed=3))
  b = data.load_dataset(DataConfig(dataset="spirals", num_samples=101, data_seed=3))
  c = data.load_dataset(DataConfig(dataset="spirals", num_samples=101, data_seed=4))
  assert a.x.shape == (101, 2) and np.bincount(a.y).tolist() == [51, 50]
  np.testing.assert_array_equal(a.x, b.x)
  assert not np.array_equal(a.x, c.x)
  # Without noise the moons lie exactly on their two unit half circles.
  moons = data.load_dataset(DataConfig(dataset="moons", noise=0.0, num_samples=40))
  outer, inner = moons.x[moons.y == 0], moons.x[moons.y == 1] - np.array([1, 0.5], np.float32)
  np.testing.assert_allclose(np.linalg.norm(outer, axis=1), 1, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(inner, axis=1), 1, atol=1e-6)
  # The target function is fixed; noise only adds to it.
  clean = data.load_dataset(DataConfig(dataset="linear", noise=0.0, num_samples=50))
  noisy = data.load_dataset(DataConfig(dataset="linear", noise=0.5, num_samples=50))
  np.testing.assert_array_equal(clean.x, noisy.x)
  assert 0.3 < np.std(noisy.y - clean.y) < 0.7


# ------------------------------------------------------------------------------ splits


def test_digits_holdout_is_disjoint_complete_and_stratified(digits):
  splits = data.make_splits(digits, DataConfig())
  assert splits.num_folds == 1 and splits.train_sizes.tolist() == [1437]
  assert splits.val_sizes.tolist() == [360] and splits.train_mask.all() and splits.val_mask.all()
  assert splits.train_idx.dtype == np.int32 and splits.val_idx.dtype == np.int32
  train, val = _rows(splits, 0), _rows(splits, 0, "val")
  assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # Sorted, no repeats.
  np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1797))
  expected = 0.2 * np.bincount(digits.y)
  assert np.all(np.abs(np.bincount(digits.y[val]) - expected) <= 1)


def test_train_size_subsample_is_stratified_and_from_the_pool(digits):
  holdout = data.make_splits(digits, DataConfig())
  small = data.make_splits(digits, DataConfig(train_size=50))
  train = _rows(small, 0)
  assert len(train) == 50
  counts = np.bincount(digits.y[train], minlength=10)
  assert counts.min() >= 4 and counts.max() <= 6, counts
  assert np.isin(train, _rows(holdout, 0)).all()
  np.testing.assert_array_equal(small.val_idx, holdout.val_idx)
  # Barely more than the classes: every class is still present.
  tiny = data.make_splits(digits, DataConfig(train_size=12))
  assert np.bincount(digits.y[_rows(tiny, 0)], minlength=10).min() >= 1


def test_rare_classes_stay_on_both_sides(tmp_path):
  # Proportional shares alone would put both examples of a 2-example class in validation
  # (quota 1.5 at val_fraction 0.7), or none of a rare class in a tiny subsample (quota 0.23).
  for counts, cfg in (([2, 2, 8], DataConfig(val_fraction=0.7)),
                      ([3, 30], DataConfig(train_size=3))):
    y = np.repeat(np.arange(len(counts)), counts)
    path = _npz(tmp_path, "rare.npz", x=np.arange(len(y), dtype=np.float32), y=y)
    ds = data.load_dataset(DataConfig(dataset=path))
    for seed in range(5):
      splits = data.make_splits(ds, dataclasses.replace(cfg, data_seed=seed))
      assert set(ds.y[_rows(splits, 0)]) == set(range(len(counts)))
      assert set(ds.y[_rows(splits, 0, "val")]) == set(range(len(counts)))


@pytest.mark.parametrize("train_size", [50, 53])
def test_kfold_val_folds_partition_the_training_examples(digits, train_size):
  splits = data.make_splits(digits, DataConfig(train_size=train_size, folds=5))
  vals = [_rows(splits, f, "val") for f in range(5)]
  chosen = np.sort(np.concatenate(vals))
  assert len(np.unique(chosen)) == train_size  # The folds partition train_size distinct rows.
  for f in range(5):
    train = _rows(splits, f)
    np.testing.assert_array_equal(train, np.setdiff1d(chosen, vals[f]))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(vals[f]) > 0)
    assert set(digits.y[vals[f]]) == set(range(10))
  assert splits.val_sizes.sum() == train_size and np.ptp(splits.val_sizes) <= 1
  np.testing.assert_array_equal(splits.train_sizes, train_size - splits.val_sizes)
  assert splits.train_idx.shape == (5, splits.train_sizes.max())
  assert splits.val_idx.shape == (5, splits.val_sizes.max())
  assert np.all(splits.val_idx[~splits.val_mask] == 0)
  assert np.all(splits.train_idx[~splits.train_mask] == 0)
  if train_size == 53:
    assert not splits.val_mask.all()  # Uneven folds are padded.


def test_regression_kfold():
  ds = data.load_dataset(DataConfig(dataset="linear", num_samples=40))
  splits = data.make_splits(ds, DataConfig(dataset="linear", folds=3))
  assert sorted(splits.val_sizes.tolist()) == [13, 13, 14]  # Every one of the 40 rows.
  vals = np.concatenate([_rows(splits, f, "val") for f in range(3)])
  assert len(np.unique(vals)) == 40


def test_splits_depend_only_on_data_seed(digits):
  cfg = DataConfig(train_size=100, folds=4, data_seed=7)
  a, b = data.make_splits(digits, cfg), data.make_splits(digits, cfg)
  for field in ("train_idx", "train_mask", "val_idx", "val_mask", "mean", "std"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  c = data.make_splits(digits, DataConfig(train_size=100, folds=4, data_seed=8))
  assert not np.array_equal(a.train_idx, c.train_idx)
  assert not np.array_equal(a.mean, c.mean)


def test_standardization_uses_each_folds_training_rows_only(digits):
  splits = data.make_splits(digits, DataConfig(train_size=60, folds=3))
  assert splits.mean.shape == (3, 64) and splits.mean.dtype == np.float32
  for f in range(3):
    rows = digits.x[_rows(splits, f)].astype(np.float64)
    std = rows.std(axis=0)
    np.testing.assert_allclose(splits.mean[f], rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(splits.std[f], np.where(std == 0, 1, std), rtol=1e-6)
    assert (std == 0).any()  # Digits' border pixels: the 0 -> 1 rule is exercised.
  assert not np.array_equal(splits.mean[0], splits.mean[1])
  raw = data.make_splits(digits, DataConfig(train_size=60, folds=3, standardize=False))
  assert np.all(raw.mean == 0) and np.all(raw.std == 1) and raw.std.shape == (3, 64)


# ------------------------------------------------------------------------------ files


def test_csv_with_string_labels_and_a_named_label_column(tmp_path):
  rows = ["f1,species,f2"] + [f"{i},{'cat' if i % 3 else 'ant'},{i * 0.5}" for i in range(12)]
  path = _write(tmp_path, "pets.csv", "\n".join(rows) + "\n\n")
  ds = data.load_dataset(DataConfig(dataset=path, label_column="species"))
  assert ds.task == "classification" and ds.num_classes == 2 and ds.feature_shape == (2,)
  np.testing.assert_array_equal(ds.x[:, 0], np.arange(12))
  np.testing.assert_array_equal(ds.x[:, 1], np.arange(12) * 0.5)
  np.testing.assert_array_equal(ds.y, [0 if i % 3 == 0 else 1 for i in range(12)])  # ant < cat.
  by_index = data.load_dataset(DataConfig(dataset=path, label_column="1"))
  np.testing.assert_array_equal(by_index.y, ds.y)


def test_csv_numeric_labels_sort_as_numbers_and_infer_the_task(tmp_path):
  path = _write(tmp_path, "n.csv", "a,y\n1,10\n2,9\n3,10\n4,9\n")
  ds = data.load_dataset(DataConfig(dataset=path))
  np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])  # 9 < 10, not "10" < "9".
  path = _write(tmp_path, "r.csv", "a,y\n1,0.5\n2,1.5\n3,2.25\n")
  ds = data.load_dataset(DataConfig(dataset=path))
  assert ds.task == "regression" and ds.y.dtype == np.float32 and ds.num_classes == 0
  forced = data.load_dataset(DataConfig(dataset=path, task="classification"))
  assert forced.num_classes == 3


def test_npz_keeps_the_feature_shape(tmp_path):
  x = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
  path = _npz(tmp_path, "img.npz", x=x, y=np.array(["b", "a", "b", "a"]))
  ds = data.load_dataset(DataConfig(dataset=path))
  assert ds.feature_shape == (2, 3) and ds.x.shape == (4, 6) and ds.x.dtype == np.float32
  np.testing.assert_array_equal(ds.x, x.reshape(4, 6))
  np.testing.assert_array_equal(ds.y, [1, 0, 1, 0])


# ------------------------------------------------------------------------------ refusals


def _load(tmp_path, name, text, **cfg):
  return lambda: data.load_dataset(DataConfig(dataset=_write(tmp_path, name, text), **cfg))


def _split(name, **cfg):
  return lambda: data.make_splits(data.load_dataset(DataConfig(dataset=name)),
                                  DataConfig(dataset=name, **cfg))


ERRORS = {
    "unknown": (lambda t: lambda: data.load_dataset(DataConfig(dataset="digitz")),
                r"'digitz'.*digits, iris, wine, breast_cancer, moons.*\.npz or \.csv"),
    "missing": (lambda t: lambda: data.load_dataset(DataConfig(dataset=str(t / "no.csv"))),
                r"no\.csv' does not exist"),
    "extension": (lambda t: _load(t, "data.txt", "a,b\n1,2\n"), r"data\.txt.*\.npz or \.csv"),
    "empty": (lambda t: _load(t, "empty.csv", ""), r"empty\.csv' is empty"),
    "empty_npz": (lambda t: _load(t, "empty.npz", ""), r"empty\.npz' is empty"),
    "header_only": (lambda t: _load(t, "h.csv", "a,b,label\n"), r"h\.csv' has a header but no"),
    "ragged": (lambda t: _load(t, "r.csv", "a,b,label\n1,2,0\n3,1\n5,6,1\n"),
               r"line 3 .* 2 columns, the header has 3"),
    "text": (lambda t: _load(t, "t.csv", "a,b,label\n1,2,0\n3,oops,1\n"),
             r"'oops' in column 'b', line 3"),
    "blank_cell": (lambda t: _load(t, "bc.csv", "a,b,label\n1,,0\n3,4,1\n"),
                   r"empty value in column 'b', line 2"),
    "no_label": (lambda t: _load(t, "nl.csv", "a,b,c\n1,2,0\n3,4,1\n", label_column="label"),
                 r"'label' not found .*available columns: a, b, c"),
    "label_index": (lambda t: _load(t, "li.csv", "a,b,c\n1,2,0\n3,4,1\n", label_column="7"),
                    r"index 7 .*valid: 0\.\.2"),
    "nan": (lambda t: _load(t, "nan.csv", "a,b,label\n1,nan,0\n3,4,1\n5,inf,0\n7,8,1\n"),
            r"2 NaN or inf feature value\(s\), in column 'b'"),
    "nan_label": (lambda t: _load(t, "nl2.csv", "a,label\n1,0\n2,nan\n3,1\n"),
                  r"1 NaN or inf label"),
    "missing_label": (lambda t: _load(t, "ml.csv", "a,label\n1,0\n2,\n3,1\n"),
                      r"missing label in column 'label', line 3"),
    "one_class": (lambda t: _load(t, "one.csv", "a,label\n1,x\n2,x\n"),
                  r"at least 2 classes.*has 1 .*'x'"),
    "regression_text": (lambda t: _load(t, "rt.csv", "a,y\n1,x\n2,z\n", task="regression"),
                        r"'regression' needs numeric labels.*'x'"),
    "npz_no_x": (lambda t: lambda: data.load_dataset(DataConfig(
        dataset=_npz(t, "nox.npz", features=np.zeros((4, 2)), y=np.zeros(4)))),
                 r"no array 'x'; arrays present: features, y"),
    "npz_mismatch": (lambda t: lambda: data.load_dataset(DataConfig(
        dataset=_npz(t, "mm.npz", x=np.zeros((4, 2)), y=np.zeros(5)))),
                     r"4 rows of features but 5 labels"),
    "npz_inf": (lambda t: lambda: data.load_dataset(DataConfig(
        dataset=_npz(t, "inf.npz", x=np.array([[0, np.inf], [1, 2]]), y=np.arange(2)))),
                r"1 NaN or inf feature value\(s\), in feature index 1"),
    "npz_single_array": (lambda t: lambda: (np.save(t / "s.npy", np.zeros(3)), (t / "s.npy").rename(
        t / "s.npz"), data.load_dataset(DataConfig(dataset=str(t / "s.npz")))),
                         r"s\.npz' holds a single array"),
    "npz_corrupt": (lambda t: _load(t, "c.npz", "not a zip"),
                    r"c\.npz' is not a valid \.npz archive \(not a zip file\); save one with"),
    "npz_bad_zip": (lambda t: lambda: ((t / "z.npz").write_bytes(b"PK\x03\x04" + bytes(200)),
                                       data.load_dataset(DataConfig(dataset=str(t / "z.npz")))),
                    r"z\.npz' is not a valid \.npz archive \("),
    "npz_objects": (lambda t: lambda: data.load_dataset(DataConfig(dataset=_npz(
        t, "o.npz", x=np.zeros((3, 2)), y=np.array([1, "a", None], object)))),
                    r"array 'y' of .*o\.npz' holds Python objects"),
    "npz_scalar_x": (lambda t: lambda: data.load_dataset(DataConfig(
        dataset=_npz(t, "s0.npz", x=np.float64(3.0), y=np.zeros(1)))),
                     r"features x of .*s0\.npz' must be an array \[examples, features\.\.\.\], "
                     r"got a 0-dimensional"),
    "csv_no_header": (lambda t: _load(t, "nh.csv", "1.5,2,0\n3,4,1\n5,6,0\n"),
                      r"first line of .*nh\.csv' is all numbers \(1\.5,2,0\), not a header.*"
                      r"e\.g\. x1,x2,label$"),
    "csv_no_header_wide": (lambda t: _load(t, "nw.csv", "1,2,3,4,5,6\n3,4,1,1,1,1\n"),
                           r"all numbers \(1,2,3,4,\.\.\.\).*e\.g\. x1,x2,x3,\.\.\.,label$"),
    "counts_singleton": (lambda t: lambda: data.make_splits(data.load_dataset(DataConfig(
        dataset=_write(t, "counts.csv", "a,n\n1,0\n2,0\n3,7\n4,1\n5,1\n"))), DataConfig()),
                         r"class 2 of .* has 1 example.*pass task='regression' "
                         r"\(--task=regression\)"),
    "train_size_big": (lambda t: _split("digits", train_size=1500),
                       r"train_size=1500 .*pool of 1437 examples"),
    "train_size_small": (lambda t: _split("digits", train_size=5),
                         r"train_size=5 is smaller than the 10 classes"),
    "folds_class": (lambda t: _split("digits", train_size=20, folds=3),
                    r"folds=3 is more than 2, the smallest class count.*valid: 2\.\.2"),
    "folds_regression": (lambda t: _split("linear", train_size=3, folds=4),
                         r"folds=4 is more than the 3 training examples"),
    "val_too_few": (lambda t: _split("iris", val_fraction=0.01),
                    r"val_fraction=0\.01 holds out 2 of 150 examples, fewer than the 3 classes"),
    "pool_empty": (lambda t: _split("iris", val_fraction=0.99),
                   r"val_fraction=0\.99 leaves 1 of 150 .*fewer than 3"),
    "singleton_class": (lambda t: lambda: data.make_splits(data.load_dataset(DataConfig(
        dataset=_write(t, "s.csv", "a,label\n1,x\n2,x\n3,y\n"))), DataConfig()),
                        r"class 1 of .* has 1 example"),
    "num_samples": (lambda t: lambda: data.load_dataset(DataConfig(dataset="blobs", num_samples=5)),
                    r"num_samples=5 is too small for 'blobs'.*>= 8"),
    "task_builtin": (lambda t: lambda: data.load_dataset(DataConfig(task="regression")),
                     r"'digits' is a classification data set, got task='regression'"),
    "data_seed": (lambda t: _split("iris", data_seed=-1), r"data_seed .* got -1"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_raises_one_line_config_error(tmp_path, case):
  make, pattern = ERRORS[case]
  with pytest.raises(ConfigError, match=pattern) as info:
    make(tmp_path)()
  assert "\n" not in str(info.value)


def test_file_errors_never_advise_loading_pickles(tmp_path):
  # numpy reads any file that is neither a zip nor a .npy as a pickle, and its error advises
  # `allow_pickle=True`: never pass that advice on.
  junk = tmp_path / "junk.npz"
  junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
  pickled = tmp_path / "p.npz"
  pickled.write_bytes(b"\x80\x04\x95" + bytes(64))
  for path in (junk, pickled):
    with pytest.raises(ConfigError, match=r"is not a valid \.npz archive") as info:
      data.load_dataset(DataConfig(dataset=str(path)))
    assert "pickle" not in str(info.value).replace(str(tmp_path), "")


# ------------------------------------------------------------------------------ task


def _counts_csv(tmp_path):
  """Integer targets (counts): 0..4 each 8 times, x the count plus a little."""
  n = np.repeat(np.arange(5), 8)
  rows = ["x,count"] + [f"{c + 0.01 * i},{c}" for i, c in enumerate(n)]
  return _write(tmp_path, "counts.csv", "\n".join(rows) + "\n")


def test_inferred_task_is_logged_once_with_its_reason_and_the_override(tmp_path, caplog):
  # On the absl logger itself: once any test has parsed absl flags, --verbosity holds it at
  # WARNING, whatever the root logger says.
  caplog.set_level(logging.INFO, logger="absl")
  path = _counts_csv(tmp_path)
  ds = data.load_dataset(DataConfig(dataset=path))
  assert ds.task == "classification" and ds.num_classes == 5
  data.load_dataset(DataConfig(dataset=path, data_seed=3))  # Loaded again: not logged again.
  lines = [r.getMessage() for r in caplog.records if "task" in r.getMessage()]
  assert lines == [f"data set {path!r}: task classification (inferred: 5 distinct integer "
                   "labels; pass task='regression' (--task=regression) to override)"], lines
  path = _write(tmp_path, "r.csv", "a,y\n1,0.5\n2,1.5\n3,2.25\n")
  assert data.load_dataset(DataConfig(dataset=path)).task == "regression"
  assert "inferred: the labels are not all integers; pass task='classification'" in (
      caplog.records[-1].getMessage())


def test_task_flag_trains_integer_targets_as_regression(tmp_path):
  from lr_jax import cli
  cli.define_sweep_flags()
  path = _counts_csv(tmp_path)
  try:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog", f"--dataset={path}", "--task=regression"])
    exp = cli.experiment_from_flags(flags.FLAGS)
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["prog", "--task=counts"])
    with pytest.raises(ConfigError, match=r"unknown task 'counts'; valid choices: "
                                          r"classification, regression"):
      cli.experiment_from_flags(flags.FLAGS)
  finally:
    flags.FLAGS.unparse_flags()
  assert exp.data.task == "regression"
  ds = data.load_dataset(exp.data)
  assert ds.task == "regression" and ds.num_classes == 0 and ds.y.dtype == np.float32
  np.testing.assert_array_equal(ds.y, np.repeat(np.arange(5), 8))
  assert ds.task_reason == "given"


def test_csv_first_row_of_data_is_not_taken_as_a_header(tmp_path):
  # A header with one name is a header: only an all-number first line is refused.
  path = _write(tmp_path, "h.csv", "1,2,label\n1,2,0\n3,4,1\n")
  assert data.load_dataset(DataConfig(dataset=path)).x.shape == (2, 2)
  path = _write(tmp_path, "nh.csv", "1,2,0\n1,2,0\n3,4,1\n")
  with pytest.raises(ConfigError, match=r"is all numbers \(1,2,0\), not a header"):
    data.load_dataset(DataConfig(dataset=path))


# --------------------------------------------------------------- arrays, given validation splits


def _separable(n, seed=0, labels=(-1, 1)):
  x = np.random.default_rng(seed).normal(size=(n, 3))
  return x, np.where(x[:, 0] + x[:, 1] > 0, labels[1], labels[0])


def test_from_arrays_encodes_any_labels_and_keeps_names():
  x, y = _separable(30)
  ds = data.Dataset.from_arrays(x, y, feature_names=["a", "b", "c"])
  assert ds.task == "classification" and ds.num_classes == 2 and ds.num_val == 0
  np.testing.assert_array_equal(ds.y, (y == 1).astype(np.int32))  # -1 -> 0, +1 -> 1
  assert ds.class_names == (-1, 1) and ds.feature_names == ("a", "b", "c")
  assert ds.x.dtype == np.float32 and not ds.x.flags.writeable
  # Text labels of both parts are encoded together: "dog" is one id in training and validation.
  ds = data.Dataset.from_arrays(x[:20], np.where(y[:20] > 0, "dog", "cat"), x[20:],
                                np.array(["dog"] * 10), class_names=["Cat", "Dog"])
  assert ds.class_names == ("Cat", "Dog") and ds.num_val == 10
  np.testing.assert_array_equal(ds.y[20:], np.ones(10))
  np.testing.assert_array_equal(ds.y[:20], (y[:20] > 0).astype(np.int32))
  # Images keep their shape for a CNN; a pandas-like object names its features.
  img = data.Dataset.from_arrays(np.zeros((4, 2, 2, 1)) + np.arange(4)[:, None, None, None],
                                 [0, 1, 0, 1])
  assert img.feature_shape == (2, 2, 1) and img.x.shape == (4, 4)

  class Frame:  # What a pandas DataFrame offers: its values and its columns.
    columns = ["u", "v", "w"]

    def __array__(self, dtype=None, copy=None):
      return x

  framed = data.Dataset.from_arrays(Frame(), np.array(["no", "yes"] * 15, dtype=object))
  assert framed.feature_names == ("u", "v", "w") and framed.class_names == ("no", "yes")


FROM_ARRAYS_ERRORS = {
    "nan": (lambda x, y: data.Dataset.from_arrays(np.where(np.arange(3) == 1, np.nan, x), y,
                                                  feature_names=["a", "b", "c"]),
            r"'arrays' has 30 NaN or inf feature value\(s\), in column 'b'"),
    "nan_val": (lambda x, y: data.Dataset.from_arrays(x[:20], y[:20], x[20:] * np.inf, y[20:]),
                r"'arrays \(x_val, y_val\)' has 30 NaN or inf feature"),
    "one_class": (lambda x, y: data.Dataset.from_arrays(x, np.ones(30)),
                  r"at least 2 classes, 'arrays' has 1 \(every label is 1\.0\)"),
    "unseen": (lambda x, y: data.Dataset.from_arrays(x[:20], y[:20], x[20:], np.full(10, 7)),
               r"labels of 'arrays \(x_val, y_val\)' hold 1 class\(es\) that the training data "
               r"'arrays' lacks: 7"),
    "kinds": (lambda x, y: data.Dataset.from_arrays(x[:20], y[:20], x[20:], ["a"] * 10),
              r"labels of 'arrays' are numbers, labels of .* are text"),
    "half_split": (lambda x, y: data.Dataset.from_arrays(x, y, x_val=x),
                   r"needs both x_val and y_val, got only x_val"),
    "val_shape": (lambda x, y: data.Dataset.from_arrays(x, y, x[:, :2], y),
                  r"examples of .* have shape \(2,\), those of 'arrays' \(3,\)"),
    "feature_names": (lambda x, y: data.Dataset.from_arrays(x, y, feature_names=["a"]),
                      r"1 feature names given for 'arrays', which has 3 features"),
    "class_names": (lambda x, y: data.Dataset.from_arrays(x, y, class_names=["a", "b", "c"]),
                    r"3 class names given for 'arrays', which has 2 classes \(-1, 1\)"),
    "lengths": (lambda x, y: data.Dataset.from_arrays(x, y[:5], name="mine"),
                r"'mine' has 30 rows of features but 5 labels"),
    "task": (lambda x, y: data.Dataset.from_arrays(x, y, task="ordinal"),
             r"unknown task 'ordinal'; valid choices: classification, regression"),
    "tuple": (lambda x, y: DataConfig(dataset=(x, y)),
              r"dataset must be a name, a file path or a lr_jax\.Dataset .*from_arrays.*tuple"),
    "folds": (lambda x, y: DataConfig(dataset=data.Dataset.from_arrays(x[:20], y[:20], x[20:],
                                                                       y[20:]), folds=2),
              r"folds=2 does not apply with a given validation split"),
    "val_fraction": (lambda x, y: DataConfig(dataset=data.Dataset.from_arrays(
        x[:20], y[:20], x[20:], y[20:]), val_fraction=0.5), r"val_fraction=0\.5 does not apply"),
    "make_splits_folds": (lambda x, y: data.make_splits(data.Dataset.from_arrays(
        x[:20], y[:20], x[20:], y[20:]), DataConfig(folds=2)),
                          r"folds=2 does not apply to 'arrays': its 10 validation rows"),
    "too_few_per_class": (lambda x, y: data.make_splits(data.Dataset.from_arrays(
        x, np.r_[np.zeros(29), 1]), DataConfig()), r"class 1 of 'arrays' has 1 example"),
}


@pytest.mark.parametrize("case", FROM_ARRAYS_ERRORS)
def test_from_arrays_refuses_what_a_file_would_with_one_line(case):
  make, pattern = FROM_ARRAYS_ERRORS[case]
  with pytest.raises(ConfigError, match=pattern) as info:
    make(*_separable(30))
  assert "\n" not in str(info.value)


def test_given_validation_split_is_used_as_is_and_train_size_subsamples_the_rest():
  x, y = _separable(200, seed=1)
  ds = data.Dataset.from_arrays(x[:150], y[:150], x[150:], y[150:])
  whole = data.make_splits(ds, DataConfig(dataset=ds))
  np.testing.assert_array_equal(_rows(whole, 0, "val"), np.arange(150, 200))
  np.testing.assert_array_equal(_rows(whole, 0), np.arange(150))
  small = data.make_splits(ds, DataConfig(dataset=ds, train_size=40, data_seed=3))
  train = _rows(small, 0)
  np.testing.assert_array_equal(_rows(small, 0, "val"), np.arange(150, 200))
  assert len(train) == 40 and train.max() < 150
  # Stratified as ever: the class shares of the 150 training rows, to within one example.
  share = np.bincount(ds.y[:150]) / 150 * 40
  assert np.all(np.abs(np.bincount(ds.y[train]) - share) <= 1)
  again = data.make_splits(ds, DataConfig(dataset=ds, train_size=40, data_seed=3))
  np.testing.assert_array_equal(again.train_idx, small.train_idx)
  # Standardized with the training rows' statistics only.
  np.testing.assert_allclose(small.mean[0], ds.x[train].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_a_dataset_object_is_its_own_cache_key():
  from lr_jax import engine
  from lr_jax.config import Experiment
  (x, y), (x2, y2) = _separable(60, seed=0), _separable(60, seed=1)
  first, second = data.Dataset.from_arrays(x, y), data.Dataset.from_arrays(x2, y2)
  assert first.name == second.name  # Both "arrays": a name-keyed cache would give back `first`.
  assert DataConfig(dataset=first) != DataConfig(dataset=second)
  assert engine.plan._load(DataConfig(dataset=first)) is first
  assert engine.plan._load(DataConfig(dataset=second)) is second
  exp = lambda ds: Experiment(data=DataConfig(dataset=ds, train_size=40))  # noqa: E731
  g1, g2 = (engine.plan_sweep(exp(ds), engine.Grid())[0] for ds in (first, second))
  np.testing.assert_array_equal(g2.dataset.x, second.x)
  hash(g1.experiment)
  key = engine.programs._compile_key
  assert key(g1) == key(g2)  # Same shapes: one program.


def _pets(tmp_path):
  train = _write(tmp_path, "train.csv",
                 "a,b,pet\n" + "".join(f"{i},{i % 3},{'dog' if i % 2 else 'cat'}\n"
                                       for i in range(12)))
  # The same columns in another order: matched by name.
  valid = _write(tmp_path, "valid.csv", "pet,b,a\ndog,7,70\ncat,8,80\ndog,9,90\n")
  return train, valid


def test_val_dataset_rows_are_exactly_the_files_rows(tmp_path):
  train, valid = _pets(tmp_path)
  cfg = DataConfig(dataset=train, val_dataset=valid, train_size=6, standardize=False)
  ds = data.load_dataset(cfg)
  assert ds.num_val == 3 and ds.class_names == ("cat", "dog") and ds.feature_names == ("a", "b")
  splits = data.make_splits(ds, cfg)
  val = _rows(splits, 0, "val")
  np.testing.assert_array_equal(ds.x[val], [[70, 7], [80, 8], [90, 9]])
  np.testing.assert_array_equal(ds.y[val], [1, 0, 1])  # dog, cat, dog: ids shared with train
  train_rows = _rows(splits, 0)
  assert len(train_rows) == 6 and train_rows.max() < 12
  np.testing.assert_array_equal(np.bincount(ds.y[train_rows]), [3, 3])
  # A .npz validation file works with a .npz training file.
  x, y = _separable(20)
  npz = data.load_dataset(DataConfig(dataset=_npz(tmp_path, "t.npz", x=x[:15], y=y[:15]),
                                     val_dataset=_npz(tmp_path, "v.npz", x=x[15:], y=y[15:])))
  np.testing.assert_array_equal(npz.x[15:], x[15:].astype(np.float32))
  assert npz.class_names == (-1, 1) and npz.num_val == 5


VAL_FILE_ERRORS = {
    "unseen": ("a,b,pet\n1,2,dog\n3,4,bird\n5,6,fish\n",
               r"labels of '.*v\.csv' hold 2 class\(es\) that the training data '.*train\.csv' "
               r"lacks: 'bird', 'fish'"),
    "columns": ("a,c,pet\n1,2,dog\n", r"columns of '.*v\.csv' differ from the training data's: "
                                      r"missing b; extra c"),
    "label": ("a,b,animal\n1,2,dog\n", r"label column 'pet' of the training data is not in "
                                       r"'.*v\.csv'; its columns: a, b, animal"),
    "nan": ("a,b,pet\n1,nan,dog\n", r"'.*v\.csv' has 1 NaN or inf feature value\(s\), in column "
                                    r"'b'"),
    "missing": (None, r"validation file '.*v\.csv' does not exist"),
}


@pytest.mark.parametrize("case", VAL_FILE_ERRORS)
def test_bad_val_dataset_is_refused_with_one_line(tmp_path, case):
  text, pattern = VAL_FILE_ERRORS[case]
  train, _ = _pets(tmp_path)
  valid = str(tmp_path / "v.csv") if text is None else _write(tmp_path, "v.csv", text)
  with pytest.raises(ConfigError, match=pattern) as info:
    data.load_dataset(DataConfig(dataset=train, val_dataset=valid))
  assert "\n" not in str(info.value)


def test_val_dataset_refuses_options_that_do_not_apply(tmp_path):
  train, valid = _pets(tmp_path)
  for cfg, pattern in (
      (dict(dataset=train, folds=3), r"folds=3 does not apply with a given validation split "
                                     r"\(val_dataset='.*valid\.csv'\)"),
      (dict(dataset=train, val_fraction=0.3), r"val_fraction=0\.3 does not apply"),
      (dict(dataset=data.Dataset.from_arrays(*_separable(10))), r"val_dataset=.* applies to "
                                                                r"data files")):
    with pytest.raises(ConfigError, match=pattern):
      DataConfig(val_dataset=valid, **cfg)
  with pytest.raises(ConfigError, match=r"val_dataset needs dataset to be a \.npz or \.csv"):
    data.load_dataset(DataConfig(dataset="iris", val_dataset=valid))


def test_test_dataset_rows_are_the_test_split_and_no_fold_sees_them(tmp_path):
  train, valid = _pets(tmp_path)
  test = _write(tmp_path, "test.csv", "b,pet,a\n5,cat,50\n6,dog,60\n")
  for extra in (dict(val_dataset=valid), dict(folds=2, train_size=8)):
    cfg = DataConfig(dataset=train, test_dataset=test, standardize=False, **extra)
    ds = data.load_dataset(cfg)
    assert ds.num_test == 2 and ds.num_val == (3 if "val_dataset" in extra else 0)
    splits = data.make_splits(ds, cfg)
    np.testing.assert_array_equal(ds.x[splits.test_idx], [[50, 5], [60, 6]])
    np.testing.assert_array_equal(ds.y[splits.test_idx], [0, 1])  # cat, dog: training's ids
    seen = np.concatenate([_rows(splits, f, w) for f in range(splits.num_folds)
                           for w in ("train", "val")])
    assert not np.isin(splits.test_idx, seen).any()
    if "val_dataset" in extra:  # The validation rows stay the validation file's.
      np.testing.assert_array_equal(ds.x[_rows(splits, 0, "val")], [[70, 7], [80, 8], [90, 9]])
  # Arrays in memory take a test split as files do.
  x, y = _separable(20)
  ds = data.Dataset.from_arrays(x[:14], y[:14], x[14:17], y[14:17], x_test=x[17:], y_test=y[17:])
  splits = data.make_splits(ds, DataConfig(dataset=ds))
  assert (ds.num_val, ds.num_test) == (3, 3)
  np.testing.assert_array_equal(ds.x[splits.test_idx], x[17:].astype(np.float32))
  np.testing.assert_array_equal(_rows(splits, 0, "val"), [14, 15, 16])


TEST_FILE_ERRORS = {
    "unseen": (dict(), "a,b,pet\n1,2,dog\n3,4,bird\n",
               r"^the labels of '.*t\.csv' hold 1 class\(es\) that the training data "
               r"'.*train\.csv' lacks: 'bird'"),
    "columns": (dict(), "a,c,pet\n1,2,dog\n",
                r"columns of '.*t\.csv' differ from the training data's: missing b; extra c"),
    "missing": (dict(), None, r"test file '.*t\.csv' does not exist"),
    "with_fraction": (dict(test_fraction=0.2), "a,b,pet\n1,2,dog\n",
                      r"test_dataset='.*t\.csv' and test_fraction=0\.2 both give a test set"),
    "builtin": (dict(dataset="iris"), "a,b,pet\n1,2,dog\n",
                r"test_dataset needs dataset to be a \.npz or \.csv file"),
}


@pytest.mark.parametrize("case", TEST_FILE_ERRORS)
def test_bad_test_dataset_is_refused_with_one_line(tmp_path, case):
  extra, text, pattern = TEST_FILE_ERRORS[case]
  train, _ = _pets(tmp_path)
  test = str(tmp_path / "t.csv") if text is None else _write(tmp_path, "t.csv", text)
  with pytest.raises(ConfigError, match=pattern) as info:
    data.load_dataset(DataConfig(**{"dataset": train, "test_dataset": test, **extra}))
  assert "\n" not in str(info.value)


def test_builtin_and_file_data_sets_name_their_features_and_classes(tmp_path):
  iris = data.load_dataset(DataConfig(dataset="iris"))
  assert iris.feature_names[0] == "sepal length (cm)" and iris.class_names == (0, 1, 2)
  path = _write(tmp_path, "s.csv", "w,h,size\n1,2,10\n3,4,-2.5\n5,6,10\n7,8,-2.5\n")
  ds = data.load_dataset(DataConfig(dataset=path, task="classification"))
  assert ds.feature_names == ("w", "h") and ds.class_names == (-2.5, 10)
