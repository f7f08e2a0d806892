r"""Predictions of a saved model: one line per row of a data file, with the original labels.

    python -m experiments.lr_sweep --train_size=200 --test_fraction=0.2 --save_model=runs/model
    python -m experiments.predict --model=runs/model --dataset=new.csv --out=preds.csv

The file needs the model's feature columns (any order; its label column may be there too and is
ignored); a file whose columns differ is refused with one line naming the difference, before
anything is written. preds.csv has `prediction` (a class label as in the training file, or a
value for regression) and, for classification, `p_<label>` per class.
"""

from absl import flags, logging

from lr_jax import cli
from lr_jax.errors import ConfigError

flags.DEFINE_string("model", None, "Folder of a saved model (lr_sweep --save_model=DIR).")
flags.DEFINE_string("dataset", None, "A .csv (with the model's feature columns) or .npz file.")
flags.DEFINE_string("out", None, "The predictions' .csv file.")
FLAGS = flags.FLAGS


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def predict():
    for name in ("model", "dataset", "out"):
      if not getattr(FLAGS, name):
        raise ConfigError(f"--{name} is required (see --helpshort)")
    from lr_jax import export, results
    model = export.load_model(FLAGS.model)
    x, _ = export.read_features(FLAGS.dataset, model)
    text = export.predictions_csv(model, x)
    results.atomic_write(FLAGS.out, text.encode())
    logging.info("wrote %d predictions into %s", len(x), FLAGS.out)

  cli.run_main(predict)


if __name__ == "__main__":
  cli.run_app(main)
