r"""Fine-tuning on very small data: is a small learning rate necessary, and is it different
from training from scratch?

    python -m experiments.fine_tune                       # the full experiment, a few minutes
    python -m experiments.fine_tune --quick               # a first look
    python -m experiments.fine_tune --train_sizes=10,100 --seeds=5 --out=runs/ft

A CNN is pretrained on digits 0-4 and fine-tuned on digits 5-9 (which it never saw) at 10, 25,
50 and 100 training images. Four arms, each a full learning-rate sweep with seeds: from
scratch, linear probe (backbone frozen), discriminative (backbone at 0.1x the head's rate) and
full fine-tuning. Writes report.md (the answer, every sentence computed from the table),
arms.png and table.csv into --out.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from lr_jax import cli, commands


_NAMES = {"learning_rates": "lrs"}  # As the sweep's and the study's flag.


def _define_flags() -> None:
  from lr_jax.transfer import FineTuneConfig
  cli.define_config_flags(FineTuneConfig, names=_NAMES)  # A flag a field, both defaults.


_define_flags()
cli.define_output_flags()
flags.DEFINE_string("out", "runs/fine_tune", "Output folder.")
FLAGS = flags.FLAGS


def config_from_flags(f):
  """The `FineTuneConfig` the flags describe: --quick's or the full defaults, then overrides."""
  from lr_jax.transfer import FineTuneConfig
  return cli.config_from_flags(FineTuneConfig, f, names=_NAMES)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def fine_tune():
    import dataclasses
    import os

    from lr_jax import outputs
    from lr_jax import transfer
    config = config_from_flags(FLAGS)  # Every check, nothing compiled.
    identity = {"kind": "fine_tune", "config": dataclasses.asdict(config)}
    with outputs.OutputFolder(FLAGS.out, identity=identity, overwrite=FLAGS.overwrite) as folder:
      cli.enable_compilation_cache()
      result = transfer.run_fine_tune(config)
      command = commands.command_line("fine_tune", sys.argv)
      with folder.staging() as staging:
        path = transfer.write_fine_tune_report(
            result, staging, extra=[("Command", f"```\n{command.strip()}\n```")])
    print(transfer.answer(result.rows, config.reference_lr))
    logging.info("total wall time %.1f s; wrote %s", result.wall_s,
                 os.path.join(FLAGS.out, os.path.relpath(path, staging)))

  cli.run_main(fine_tune, on_interrupt=lambda: f"nothing written to {FLAGS.out}")


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
