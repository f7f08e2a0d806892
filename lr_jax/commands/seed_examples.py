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

flags.DEFINE_bool("quick", False, "A small run: 400 examples, 3 seeds, 7 LRs, <= 30 epochs.")
flags.DEFINE_list("configs", None, "Article configurations to run, comma list of A, B, C.")
flags.DEFINE_string("dataset", None, "Classification data set; default digits.")
flags.DEFINE_integer("train_size", None, "Training examples; default the whole pool.")
flags.DEFINE_integer("seeds", None, "Training seeds; default 5.")
flags.DEFINE_integer("num_lrs", None, "Learning rates per sweep (odd); default 13.")
flags.DEFINE_float("span", None, "The sweep goes from lr/span to lr*span; default 100.")
flags.DEFINE_integer("max_epochs", None, "Cap on every configuration's epochs.")
flags.DEFINE_integer("data_seed", None, "Seed of the split and subsample.")
cli.define_output_flags()
flags.DEFINE_string("out", "runs/seed_examples", "Output folder.")
FLAGS = flags.FLAGS


def config_from_flags(f):
  """The `ExamplesConfig` the flags describe: --quick's or the full defaults, then overrides."""
  from lr_jax.article import ExamplesConfig
  changes = {
      "configs": tuple(c.strip().upper() for c in f.configs) if f.configs is not None else None,
      "dataset": f.dataset, "train_size": f.train_size, "seeds": f.seeds,
      "num_lrs": f.num_lrs, "span": f.span, "max_epochs": f.max_epochs,
      "data_seed": f.data_seed}
  changes = {k: v for k, v in changes.items() if v is not None}
  return ExamplesConfig.quick(**changes) if f.quick else ExamplesConfig(**changes)


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
