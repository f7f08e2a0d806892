r"""The small-data study: is a very small learning rate necessary with a small training set?

    python -m experiments.small_data_study                      # the answer, ~6 min on 2 cores
    python -m experiments.small_data_study --quick              # a first look, ~20 s
    python -m experiments.small_data_study --design=product --plan_only   # the wide grid's cost
    python -m experiments.small_data_study --dataset=breast_cancer
    python -m experiments.small_data_study --helpshort          # every flag, its defaults

Design (`StudyConfig.design`): unions, not products. The reference line (Adam, MLP(128),
constant schedule, trained to convergence) runs at every training size, and also with
exponential decay and under fixed steps; SGD and MLP(16) are one line each that differ from it
in that factor alone. On the reference line, a label-noise arm (two sizes, noise 0/0.2/0.4,
scored at the clean-validation best epoch and at the last epoch) and a regularisation arm
(dropout x weight decay). Every cell is a full learning-rate sweep over seeds x k-fold
cross-validation. The plan's cost (programs, runs, TFLOP, estimated time on this machine) is
printed before anything trains. Writes report.md (answer, findings, table, figures, the
literature beside the findings), best_lr_<budget>.png, sensitivity_*.png, results.csv,
history.npz and summary.json into --out.
"""

from __future__ import annotations

import sys

from absl import flags, logging

from lr_jax import cli, commands

# One flag a `StudyConfig` field (`cli.define_config_flags`: its type, docstring and defaults,
# --quick's too); the regularisation line's axes are the sweep's flags of those numbers.
_NAMES = {"learning_rates": "lrs"}
_SKIP = ("regularisation",)


def _define_flags() -> None:
  from lr_jax import hparams
  from lr_jax.study import StudyConfig
  from lr_jax.study.config import REGULARISATION
  cli.define_config_flags(StudyConfig, names=_NAMES, skip=_SKIP)
  full, quick = dict(StudyConfig().regularisation), dict(StudyConfig.quick().regularisation)
  catalog = hparams.catalog()
  for name in REGULARISATION:
    text = lambda values: ",".join(f"{v:g}" for v in values)
    flags.DEFINE_list(
        name, None, f"{catalog[name].spec.help[:1].upper()}{catalog[name].spec.help[1:]}, "
        "tuned on the regularisation line (Adam at the largest width, run as AdamW): comma list "
        f"with 0; 0 alone for none; default {text(full.get(name, (0.0,)))}; --quick: "
        f"{text(quick.get(name, (0.0,)))}.")


_define_flags()
cli.define_output_flags()
cli.define_distributed_flags()
flags.DEFINE_string("out", "runs/small_data_study", "Output folder.")
flags.DEFINE_bool("plan_only", False, "Print the plan's cost (programs, runs, TFLOP, estimated "
                  "time on this machine) and exit: nothing trains, nothing is written.")
FLAGS = flags.FLAGS


def config_from_flags(f):
  """The `StudyConfig` the flags describe: --quick's or the full defaults, then the overrides."""
  from lr_jax.study import StudyConfig
  from lr_jax.study.config import REGULARISATION
  regularisation = None
  given = {name: cli.parse_floats(name, getattr(f, name)) for name in REGULARISATION}
  if any(v is not None for v in given.values()):
    base = dict((StudyConfig.quick() if f.quick else StudyConfig()).regularisation)
    base.update({k: v for k, v in given.items() if v is not None})
    regularisation = {k: v for k, v in base.items() if tuple(v) != (0.0,)}
  return cli.config_from_flags(StudyConfig, f, names=_NAMES, skip=_SKIP,
                               regularisation=regularisation)


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def study():
    import dataclasses
    import os

    from lr_jax import outputs
    from lr_jax import study as study_lib
    cli.initialize_distributed(FLAGS)  # Before anything touches a JAX backend.
    plan = study_lib.plan_study(config_from_flags(FLAGS))  # Every check, nothing compiled.
    cost = lambda: study_lib.cost_text(study_lib.plan_cost(plan), study_lib.machine_rate())
    if FLAGS.plan_only:
      print(cost())
      return
    import jax
    if FLAGS.distributed and jax.process_index() != 0:
      # Every process trains its share of each group's variants; process 0 writes the files.
      cli.enable_compilation_cache()
      study_lib.run_study(plan)
      return
    identity = {"kind": "small_data_study", "config": dataclasses.asdict(plan.config)}
    with outputs.OutputFolder(FLAGS.out, identity=identity, overwrite=FLAGS.overwrite) as folder:
      cli.enable_compilation_cache()
      print(cost(), flush=True)  # After --out is checked: measuring the rate compiles.
      logging.info("small-data study: %d compile groups, %d cells", len(plan.groups),
                   len(plan.cells))
      result = study_lib.run_study(plan)
      command = commands.command_line("small_data_study", sys.argv)
      with folder.staging() as staging:
        path = study_lib.write_study_report(result, staging,
                                            extra=[("Command", f"```\n{command.strip()}\n```")])
    print(study_lib.study_conclusion(plan.config, result.rows).text())
    logging.info("total wall time %.1f s; wrote %s", result.wall_s,
                 os.path.join(FLAGS.out, os.path.relpath(path, staging)))

  cli.run_main(study, on_interrupt=lambda: f"nothing written to {FLAGS.out}")


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
