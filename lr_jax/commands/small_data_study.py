r"""The small-data study: is a very small learning rate necessary with a small training set?

    python -m experiments.small_data_study --quick               # a first look: 2 programs
    python -m experiments.small_data_study --out=runs/study      # the full study on digits
    python -m experiments.small_data_study --train_sizes=25,100,all --optimizers=adam,sgd

Axes: budget (fixed epochs, fixed steps, to convergence) x training-set size x optimizer x
MLP width x schedule (constant, exponential decay); every cell is a full learning-rate sweep
over seeds x k-fold cross-validation. One compile group per (budget, optimizer, width, size):
the schedule, the label noise (small sizes) and the regularisation (dropout and weight decay,
on the Adam line at the largest width) are traced axes. At the smallest sizes a held-out test
set scores the winner. Writes report.md (answer, findings, table, figures),
best_lr_<budget>.png, sensitivity_<budget>_<optimizer>.png, results.csv, history.npz and
summary.json into --out.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from lr_jax import cli, commands
from lr_jax.errors import ConfigError

flags.DEFINE_bool("quick", False, "A small study (fewer sizes, optimizers, epochs, runs).")
flags.DEFINE_string("dataset", None, "Classification data set; default digits.")
flags.DEFINE_list("train_sizes", None, "Training-set sizes, comma list; 'all' = the whole pool.")
flags.DEFINE_list("optimizers", None, "Optimizer families, comma list.")
flags.DEFINE_list("widths", None, "Hidden widths of the one-layer MLPs, comma list.")
flags.DEFINE_list("schedules", None, "constant and/or exponential.")
flags.DEFINE_list("lrs", None, "Learning rates, comma list (must contain --reference_lr).")
flags.DEFINE_integer("seeds", None, "Training seeds per fold.")
flags.DEFINE_integer("folds", None, "k of the k-fold cross-validation (capped per size).")
flags.DEFINE_list("budgets", None, "Training budgets, comma list: epochs, steps, converge.")
flags.DEFINE_integer("epochs", None, "The fixed-epochs budget: maximum epochs.")
flags.DEFINE_integer("steps", None, "The fixed-steps budget: optimizer updates per run.")
flags.DEFINE_integer("converge_steps", None,
                     "The to-convergence budget: at most about this many steps, early stopping.")
flags.DEFINE_integer("patience", None, "Early-stopping patience on the validation loss.")
flags.DEFINE_float("final_lr_fraction", None,
                   "Exponential decay reaches this fraction of the peak at the last epoch.")
flags.DEFINE_float("reference_lr", None, "The article's small learning rate, reported per cell.")
flags.DEFINE_float("tolerance", None, "Accuracy within which an LR counts as near the best.")
flags.DEFINE_integer("data_seed", None, "Seed of the subsample and the folds.")
flags.DEFINE_list("dropout_rates", None, "Regularisation tuned on the Adam line: dropout rates, "
                  "comma list with 0; 0 alone for none.")
flags.DEFINE_list("weight_decays", None, "Regularisation tuned on the Adam line (run as AdamW): "
                  "weight decays, comma list with 0; 0 alone for none.")
flags.DEFINE_list("noise_levels", None, "Label noise: fractions of training labels replaced by "
                  "a random other class, comma list with 0; 0 alone for none.")
flags.DEFINE_integer("noise_up_to", None, "The largest training size given label noise.")
flags.DEFINE_integer("test_up_to", None, "The largest training size given a held-out test set "
                     "(0: none).")
cli.define_output_flags()
flags.DEFINE_string("out", "runs/small_data_study", "Output folder.")
FLAGS = flags.FLAGS


def parse_sizes(values: list[str] | None) -> tuple[int | None, ...] | None:
  """'25,100,all' -> (25, 100, None); a bad entry is a `ConfigError` naming it."""
  if values is None:
    return None
  sizes = []
  for text in values:
    if text.strip().lower() == "all":
      sizes.append(None)
      continue
    try:
      sizes.append(int(text))
    except ValueError:
      raise ConfigError(f"--train_sizes: {text!r} is not an integer or 'all'; give a comma "
                        "list like 25,100,all") from None
  return tuple(sizes)


def config_from_flags(f):
  """The `StudyConfig` the flags describe: --quick's or the full defaults, then the overrides."""
  from lr_jax.study import StudyConfig
  changes = {
      "dataset": f.dataset, "train_sizes": parse_sizes(f.train_sizes),
      "optimizers": tuple(f.optimizers) if f.optimizers is not None else None,
      "widths": cli.parse_ints("widths", f.widths),
      "schedules": tuple(f.schedules) if f.schedules is not None else None,
      "learning_rates": cli.parse_floats("lrs", f.lrs), "seeds": f.seeds, "folds": f.folds,
      "budgets": tuple(f.budgets) if f.budgets is not None else None,
      "epochs": f.epochs, "steps": f.steps, "converge_steps": f.converge_steps,
      "patience": f.patience, "final_lr_fraction": f.final_lr_fraction,
      "reference_lr": f.reference_lr, "tolerance": f.tolerance, "data_seed": f.data_seed}
  changes = {k: v for k, v in changes.items() if v is not None}
  if f.dropout_rates is not None or f.weight_decays is not None:
    base = dict((StudyConfig.quick() if f.quick else StudyConfig()).regularisation)
    for name, flag in (("dropout_rate", "dropout_rates"), ("weight_decay", "weight_decays")):
      values = cli.parse_floats(flag, getattr(f, flag))
      if values is not None:
        base[name] = values
    changes["regularisation"] = {k: v for k, v in base.items() if tuple(v) != (0.0,)}
  extra = {"label_noise": cli.parse_floats("noise_levels", f.noise_levels),
           "noise_up_to": f.noise_up_to, "test_up_to": f.test_up_to}
  changes.update({k: v for k, v in extra.items() if v is not None})
  return StudyConfig.quick(**changes) if f.quick else StudyConfig(**changes)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def study():
    import dataclasses
    import os

    from lr_jax import outputs
    from lr_jax import study as study_lib
    plan = study_lib.plan_study(config_from_flags(FLAGS))  # Every check, nothing compiled.
    identity = {"kind": "small_data_study", "config": dataclasses.asdict(plan.config)}
    with outputs.OutputFolder(FLAGS.out, identity=identity, overwrite=FLAGS.overwrite) as folder:
      cli.enable_compilation_cache()
      logging.info("small-data study: %d compile groups, %d cells", len(plan.groups),
                   len(plan.cells) * len(plan.config.schedules))
      result = study_lib.run_study(plan)
      command = commands.command_line("small_data_study", sys.argv)
      with folder.staging() as staging:
        path = study_lib.write_study_report(result, staging,
                                            extra=[("Command", f"```\n{command.strip()}\n```")])
    print(study_lib.conclusion(result.rows, reference_lr=plan.config.reference_lr).text())
    logging.info("total wall time %.1f s; wrote %s", result.wall_s,
                 os.path.join(FLAGS.out, os.path.relpath(path, staging)))

  cli.run_main(study, on_interrupt=lambda: f"nothing written to {FLAGS.out}")


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
