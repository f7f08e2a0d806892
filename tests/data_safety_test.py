"""Hostile input to data files and checkpoints: refused in one line, never wrong, never lost.

Cheap: no subprocesses, and nothing here compiles a training program (the resume case checks
a checkpoint against `engine.group_config`, which `_plan_group` uses, at the function level).
"""

from __future__ import annotations

import errno
import io
import os
import warnings
import zipfile

import numpy as np
import pytest

import lr_jax
from lr_jax import checkpoint, cli, data, engine
from lr_jax.config import DataConfig
from lr_jax.errors import ConfigError


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _refused(make, pattern):
  with pytest.raises(ConfigError, match=pattern) as info:
    make()
  msg = str(info.value)
  assert "\n" not in msg
  return msg


def _rows(splits, f, which):
  return getattr(splits, f"{which}_idx")[f][getattr(splits, f"{which}_mask")[f]]


# ------------------------------------------------------------------ 1. duplicated column names


def test_duplicated_csv_column_names_are_refused_naming_them_and_the_file(tmp_path):
  rows = "".join(f"{i},{i * 2},{i % 3},{i % 2}\n" for i in range(12))
  dup = _write(tmp_path, "dup.csv", "a,a,c,label\n" + rows)
  _refused(lambda: data.load_dataset(DataConfig(dataset=dup)),
           r"header of '.*dup\.csv' names a column more than once: 'a' \(columns 1, 2\)")
  labels = _write(tmp_path, "labels.csv", "a,label,c,label\n" + rows)
  _refused(lambda: data.load_dataset(DataConfig(dataset=labels, label_column="label")),
           r"header of '.*labels\.csv' .*'label' \(columns 2, 4\)")
  two = _write(tmp_path, "two.csv", "a,b,a,b\n" + rows)
  _refused(lambda: data.load_dataset(DataConfig(dataset=two)),
           r"two\.csv' names columns more than once: 'a' \(columns 1, 3\); 'b' \(columns 2, 4\)")
  # A validation file is matched to the training file by name: a repeated name there is
  # refused too, naming that file, instead of reading one column twice.
  train = _write(tmp_path, "train.csv", "a,b,c,label\n" + rows)
  valid = _write(tmp_path, "valid.csv", "a,a,c,label\n1,2,0,0\n3,4,1,1\n")
  _refused(lambda: data.load_dataset(DataConfig(dataset=train, val_dataset=valid)),
           r"header of '.*valid\.csv' names a column more than once: 'a'")
  assert data.load_dataset(DataConfig(dataset=train)).feature_names == ("a", "b", "c")


# ------------------------------------------------------------------ 2. the data changed on resume


def _csv(path, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(40, 3))
  y = (x[:, 0] > 0).astype(int)
  path.write_text("a,b,c,label\n" + "".join(f"{r[0]},{r[1]},{r[2]},{v}\n" for r, v in zip(x, y)))


def _config(path):
  exp = lr_jax.Experiment(data=DataConfig(dataset=str(path)),
                          model=lr_jax.ModelConfig(hidden=()),
                          train=lr_jax.TrainConfig(epochs=2, patience=0))
  return engine.group_config(engine.plan_sweep(exp, lr_jax.Grid(learning_rates=(1e-3,)))[0])


def test_resume_after_the_data_file_changed_under_its_name_is_refused_saying_so(tmp_path):
  path, ck = tmp_path / "d.csv", str(tmp_path / "group0.npz")
  _csv(path, 0)
  checkpoint.save(ck, {"w": np.zeros(2)}, _config(path))
  np.testing.assert_array_equal(checkpoint.load(ck, _config(path))["w"], np.zeros(2))
  _csv(path, 1)  # Same name, same shape, other rows.
  pattern = (r"checkpoint .*group0\.npz was written with other data: the content of "
             r"'.*d\.csv' changed since; resume with the data it was written with")
  # In this process (whose loaded data set may be cached under the file's name) ...
  _refused(lambda: checkpoint.load(ck, _config(path)), pattern)
  # ... and in a new one, which reads the file afresh.
  engine.plan._load_cached.cache_clear()
  _refused(lambda: checkpoint.load(ck, _config(path)), pattern)
  # A changed flag is still named as the flag, not as changed data.
  _csv(path, 0)
  engine.plan._load_cached.cache_clear()
  config = _config(path)
  config["data"]["data_seed"] = 1
  _refused(lambda: checkpoint.load(ck, config), r"different configuration: data\.data_seed")


# ------------------------------------------------------------------ 3. k-fold uses every row


