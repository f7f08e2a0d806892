r"""Predictions of a saved model: one line per row of a data file, with the original labels.

    python -m experiments.lr_sweep --train_size=200 --test_fraction=0.2 --save_model=runs/model
    python -m experiments.predict --model=runs/model --dataset=new.csv --out=preds.csv

The file needs the model's feature columns (any order; its label column may be there too and is
ignored); a file whose columns differ is refused with one line naming the difference, before
anything is written. preds.csv has `prediction` (a class label as in the training file, or a
value for regression) and, for classification, `p_<label>` per class.

A model trained on a folder of images predicts on new images instead (not with --dataset):

    python -m experiments.predict --model=runs/pets --images=new_photos/ --out=preds.csv

Every .png, .jpg or .jpeg file in the folder or its sub-folders (any depth; hidden entries,
named '.*', are ignored; any other file is refused) is read as the training images were: resized
to the image_size and in the color that model.json records (`lr_jax.data.read_images`); without
a recorded image_size each image must have the model's size. preds.csv then starts with a
`file` column, each image's path relative to the folder, in sorted order.

--out is a file path (missing folders above it are created); it is refused in one line if it is
a folder, the --dataset file, in the --images folder, or anything in the --model folder: the
predictions never replace the data or the model they come from.

A model saved from a user model (`from_linen`/`from_nnx`) cannot be rebuilt from its folder:
--model_module=pkg.mod:factory names a function that returns it, called with no arguments (the
module is imported as `python -m` would, from the working directory or PYTHONPATH):

    python -m experiments.predict --model=runs/mine --model_module=my_models:make_model \
        --dataset=new.csv --out=preds.csv

The flags are defined when the script runs (`define_flags`), not on import: --model, --dataset
and --out mean other things to lr_sweep, so importing this module next to it (a test process)
must not define them twice. `predict_file` is the work, without flags.
"""

import importlib
import os
import sys
from typing import TYPE_CHECKING

from absl import flags, logging

from lr_jax import cli, commands
from lr_jax.errors import ConfigError

if TYPE_CHECKING:  # It loads JAX and Flax, which importing this module does not.
  from lr_jax.models import Model

FLAGS = flags.FLAGS

FACTORY_FORM = "pkg.mod:factory"  # What --model_module takes.


def define_flags(flag_values: "flags.FlagValues | None" = None) -> None:
  """Defines --model, --model_module, --dataset, --images and --out (in `flags.FLAGS` unless
  `flag_values` is given)."""
  fv = flag_values if flag_values is not None else flags.FLAGS
  flags.DEFINE_string("model", None, "Folder of a saved model (lr_sweep --save_model=DIR).",
                      flag_values=fv)
  flags.DEFINE_string("model_module", None,
                      f"{FACTORY_FORM}: for a --model folder saved from a user model, a "
                      "function that returns that lr_jax Model (from_linen/from_nnx), called "
                      "with no arguments; refused for a built-in model.", flag_values=fv)
  flags.DEFINE_string("dataset", None, "A .csv (with the model's feature columns) or .npz file.",
                      flag_values=fv)
  flags.DEFINE_string("images", None,
                      "Instead of --dataset, for a model trained on a folder of images: a folder "
                      "whose images (in it and its sub-folders) are read as the training images "
                      "were; the .csv gets a first column `file`.", flag_values=fv)
  flags.DEFINE_string("out", None, "The predictions' .csv file.", flag_values=fv)


