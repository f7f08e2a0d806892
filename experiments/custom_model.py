r"""Your own absl script on lr_jax: a user `flax.nnx` model with its own flags, swept by lr_jax.

    python -m experiments.custom_model --width=32 --blocks=2 --lrs=1e-3,1e-2,1e-1 --seeds=3
    python -m experiments.custom_model --helpshort        # lr_jax's flags and this script's own

A template to copy: `cli.define_flags(...)` brings lr_jax's flags (data, optimizer, schedule,
training, --select, --overwrite; listed in --helpshort), the script adds its own (a flag with
one of lr_jax's names is refused when it is defined), builds its model, and calls the public
API. On a classification data set it selects the learning rate by its own metric, balanced
accuracy on the whole validation set (`val_balanced_accuracy`; --monitor=val_balanced_accuracy
stops on it); lr_jax's sweepable numbers apply to it as to a built-in model (e.g.
--label_smoothing=0,0.1 sweeps the loss's label smoothing in the same compiled program).
Writes results.csv, history.npz and summary.json into --out and prints the table; --out is
checked first (`cli.check_out`: not empty, writable, not in use by another run), before any
data is loaded or anything compiles. The built-in model's flags (--model, --hidden,
--activation) do not apply to this model and are refused.
"""

import jax
import jax.numpy as jnp
from absl import flags
from flax import nnx

import lr_jax
from lr_jax import cli

cli.define_flags("sweep", "output")  # Not "run": this script takes no checkpoints.
flags.DEFINE_integer("width", 32, "Width of the residual blocks.")
flags.DEFINE_integer("blocks", 2, "Number of residual blocks.")
flags.DEFINE_string("out", "runs/custom_model", "Output folder.")
FLAGS = flags.FLAGS


class ResidualMLP(nnx.Module):
  """x -> Linear -> `blocks` x (h + relu(Linear(h))) -> Linear: [B, D] -> [B, K]."""

  def __init__(self, num_features: int, num_outputs: int, width: int, blocks: int, *,
               rngs: nnx.Rngs):
    self.embed = nnx.Linear(num_features, width, rngs=rngs)
    self.blocks = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(blocks)])
    self.head = nnx.Linear(width, num_outputs, rngs=rngs)

  def __call__(self, x_BxD):
    h_BxW = nnx.relu(self.embed(x_BxD))
    for block in self.blocks:
      h_BxW = h_BxW + nnx.relu(block(h_BxW))
    return self.head(h_BxW)


def balanced_accuracy(logits_VxK, y_V, w_V):
  """Mean recall over the classes in the validation rows (w_V is 0 on padding rows)."""
  onehot_VxK = jax.nn.one_hot(y_V, logits_VxK.shape[-1]) * w_V[:, None]
  hit_V = jnp.argmax(logits_VxK, axis=-1) == y_V
  count_K = jnp.sum(onehot_VxK, axis=0)
  recall_K = jnp.sum(onehot_VxK * hit_V[:, None], axis=0) / jnp.maximum(count_K, 1.0)
  return jnp.sum(recall_K) / jnp.sum(count_K > 0)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def run():
    if FLAGS.width < 1 or FLAGS.blocks < 0:
      raise lr_jax.ConfigError(f"--width must be >= 1 and --blocks >= 0, got {FLAGS.width} and "
                               f"{FLAGS.blocks}")
    cli.check_out(FLAGS.out)  # Written at the end: checked (writable, not in use) before any work.
    # lr_jax's flags, checked before any work; the built-in model's (--hidden, ...) do not apply.
    experiment = cli.experiment_from_flags(FLAGS, user_model=ResidualMLP.__name__)
    grid = cli.grid_from_flags(FLAGS)
    data = lr_jax.load_dataset(experiment.data)  # The model's input and output widths.
    outputs = data.num_classes if data.task == "classification" else 1
    model = lr_jax.from_nnx(lambda rngs: ResidualMLP(
        data.x.shape[1], outputs, FLAGS.width, FLAGS.blocks, rngs=rngs))
    cli.enable_compilation_cache()
    classification = data.task == "classification"
    own = dict(metrics={"balanced_accuracy": lr_jax.Metric(balanced_accuracy, True)},
               select_by="val_balanced_accuracy") if classification else {}
    result = lr_jax.run_sweep(experiment, grid, model=model, target=FLAGS.target,
                              select=FLAGS.select, **own)
    lr_jax.write_outputs(result, FLAGS.out, overwrite=FLAGS.overwrite)
    print(lr_jax.format_table(result))

  cli.run_main(run)


if __name__ == "__main__":
  cli.run_app(main)