def test_kfold_partitions_every_row_that_is_not_a_test_row(tmp_path):
  digits = data.load_dataset(DataConfig())
  for cfg in (DataConfig(folds=5), DataConfig(folds=5, val_fraction=0.5)):
    splits = data.make_splits(digits, cfg)
    vals = np.concatenate([_rows(splits, f, "val") for f in range(5)])
    np.testing.assert_array_equal(np.sort(vals), np.arange(1797))  # An exact partition.
    assert splits.val_sizes.sum() == 1797 and np.ptp(splits.val_sizes) <= 1
    for f in range(5):
      np.testing.assert_array_equal(_rows(splits, f, "train"),
                                    np.setdiff1d(np.arange(1797), _rows(splits, f, "val")))
  # With a test set: every other row, and no test row.
  splits = data.make_splits(digits, DataConfig(folds=5, test_fraction=0.2))
  vals = np.concatenate([_rows(splits, f, "val") for f in range(5)])
  assert len(splits.test_idx) == 360 and len(vals) == 1797 - 360
  np.testing.assert_array_equal(np.sort(np.concatenate([vals, splits.test_idx])), np.arange(1797))
  # train_size subsamples all of them (1600 > the 1437 a holdout would leave).
  splits = data.make_splits(digits, DataConfig(folds=4, train_size=1600))
  assert splits.val_sizes.sum() == 1600
  _refused(lambda: data.make_splits(digits, DataConfig(folds=4, train_size=1798)),
           r"train_size=1798 is larger than the training pool of 1797 examples \(1797\); "
           r"valid: 10\.\.1797")
  linear = data.load_dataset(DataConfig(dataset="linear", num_samples=40))
  splits = data.make_splits(linear, DataConfig(dataset="linear", num_samples=40, folds=3))
  assert sorted(splits.val_sizes.tolist()) == [13, 13, 14]


# ------------------------------------------------------------------ 4. never advise unpickling


def _zip(path, members):
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w") as z:
    for name, blob in members.items():
      z.writestr(name, blob)
  path.write_bytes(buf.getvalue())
  return str(path)


def test_corrupted_checkpoints_and_npz_files_are_refused_without_pickle_advice(tmp_path):
  rng = np.random.default_rng(0)
  objects = io.BytesIO()
  np.save(objects, np.array([1, "a", None], object), allow_pickle=True)
  junk = {
      "random": lambda p: (p.write_bytes(rng.bytes(512)), str(p))[1],
      "not_npy_members": lambda p: _zip(p, {"x.npy": rng.bytes(64), "y.npy": rng.bytes(64)}),
      "object_array": lambda p: _zip(p, {"__fingerprint__.npy": objects.getvalue(),
                                         "__config__.npy": objects.getvalue()}),
  }
  for name, make in junk.items():
    ck = make(tmp_path / f"group_{name}.npz")
    msg = _refused(lambda: checkpoint.load(ck, {"a": 1}),
                   r"checkpoint .*group_\w+\.npz is corrupted: not a valid lr_jax checkpoint")
    assert "allow_pickle" not in msg and "pickle.load" not in msg, (name, msg)
  # A checkpoint that cannot be read is not called corrupted.
  ck = str(tmp_path / "group0.npz")
  checkpoint.save(ck, {"w": np.zeros(2)}, {"a": 1})
  def deny(path, *args, **kwargs):
    raise _denied(path)

  with pytest.MonkeyPatch.context() as m:
    m.setattr(checkpoint, "open", deny, raising=False)
    _refused(lambda: checkpoint.load(ck, {"a": 1}),
             r"^cannot read checkpoint .*group0\.npz \(Permission denied\)")
  for name in ("random", "not_npy_members"):
    path = junk[name](tmp_path / f"data_{name}.npz")
    msg = _refused(lambda: data.load_dataset(DataConfig(dataset=path)),
                   r"data file '.*data_\w+\.npz' is not a valid \.npz archive")
    assert "allow_pickle" not in msg and "pickle.load" not in msg, (name, msg)


# ------------------------------------------------------------------ 5. unreadable, a directory


def _denied(path):
  return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)


