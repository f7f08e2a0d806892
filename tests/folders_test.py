"""A folder of images as a data set: reading, resizing, given splits, refusals, one CNN sweep."""

import os
import shutil

import numpy as np
import pytest
from absl import flags
from PIL import Image

import lr_jax
from lr_jax import cli, engine
from lr_jax.data import Dataset, content_fingerprint, load_dataset, make_splits

# Folder names sort otherwise than the digits they hold: class c is the c-th sorted name.
CLASSES = {"zero": 0, "one": 1, "two": 2}
SORTED = ("one", "two", "zero")
PER_CLASS = 12


def _digits():
  from sklearn.datasets import load_digits
  return load_digits()


def _save(path, pixels_HxW):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels_HxW).save(path)


def _write_digits(root, per_class=PER_CLASS, start=0):
  """Writes `root/<name>/<index>.png`, the digits' 0..16 scaled to 0..255; returns, per sorted
  class, the [n, 8, 8] source images (in [0, 1]) in file-name order."""
  d = _digits()
  out = {}
  for name, digit in CLASSES.items():
    idx = np.nonzero(d.target == digit)[0][start:start + per_class]
    for i in idx:
      _save(os.path.join(root, name, f"{i:04d}.png"),
            np.round(d.images[i] * 255 / 16).astype(np.uint8))
    out[name] = d.images[idx] / 16
  return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("images") / "digits")
  return root, _write_digits(root)


def _copy(folder, tmp_path):
  dst = str(tmp_path / "copy")
  shutil.copytree(folder[0], dst)
  return dst


def test_labels_are_the_sorted_class_folders_and_pixels_the_files(folder):
  root, source = folder
  ds = Dataset.from_folder(root)
  assert ds.class_names == SORTED and ds.num_classes == 3 and ds.task == "classification"
  assert ds.name == root and ds.feature_shape == (8, 8, 1) and ds.x.dtype == np.float32
  np.testing.assert_array_equal(ds.y, np.repeat(np.arange(3), PER_CLASS))
  expected = np.concatenate([source[name] for name in SORTED]).reshape(len(ds.y), -1)
  np.testing.assert_allclose(ds.x, expected, atol=1 / 255)
  assert ds.x.min() == 0 and ds.x.max() == 1  # A stroke's 16 is 255: exactly 1.
  assert ds.num_val == ds.num_test == 0


def test_color_and_image_size_give_the_feature_shape(folder):
  root, _ = folder
  gray = Dataset.from_folder(root)
  rgb = Dataset.from_folder(root, color="rgb")
  assert rgb.feature_shape == (8, 8, 3)
  channels = rgb.x.reshape(-1, 8, 8, 3)
  for c in range(3):  # Gray files: three equal channels, each the grayscale.
    np.testing.assert_array_equal(channels[..., c], gray.x.reshape(-1, 8, 8))
  assert Dataset.from_folder(root, image_size=4).feature_shape == (4, 4, 1)
  wide = Dataset.from_folder(root, image_size=(4, 6), color="rgb")
  assert wide.feature_shape == (4, 6, 3) and wide.x.shape == (36, 72)
  np.testing.assert_array_equal(Dataset.from_folder(root, image_size=8).x, gray.x)
  # Downsampling averages: a 4x4 image's mean is about the 8x8 image's.
  small = Dataset.from_folder(root, image_size=4).x
  np.testing.assert_allclose(small.mean(1), gray.x.mean(1), atol=0.05)


def test_hidden_files_and_folders_are_ignored(folder, tmp_path):
  root = _copy(folder, tmp_path)
  for path in (".DS_Store", "one/.DS_Store", "one/._0001.png"):
    with open(os.path.join(root, path), "wb") as f:
      f.write(b"\0\1junk")
  os.makedirs(os.path.join(root, ".ipynb_checkpoints", "x"))
  np.testing.assert_array_equal(Dataset.from_folder(root).x, Dataset.from_folder(folder[0]).x)


