r"""The article's three Keras configurations, each at its learning rate and swept around it.

    python -m experiments.seed_examples                          # digits, 5 seeds, 13 LRs each
    python -m experiments.seed_examples --train_size=100 --out=runs/seed_examples_100
    python -m experiments.seed_examples --quick --configs=A,B

A: Dense(128) Adam lr 1e-4, 100 epochs; B: Dense(64) RMSprop lr 1e-3, 50 epochs,
EarlyStopping(patience=5); C: Dense(128) Adam, ExponentialDecay(1e-3, 1000, 0.9), 50 epochs.
Each is swept from lr/100 to lr*100 (the article's rate is the middle grid point, so one
program does both). Writes report.md (where the article's rate ranks, its accuracy vs the
best with 95% CIs), loss_curves.png, sensitivity_<config>.png, and <config>/results.csv,
history.npz, summary.json into --out.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from lr_jax import cli, commands


def _define_flags() -> None:
  from lr_jax.article import ExamplesConfig
  cli.define_config_flags(ExamplesConfig)  # One flag a field: type, docstring, both defaults.


_define_flags()
cli.define_output_flags()
flags.DEFINE_string("out", "runs/seed_examples", "Output folder.")
FLAGS = flags.FLAGS


def config_from_flags(f):
  """The `ExamplesConfig` the flags describe: --quick's or the full defaults, then overrides."""
  from lr_jax.article import ExamplesConfig
  return cli.config_from_flags(ExamplesConfig, f)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def examples():
    import dataclasses
    import os

    from lr_jax import article as article_lib
    from lr_jax import outputs
    plan = article_lib.plan_examples(config_from_flags(FLAGS))  # Every check, nothing compiled.
    identity = {"kind": "seed_examples", "config": dataclasses.asdict(plan.config)}
    with outputs.OutputFolder(FLAGS.out, identity=identity, overwrite=FLAGS.overwrite) as folder:
      cli.enable_compilation_cache()
      sweeps, wall_s = article_lib.run_examples(plan)
      command = commands.command_line("seed_examples", sys.argv)
      with folder.staging() as staging:
        path = article_lib.write_examples_report(
            plan, sweeps, wall_s, staging, extra=[("Command", f"```\n{command.strip()}\n```")])
    for article, sweep in zip(plan.articles, sweeps):
      print(article_lib.comparison_sentence(
          article, article_lib.compare_sweep(sweep, article.learning_rate)))
    logging.info("total wall time %.1f s; wrote %s", wall_s,
                 os.path.join(FLAGS.out, os.path.relpath(path, staging)))

  cli.run_main(examples, on_interrupt=lambda: f"nothing written to {FLAGS.out}")


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