def test_an_unreadable_data_file_and_a_directory_are_each_one_accurate_line(
    tmp_path, monkeypatch):
  csv_path = _write(tmp_path, "d.csv", "a,label\n1,0\n2,1\n3,0\n4,1\n")
  npz_path = str(tmp_path / "d.npz")
  np.savez(npz_path, x=np.zeros((4, 2)), y=np.arange(4) % 2)
  if os.geteuid() != 0:  # root reads a mode-000 file anyway: then only the simulation below.
    os.chmod(csv_path, 0)
    try:
      _refused(lambda: data.load_dataset(DataConfig(dataset=csv_path)),
               r"cannot read data file '.*d\.csv': Permission denied")
    finally:
      os.chmod(csv_path, 0o644)
  real_open, real_load = open, np.load

  def deny_open(path, *args, **kwargs):
    if str(path) in (csv_path, npz_path):
      raise _denied(path)
    return real_open(path, *args, **kwargs)

  with monkeypatch.context() as m:
    m.setattr(data.files, "open", deny_open, raising=False)  # The readers' module.
    for path in (csv_path, npz_path):
      _refused(lambda: data.load_dataset(DataConfig(dataset=path)),
               rf"^cannot read data file '{path}': Permission denied$")
    _refused(lambda: data.load_dataset(DataConfig(
        dataset=_write(tmp_path, "t.csv", "a,label\n1,0\n2,1\n"), val_dataset=csv_path)),
        r"^cannot read validation file '.*d\.csv': Permission denied$")

  def deny_load(path, *args, **kwargs):
    if str(path) == npz_path:
      raise _denied(path)
    return real_load(path, *args, **kwargs)

  with monkeypatch.context() as m:  # The first bytes readable, the archive not.
    m.setattr(np, "load", deny_load)
    _refused(lambda: data.load_dataset(DataConfig(dataset=npz_path)),
             r"^cannot read data file '.*d\.npz': Permission denied$")

  for name in ("folder.csv", "folder.npz"):  # Named as a data file: refused as one.
    (tmp_path / name).mkdir()
    _refused(lambda: data.load_dataset(DataConfig(dataset=str(tmp_path / name))),
             rf"^data file '.*{name}' is a directory, not a file; give a \.npz or \.csv file$")
  (tmp_path / "folder").mkdir()  # Any other folder is read as a folder of images.
  _refused(lambda: data.load_dataset(DataConfig(dataset=str(tmp_path / "folder"))),
           r"^image folder '.*folder' has no class folders")
  _refused(lambda: data.load_dataset(DataConfig(dataset=csv_path,
                                                val_dataset=str(tmp_path / "folder.csv"))),
           r"^validation file '.*folder\.csv' is a directory, not a file")


# ------------------------------------------------------------------ 6. a full disk


def test_a_full_disk_keeps_the_previous_checkpoint_and_exits_2_in_one_line(
    tmp_path, monkeypatch, capsys):
  path = str(tmp_path / "group0.npz")
  config = {"grid": {"learning_rates": [0.001]}}
  checkpoint.save(path, {"w": np.zeros(1000, np.float32)}, config)

  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "fsync", full)  # The data written, not yet on disk: the disk is full.
  msg = _refused(lambda: checkpoint.save(path, {"w": np.ones(1000, np.float32)}, config),
                 r"^could not write checkpoint .*group0\.npz \(No space left on device\); the "
                 r"previous checkpoint there is unchanged, and --resume continues from it$")
  with pytest.raises(SystemExit) as exit_info:  # What the scripts do with it.
    cli.run_main(lambda: checkpoint.save(path, {"w": np.ones(1000, np.float32)}, config))
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == f"error: {msg}\n"
  monkeypatch.undo()
  np.testing.assert_array_equal(checkpoint.load(path, config)["w"], np.zeros(1000, np.float32))
  assert os.listdir(tmp_path) == ["group0.npz"]  # No partial file left behind.


# ------------------------------------------------------------------ 7. counts read as classes


def test_whole_number_targets_read_as_many_classes_warn_visibly():
  import sklearn.datasets
  x, y = sklearn.datasets.load_diabetes(return_X_y=True)
  with pytest.warns(UserWarning, match=r"'diabetes': its whole-number labels were read as 214 "
                                       r"classes in 442 rows.*task='regression'"):
    ds = data.Dataset.from_arrays(x, y.astype(np.float32), name="diabetes")
  assert ds.num_classes == 214
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # None of these warns.
    assert data.Dataset.from_arrays(x, y, task="regression").task == "regression"
    rng = np.random.default_rng(0)
    data.Dataset.from_arrays(rng.normal(size=(1000, 2)), np.arange(1000) % 20)  # 2% of rows
    data.Dataset.from_arrays(rng.normal(size=(50, 2)), np.arange(50) % 10)  # 10 classes


def test_a_data_file_rewritten_under_its_name_is_loaded_afresh(tmp_path):
  # A notebook reruns its sweep after rewriting the file: the process's cache of loaded data
  # sets must not hand it the old arrays.
  path = tmp_path / "d.csv"
  _csv(path, 0)
  first = engine.plan._load(DataConfig(dataset=str(path)))
  assert engine.plan._load(DataConfig(dataset=str(path))) is first  # Unchanged: the cached arrays.
  _csv(path, 1)
  os.utime(path, ns=(0, 10**9))  # Another mtime even where the clock's tick is coarse.
  second = engine.plan._load(DataConfig(dataset=str(path)))
  assert second is not first and not np.array_equal(second.x, first.x)
