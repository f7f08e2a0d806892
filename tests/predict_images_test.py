"""A model trained on a folder of images predicts on new images: `experiments.predict --images`.

One CNN sweep on a small folder of digits (3 classes, 8x8 PNGs) and its refit, saved once; the
predict script's main runs in-process. The images are read as the training images were, so the
predictions are `TrainedModel.predict` on the very pixels, and the refusals are one line each,
with nothing written.
"""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import lr_jax
from lr_jax import export
from lr_jax.data import read_images

from predict_safety_test import _trained  # tests/ is on sys.path under pytest

CLASSES = {"zero": 0, "one": 1, "two": 2}
PER_CLASS = 10


def _save(path, pixels_HxW):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels_HxW).save(path)


def _write_digits(root, start=0, per_class=PER_CLASS):
  """Writes `root/<name>/<index>.png`, the digits' 0..16 scaled to 0..255."""
  from sklearn.datasets import load_digits
  d = load_digits()
  for name, digit in CLASSES.items():
    for i in np.nonzero(d.target == digit)[0][start:start + per_class]:
      _save(os.path.join(root, name, f"{i:04d}.png"),
            np.round(d.images[i] * 255 / 16).astype(np.uint8))


def _pixels(path):
  """An image as the model sees it, read here with Pillow alone: [8, 8, 1] in [0, 1]."""
  with Image.open(path) as image:
    return (np.asarray(image.convert("L"), np.float32) / np.float32(255))[..., None]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(the training folder, the saved model's folder, the refit TrainedModel)."""
  tmp = tmp_path_factory.mktemp("images")
  root = str(tmp / "train")
  _write_digits(root)
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset=root, val_fraction=0.25),
      model=lr_jax.ModelConfig(name="cnn", hidden=(4,)),
      train=lr_jax.TrainConfig(epochs=2, patience=0, batch_size=9))
  model = export.refit(lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-1,))))
  export.save_model(model, str(tmp / "model"))
  return root, str(tmp / "model"), model


def _rows(path):
  lines = open(path).read().splitlines()
  return lines[0].split(","), [line.split(",") for line in lines[1:]]


def _check_predictions(out, folder, files, model):
  header, rows = _rows(out)
  assert header == ["file", "prediction", "p_one", "p_two", "p_zero"], header
  assert [r[0] for r in rows] == list(files) == sorted(files)
  x = np.stack([_pixels(os.path.join(folder, f)) for f in files])
  names, read = read_images(folder)  # The library's reading: the same pixels, bit for bit.
  assert names == tuple(files)
  np.testing.assert_array_equal(read, x)
  assert [r[1] for r in rows] == model.predict(x).tolist()
  np.testing.assert_allclose(np.array([r[2:] for r in rows], float), model.predict_proba(x),
                             rtol=1e-5)


def test_predicts_on_the_class_folders_as_on_their_pixels(predict, saved, tmp_path):
  root, model_dir, model = saved
  out = str(tmp_path / "preds.csv")
  assert predict(f"--model={model_dir}", f"--images={root}", f"--out={out}") == (0, "")
  files = sorted(os.path.join(c, f) for c in CLASSES for f in os.listdir(os.path.join(root, c)))
  assert len(files) == 3 * PER_CLASS
  _check_predictions(out, root, files, model)
  # The training data's labels are mostly learned: the pixels are the training ones.
  labels = [f.split(os.sep)[0] for f in files]
  assert np.mean(model.predict(np.stack([_pixels(os.path.join(root, f)) for f in files]))
                 == np.array(labels)) > 1 / 3


def test_predicts_on_loose_images_in_sorted_order_skipping_hidden_ones(predict, saved, tmp_path):
  root, model_dir, model = saved
  loose = tmp_path / "new"
  os.makedirs(loose / ".thumbs")
  sources = sorted(os.path.join(root, c, f) for c in CLASSES
                   for f in os.listdir(os.path.join(root, c)))[::7]
  for name, src in zip(("b.png", "a.png", "c.PNG", "deep/a.png"), sources):
    os.makedirs(os.path.dirname(loose / name), exist_ok=True)
    shutil.copy(src, loose / name)
  (loose / ".DS_Store").write_bytes(b"not an image")
  shutil.copy(sources[0], loose / ".thumbs" / "x.png")
  out = str(tmp_path / "preds.csv")
  assert predict(f"--model={model_dir}", f"--images={loose}", f"--out={out}") == (0, "")
  _check_predictions(out, str(loose), ["a.png", "b.png", "c.PNG", os.path.join("deep", "a.png")],
                     model)


def _refused(predict, args, out, needles):
  code, err = predict(*args)
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  assert not os.path.exists(out), "a refused run wrote its --out"
  return lines[0]


def test_images_and_dataset_are_one_or_the_other(predict, saved, tmp_path):
  root, model_dir, _ = saved
  out = str(tmp_path / "preds.csv")
  data = tmp_path / "data.csv"
  data.write_text("a\n1\n")
  _refused(predict, [f"--model={model_dir}", f"--images={root}", f"--dataset={data}",
                     f"--out={out}"], out, ["--images", "--dataset", "give one"])
  _refused(predict, [f"--model={model_dir}", f"--out={out}"], out,
           ["--dataset=FILE", "--images=DIR"])


def test_refusals_name_the_file_and_write_nothing(predict, saved, tmp_path):
  root, model_dir, _ = saved
  folder = tmp_path / "new"
  shutil.copytree(root, folder)
  out = str(tmp_path / "preds.csv")
  args = [f"--model={model_dir}", f"--images={folder}"]
  before = sorted(p for p, _, _ in os.walk(folder))

  notes = folder / "one" / "notes.txt"
  notes.write_text("hello")
  _refused(predict, args + [f"--out={out}"], out,
           [repr(str(notes)), "not an image file", ".png, .jpg, .jpeg"])
  notes.unlink()

  big = folder / "two" / "big.png"
  _save(str(big), np.zeros((10, 12), np.uint8))
  _refused(predict, args + [f"--out={out}"], out, [repr(str(big)), "10x12", "takes 8x8"])
  big.unlink()

  for inside in (folder / "preds.csv", folder / "one" / sorted(os.listdir(folder / "one"))[0]):
    kept = inside.read_bytes() if inside.exists() else None
    _refused(predict, args + [f"--out={inside}"], str(tmp_path / "none"),
             [f"--out {inside} is in the --images folder {folder}"])
    assert (inside.read_bytes() if inside.exists() else None) == kept
  assert not (folder / "preds.csv").exists()
  assert sorted(p for p, _, _ in os.walk(folder)) == before


def test_a_model_not_trained_on_images_refuses_images(predict, saved, tmp_path):
  root, model_dir, _ = saved
  out = str(tmp_path / "preds.csv")
  mlp = str(tmp_path / "mlp")
  export.save_model(_trained(), mlp)  # 4 features from a .csv: no images.
  _refused(predict, [f"--model={mlp}", f"--images={root}", f"--out={out}"], out,
           ["--images does not apply", "not trained on a folder of images", "shape (4,)"])
  # The same CNN, recorded as trained on the built-in digits (0..16, not an image's pixels).
  digits = str(tmp_path / "digits_model")
  shutil.copytree(model_dir, digits)
  card_path = os.path.join(digits, "model.json")
  card = json.load(open(card_path))
  card["experiment"]["data"]["dataset"] = "digits"
  with open(card_path, "w") as f:
    json.dump(card, f)
  _refused(predict, [f"--model={digits}", f"--images={root}", f"--out={out}"], out,
           ["--images does not apply", "--dataset=digits"])