def model_from_spec(spec: str) -> "Model":
  """The user model that --model_module=`spec` ("pkg.mod:factory") names: `factory()`.

  The module is imported as `python -m` would find it (the working directory first, then
  PYTHONPATH). An error raised inside the module or the factory is left as it is: its
  traceback points into the user's code.

  Returns:
    The `lr_jax.Model` the factory returns.

  Raises:
    ConfigError: `spec` is not of the form, its module is missing, it has no such attribute, or
      the factory does not return a Model (one line naming `spec` and the form).
  """
  from lr_jax.models import Model
  flag = f"--model_module={spec}"
  module_name, sep, attr = spec.partition(":")
  if (not sep or not attr.isidentifier()
      or not all(part.isidentifier() for part in module_name.split("."))):
    raise ConfigError(f"{flag} is not of the form {FACTORY_FORM} (a module to import, a colon, "
                      "and the function in it that returns the model)")
  if "" not in sys.path and os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())  # As `python -m` runs a script: the working directory first.
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
      raise  # A module that the user's module imports is missing: its own traceback.
    raise ConfigError(f"{flag}: no module named {e.name!r} (from the working directory or "
                      f"PYTHONPATH); give {FACTORY_FORM} with an importable module") from None
  factory = getattr(module, attr, None)
  if factory is None:
    raise ConfigError(f"{flag}: module {module_name!r} has no {attr!r}; give {FACTORY_FORM}, "
                      "a function of that module")
  if not callable(factory):
    raise ConfigError(f"{flag}: {attr!r} of module {module_name!r} is not a function (its type "
                      f"is {_type_name(factory)}); give {FACTORY_FORM}, a function that returns "
                      "the model")
  model = factory()
  if not isinstance(model, Model):
    what = "None" if model is None else f"an object of type {_type_name(model)}"
    raise ConfigError(f"{flag}: {attr}() returned {what}, not an lr_jax Model; it must return "
                      "lr_jax.from_linen(...) or lr_jax.from_nnx(...)")
  return model


def _type_name(value) -> str:
  kind = type(value)
  return (kind.__qualname__ if kind.__module__ == "builtins"
          else f"{kind.__module__}.{kind.__qualname__}")


def _same_file(a: str, b: str) -> bool:
  """Whether two paths name one file: the same real path, or one inode (a hard link)."""
  if os.path.realpath(a) == os.path.realpath(b):
    return True
  try:
    return os.path.samefile(a, b)
  except OSError:  # One of them does not exist: not the same file.
    return False


def _in_folder(out: str, folder: str) -> bool:
  """Whether `out` is `folder`, lies in it, or is a hard link to one of its files."""
  real, folder_real = os.path.realpath(out), os.path.realpath(folder)
  if real == folder_real or real.startswith(folder_real.rstrip(os.sep) + os.sep):
    return True
  if os.path.isdir(folder_real) and os.path.exists(real):
    for root, _, names in os.walk(folder_real):  # A hard link to a file in the folder.
      if any(_same_file(out, os.path.join(root, n)) for n in names):
        return True
  return False


def check_out(out: str, dataset: str | None, model: str, images: str | None = None) -> None:
  """Refuses an --out that is no file path, or that would overwrite an input of the run.

  Raises:
    ConfigError: --out is a folder, lies under a file, is the --dataset file, is the --images
      folder or anything in it, or is the --model folder or anything in it (compared as real
      paths: symbolic links resolved, and hard links by inode).
  """
  real = os.path.realpath(out)
  if dataset is not None and _same_file(out, dataset):
    raise ConfigError(f"--out {out} is the --dataset file {dataset}: the predictions would "
                      "overwrite the data; give another --out")
  if images is not None and _in_folder(out, images):
    raise ConfigError(f"--out {out} is in the --images folder {images}: the predictions would "
                      "overwrite an image or be read as one; give a path outside it")
  if _in_folder(out, model):
    raise ConfigError(f"--out {out} is in the --model folder {model}: the predictions would "
                      "overwrite or clutter the saved model; give a path outside it")
  if os.path.isdir(real) or out.endswith(("/", os.sep)):
    raise ConfigError(f"--out {out} is a folder; give the path of the .csv file to write, e.g. "
                      f"--out={os.path.join(out, 'predictions.csv')}")
  parent = os.path.dirname(real)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f"--out {out}: {parent} is a file, not a folder; give a file path in a "
                      "folder")


