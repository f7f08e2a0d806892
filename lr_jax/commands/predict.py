r"""Predictions of a saved model: one line per row of a data file, with the original labels.

    python -m experiments.lr_sweep --train_size=200 --test_fraction=0.2 --save_model=runs/model
    python -m experiments.predict --model=runs/model --dataset=new.csv --out=preds.csv

The file needs the model's feature columns (any order; its label column may be there too and is
ignored); a file whose columns differ is refused with one line naming the difference, before
anything is written. preds.csv has `prediction` (a class label as in the training file, or a
value for regression) and, for classification, `p_<label>` per class.

--out is a file path (missing folders above it are created); it is refused in one line if it is
a folder, the --dataset file, or anything in the --model folder: the predictions never replace
the data or the model they come from.

The flags are defined when the script runs (`define_flags`), not on import: --model, --dataset
and --out mean other things to lr_sweep, so importing this module next to it (a test process)
must not define them twice. `predict_file` is the work, without flags.
"""

import os
import sys

from absl import flags, logging

from lr_jax import cli, commands
from lr_jax.errors import ConfigError

FLAGS = flags.FLAGS


def define_flags(flag_values: "flags.FlagValues | None" = None) -> None:
  """Defines --model, --dataset and --out (in `flags.FLAGS` unless `flag_values` is given)."""
  fv = flag_values if flag_values is not None else flags.FLAGS
  flags.DEFINE_string("model", None, "Folder of a saved model (lr_sweep --save_model=DIR).",
                      flag_values=fv)
  flags.DEFINE_string("dataset", None, "A .csv (with the model's feature columns) or .npz file.",
                      flag_values=fv)
  flags.DEFINE_string("out", None, "The predictions' .csv file.", flag_values=fv)


def _same_file(a: str, b: str) -> bool:
  """Whether two paths name one file: the same real path, or one inode (a hard link)."""
  if os.path.realpath(a) == os.path.realpath(b):
    return True
  try:
    return os.path.samefile(a, b)
  except OSError:  # One of them does not exist: not the same file.
    return False


def check_out(out: str, dataset: str, model: str) -> None:
  """Refuses an --out that is no file path, or that would overwrite an input of the run.

  Raises:
    ConfigError: --out is a folder, lies under a file, is the --dataset file, or is the
      --model folder or anything in it (compared as real paths: symbolic links resolved, and
      hard links by inode).
  """
  real = os.path.realpath(out)
  if _same_file(out, dataset):
    raise ConfigError(f"--out {out} is the --dataset file {dataset}: the predictions would "
                      "overwrite the data; give another --out")
  model_real = os.path.realpath(model)
  inside = real == model_real or real.startswith(model_real.rstrip(os.sep) + os.sep)
  if not inside and os.path.isdir(model_real) and os.path.exists(real):
    for root, _, names in os.walk(model_real):  # A hard link to a file of the model.
      if any(_same_file(out, os.path.join(root, n)) for n in names):
        inside = True
        break
  if inside:
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


def predict_file(model: str | None, dataset: str | None, out: str | None) -> int:
  """Writes the predictions of the model in folder `model` on the file `dataset` into `out`.

  Everything is checked (the paths, the model, every value of the file) before `out` is
  written, and it is written atomically.

  Returns:
    The number of predictions written.

  Raises:
    ConfigError: one line naming the flag or file and what is wrong.
  """
  for name, value in (("model", model), ("dataset", dataset), ("out", out)):
    if not value:
      raise ConfigError(f"--{name} is required (see --helpshort)")
  check_out(out, dataset, model)
  from lr_jax import export, io
  trained = export.load_model(model)
  x, _ = export.read_features(dataset, trained)
  text = export.predictions_csv(trained, x)
  try:
    io.atomic_write(out, text.encode())
  except OSError as e:
    raise ConfigError(f"--out {out} could not be written ({e.strerror or type(e).__name__}); "
                      "give a file you can write") from None
  logging.info("wrote %d predictions into %s", len(x), out)
  return len(x)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.
  cli.run_main(lambda: predict_file(FLAGS.model, FLAGS.dataset, FLAGS.out))


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