def _breaks(root):
  """name -> (how to break a copy of the folder, the words its one-line error must hold)."""
  j = lambda *p: os.path.join(root, *p)  # noqa: E731
  first = "0002.png"  # The first image of class "two": load_digits' rows 0..9 are 0..9.

  def write(path, data):
    with open(path, "wb") as f:
      f.write(data)

  def clip(path):
    with open(path, "rb") as f:
      data = f.read()
    write(path, data[:len(data) // 2])

  return {
      "not a folder": (lambda: (shutil.rmtree(root), write(root, b"x")),
                       [repr(root), "is not a folder", "DIR/<class>/*.png"]),
      "missing": (lambda: shutil.rmtree(root), [repr(root), "does not exist"]),
      "no class folders": (lambda: [shutil.rmtree(j(c)) for c in CLASSES],
                           [repr(root), "no class folders", "at least 2"]),
      "one class": (lambda: [shutil.rmtree(j(c)) for c in ("one", "two")],
                    [repr(root), "'zero'", "at least 2 classes"]),
      "empty class": (lambda: os.makedirs(j("three")), [repr(j("three")), "holds no images"]),
      "only hidden in a class": (
          lambda: (os.makedirs(j("three")), write(j("three", ".x.png"), b"")),
          [repr(j("three")), "holds no images"]),
      "corrupt image": (lambda: write(j("two", first), b"\x89PNG\r\n\x1a\nnot really"),
                        [repr(j("two", first)), "cannot read image"]),
      "truncated image": (lambda: clip(j("two", first)), [repr(j("two", first)), "cannot read"]),
      "empty image": (lambda: write(j("two", first), b""), [repr(j("two", first)), "PNG or JPEG"]),
      "mixed sizes": (lambda: _save(j("two", first), np.zeros((10, 12), np.uint8)),
                      [repr(j("two", first)), "10x12", "8x8", "image_size"]),
      "16-bit image": (lambda: Image.fromarray(np.zeros((8, 8), np.uint16)).save(j("two", first)),
                       [repr(j("two", first)), "mode I", "8 bits"]),
      "other extension": (lambda: write(j("one", "notes.txt"), b"hi"),
                          [repr(j("one", "notes.txt")), ".png, .jpg, .jpeg", "hidden"]),
      "file beside the classes": (lambda: write(j("README.md"), b"hi"),
                                  [repr(j("README.md")), "class folder"]),
      "folder in a class": (lambda: os.makedirs(j("one", "more")), [repr(j("one")), "'more'"]),
      "splits beside classes": (lambda: (os.makedirs(j("train")), os.makedirs(j("val"))),
                                [repr(root), "train, val", "'one'"]),
  }


BREAKS = list(_breaks("DIR"))


@pytest.mark.parametrize("case", BREAKS)
def test_a_bad_folder_is_refused_in_one_line_naming_it(folder, tmp_path, case):
  root = _copy(folder, tmp_path)
  assert sorted(os.listdir(os.path.join(root, "two")))[0] == "0002.png"
  breaking, needles = _breaks(root)[case]
  breaking()
  with pytest.raises(lr_jax.ConfigError) as e:
    Dataset.from_folder(root)
  message = str(e.value)
  assert "\n" not in message, message
  for needle in needles:
    assert needle in message, (needle, message)


@pytest.mark.parametrize("kwargs,needles", [
    (dict(color="hsv"), ["'hsv'", "grayscale, rgb"]),
    (dict(image_size=0), ["image_size", "> 0"]),
    (dict(image_size=(4, 4, 4)), ["image_size", "pair"]),
    (dict(image_size="8"), ["image_size", "'8'"]),
])
def test_bad_settings_are_refused_in_one_line(folder, kwargs, needles):
  with pytest.raises(lr_jax.ConfigError) as e:
    Dataset.from_folder(folder[0], **kwargs)
  assert "\n" not in str(e.value)
  for needle in needles:
    assert needle in str(e.value), (needle, str(e.value))


def _write_splits(root, test=True):
  _write_digits(os.path.join(root, "train"), per_class=6)
  _write_digits(os.path.join(root, "val"), per_class=3, start=6)
  if test:
    _write_digits(os.path.join(root, "test"), per_class=2, start=9)


def test_train_val_test_folders_are_the_given_splits(tmp_path):
  root = str(tmp_path / "splits")
  _write_splits(root)
  ds = load_dataset(lr_jax.DataConfig(dataset=root))
  assert (len(ds.y), ds.num_val, ds.num_test) == (18 + 9 + 6, 9, 6)
  assert ds.class_names == SORTED
  np.testing.assert_array_equal(ds.y[18:27], np.repeat(np.arange(3), 3))
  splits = make_splits(ds, lr_jax.DataConfig(dataset=root))
  assert splits.val_mask.sum() == 9 and splits.train_mask.sum() == 18
  assert sorted(splits.val_idx[0][splits.val_mask[0]]) == list(range(18, 27))
  assert sorted(splits.test_idx) == list(range(27, 33))
  # A test split is given alone too; validation is then drawn from train.
  shutil.rmtree(os.path.join(root, "val"))
  ds = Dataset.from_folder(root)
  assert (len(ds.y), ds.num_val, ds.num_test) == (24, 0, 6)


@pytest.mark.parametrize("change,cfg,needles", [
    (lambda r: shutil.rmtree(os.path.join(r, "val", "two")), {}, ["val", "missing 'two'"]),
    (lambda r: shutil.copytree(os.path.join(r, "val", "two"), os.path.join(r, "val", "three")),
     {}, ["val", "extra 'three'"]),
    (None, dict(val_fraction=0.3), ["val_fraction=0.3", "val"]),
    (None, dict(outer_folds=2), ["outer_folds=2", "val"]),
    (None, dict(folds=3), ["folds=3", "validation rows are given"]),
    (None, dict(val_dataset="v.csv"), ["val_dataset", "val/<class>/"]),
    (None, dict(label_column="y"), ["label_column", "class folders are the labels"]),
    (None, dict(task="regression"), ["classification", "task='regression'"]),
], ids=["missing class", "extra class", "val_fraction", "outer_folds", "folds", "val_dataset",
        "label_column", "task"])
def test_given_splits_refuse_what_does_not_apply(tmp_path, change, cfg, needles):
  root = str(tmp_path / "splits")
  _write_splits(root, test=False)
  if change:
    change(root)
  with pytest.raises(lr_jax.ConfigError) as e:
    data = lr_jax.DataConfig(dataset=root, **cfg)
    make_splits(load_dataset(data), data)
  assert "\n" not in str(e.value)
  for needle in needles:
    assert needle in str(e.value), (needle, str(e.value))


def test_image_settings_apply_to_folders_only(folder, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs("digits")  # A built-in name means the built-in set in every working directory.
  assert load_dataset(lr_jax.DataConfig(dataset="digits")).feature_shape == (8, 8, 1)
  for cfg, needle in ((dict(image_size=4), "image_size=4"), (dict(color="rgb"), "color='rgb'")):
    with pytest.raises(lr_jax.ConfigError, match=f"{needle} does not apply to dataset=digits "
                       r"\(only to a folder of images\)"):
      load_dataset(lr_jax.DataConfig(dataset="digits", **cfg))
  with open("d.csv", "w") as f:
    f.write("a,label\n1,0\n2,1\n")
  with pytest.raises(lr_jax.ConfigError, match="image_size=4 does not apply to dataset=d.csv"):
    load_dataset(lr_jax.DataConfig(dataset="d.csv", image_size=4))
  with pytest.raises(lr_jax.ConfigError, match="color='rgb' does not apply to dataset=arrays"):
    arrays = Dataset.from_arrays(np.eye(4), [0, 1, 0, 1])
    load_dataset(lr_jax.DataConfig(dataset=arrays, color="rgb"))
  with pytest.raises(lr_jax.ConfigError,
                     match="unknown color 'hsv'; valid choices: grayscale, rgb"):
    lr_jax.DataConfig(color="hsv")
  with pytest.raises(lr_jax.ConfigError, match="image_size must be > 0"):
    lr_jax.DataConfig(image_size=0)
  ds = load_dataset(lr_jax.DataConfig(dataset=folder[0], image_size=4, color="rgb"))
  assert ds.feature_shape == (4, 4, 3)


def test_the_content_fingerprint_of_a_folder_sees_a_changed_image(folder, tmp_path):
  root = _copy(folder, tmp_path)
  cfg = lr_jax.DataConfig(dataset=root)
  ds = load_dataset(cfg)
  before = content_fingerprint(ds, cfg)
  assert before == content_fingerprint(ds, cfg) and set(before) == {"arrays", "dataset"}
  with open(os.path.join(root, ".DS_Store"), "wb") as f:  # Ignored, as the reader ignores it.
    f.write(b"x")
  assert content_fingerprint(ds, cfg) == before
  path = os.path.join(root, "one", sorted(os.listdir(os.path.join(root, "one")))[0])
  _save(path, np.full((8, 8), 7, np.uint8))
  assert content_fingerprint(ds, cfg)["dataset"] != before["dataset"]
  assert lr_jax.data.config_dict(cfg)["dataset"] == root


def test_a_cnn_sweeps_on_a_folder(folder):
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset=folder[0], val_fraction=0.25),
      model=lr_jax.ModelConfig(name="cnn", hidden=(4,)),
      train=lr_jax.TrainConfig(epochs=2, patience=0, batch_size=9))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-2, 1e-1)))
  accuracy = result.rows["best_val_accuracy"]
  assert len(accuracy) == 2 and np.isfinite(accuracy).all(), accuracy
  assert np.isfinite(result.history["val_accuracy"]).all()


def test_the_flags_take_a_folder_and_refuse_image_size_elsewhere(folder, run_script):
  fv = flags.FlagValues()
  cli.define_flags(flag_values=fv)
  fv(["lr_sweep", f"--dataset={folder[0]}", "--image_size=4", "--color=rgb", "--model=cnn",
      "--batch_size=8"])
  exp = cli.experiment_from_flags(fv)
  assert (exp.data.dataset, exp.data.image_size, exp.data.color) == (folder[0], 4, "rgb")
  group = engine.plan_sweep(exp, cli.grid_from_flags(fv))[0]  # Loads and checks, compiles nothing.
  assert group.dataset.feature_shape == (4, 4, 3)
  for args, needles in ((["--image_size=4"], ["--image_size does not apply to --dataset=digits",
                                              "only to a folder of images"]),
                        ([f"--dataset={folder[0]}", "--color=hsv"], ["'hsv'", "grayscale, rgb"])):
    code, err = run_script(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
      assert needle in lines[0], (needle, lines[0])