def predict_file(model: str | None, dataset: str | None, out: str | None,
                 model_module: str | None = None, images: str | None = None) -> int:
  """Writes the predictions of the model in folder `model` on the file `dataset` (or on the
  images of folder `images`) into `out`.

  Everything is checked (the paths, the model, every value of the file, every image) before
  `out` is written, and it is written atomically. `model_module` ("pkg.mod:factory",
  `model_from_spec`) gives the user model a folder saved from one needs; for a built-in model
  it is refused. Exactly one of `dataset` and `images` is given; with `images` the model must
  have been trained on a folder of images (`image_settings`), and the .csv's first column is
  `file`.

  Returns:
    The number of predictions written.

  Raises:
    ConfigError: one line naming the flag or file and what is wrong.
  """
  if not model:
    raise ConfigError("--model is required (see --helpshort)")
  if dataset and images:
    raise ConfigError(f"--dataset={dataset} and --images={images} both give what to predict on; "
                      "give one: --dataset=FILE (.csv or .npz) or --images=DIR (a folder of "
                      "images)")
  if not dataset and not images:
    raise ConfigError("give what to predict on: --dataset=FILE (.csv or .npz) or --images=DIR "
                      "(a folder of images, for a model trained on one)")
  if not out:
    raise ConfigError("--out is required (see --helpshort)")
  check_out(out, dataset or None, model, images or None)
  from lr_jax import data, export, io
  trained = export.load_model(model, model=_user_model(model, model_module))
  if images:
    image_size, color, hw = image_settings(model, trained)
    files, x = data.read_images(images, image_size=image_size, color=color, expected_size=hw)
    text = export.predictions_csv(trained, x, files=files)
  else:
    x, _ = export.read_features(dataset, trained)
    text = export.predictions_csv(trained, x)
  try:
    io.atomic_write(out, text.encode())
  except OSError as e:
    raise ConfigError(f"--out {out} could not be written ({e.strerror or type(e).__name__}); "
                      "give a file you can write") from None
  logging.info("wrote %d predictions into %s", len(x), out)
  return len(x)


def image_settings(folder: str, trained) -> tuple[int | None, str, tuple[int, int]]:
  """How to read images for the model saved in `folder` (`trained`, loaded from it): as its
  training images were read.

  Returns:
    (the image_size model.json records, or None; the color, "grayscale" or "rgb" as the
    model's channels are; the (height, width) of its feature shape).

  Raises:
    ConfigError: the model was not trained on a folder of images: its feature shape is not
      (height, width, 1 or 3), or model.json records no data configuration, or one of a
      built-in data set or a .csv or .npz file.
  """
  from lr_jax.config.data import COLORS
  from lr_jax.data import DATASETS
  shape = tuple(trained.feature_shape)
  data = (trained.card.get("experiment") or {}).get("data")
  name = data.get("dataset") if isinstance(data, dict) else None
  if len(shape) != 3 or shape[2] not in (1, 3):
    why = f"its features have shape {shape}, not (height, width, channels) of 1 or 3 channels"
  elif not isinstance(name, str):
    why = "its model.json records no data configuration with a dataset"
  elif name in DATASETS or os.path.splitext(name)[1].lower() in (".csv", ".npz"):
    why = f"it was trained on --dataset={name}"
  else:
    why = None
  if why is not None:
    raise ConfigError(f"--images does not apply to --model {folder}: it was not trained on a "
                      f"folder of images ({why}); give --dataset=FILE with its features")
  image_size = data.get("image_size")
  if not (image_size is None or isinstance(image_size, int)
          or (isinstance(image_size, list) and len(image_size) == 2)):
    image_size = None  # Not a size this version records: each image must then fit the model.
  # The channels decide the color: a data set built with Dataset.from_folder(color=...) leaves
  # DataConfig.color at its default, and the features' shape is what the model was fed.
  color = COLORS[0] if shape[2] == 1 else COLORS[1]
  return (tuple(image_size) if isinstance(image_size, list) else image_size), color, shape[:2]


def _user_model(folder: str, model_module: str | None) -> "Model | None":
  """The user model the --model folder needs, from --model_module; None for a built-in one."""
  from lr_jax import export
  name, user = export.saved_model_name(folder)
  if not user:
    if model_module is not None:
      raise ConfigError(f"--model_module={model_module} does not apply: --model {folder} holds "
                        f"the built-in model {name!r}, which is rebuilt from its model.json; "
                        "drop --model_module")
    return None
  if model_module is None:
    raise ConfigError(f"--model {folder} holds user model {name!r}, which cannot be rebuilt from "
                      f"its model.json; give --model_module={FACTORY_FORM}, a function that "
                      "returns the model it was trained with (from_linen/from_nnx)")
  return model_from_spec(model_module)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.
  cli.run_main(lambda: predict_file(FLAGS.model, FLAGS.dataset, FLAGS.out, FLAGS.model_module,
                                    FLAGS.images))


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
