r"""The LR range test ("LR finder"), checked against a real sweep.

    python -m experiments.lr_finder                          # digits, MLP(128), Adam, 3 seeds
    python -m experiments.lr_finder --optimizer=sgd --finder_steps=300 --out=runs/finder_sgd
    python -m experiments.lr_finder --nocheck_sweep          # the range test alone, seconds

One run per seed raises the learning rate exponentially every step from --finder_lr_min to
--finder_lr_max over --finder_steps steps (all seeds in one compiled program), then suggests
learning rates from the smoothed loss curve. With --check_sweep (default) a real sweep around
the suggestions (--check_num_lrs LRs from --check_span x below the smallest to --check_span x
above the largest, or --lrs) trains --seeds seeds for up to --epochs epochs and the report says
where each suggestion lands against the sweep's best learning rate.

Writes finder.png, finder.json and report.md into --out (and the check sweep's results.csv,
history.npz and summary.json into --out/sweep), all committed together; --out is checked and
locked before anything compiles, and another run's results are only replaced with --overwrite.
A flag this run would not read is refused, not ignored: lr_sweep's --target and --select, the
check sweep's (--lrs, --epochs, --schedule, ...) with --nocheck_sweep, and --check_num_lrs or
--check_span with --lrs.
"""

import dataclasses
import math
import os
import sys

from absl import flags, logging

from lr_jax import cli, commands
from lr_jax.errors import ConfigError

cli.define_sweep_flags()
cli.define_output_flags()
flags.DEFINE_float("finder_lr_min", 1e-7, "Learning rate of the range test's first step.")
flags.DEFINE_float("finder_lr_max", 10.0, "Learning rate of the range test's last step.")
flags.DEFINE_integer("finder_steps", 200, "Steps of the range test (one learning rate each).")
flags.DEFINE_float("finder_beta", 0.98, "Decay of the loss's moving average.")
flags.DEFINE_bool("check_sweep", True, "Check the suggestions with a real sweep around them.")
flags.DEFINE_integer("check_num_lrs", 9, "Learning rates of the check sweep (unless --lrs).")
flags.DEFINE_float("check_span", 30.0, "The check sweep spans this factor beyond the suggestions.")
flags.DEFINE_string("out", "runs/lr_finder", "Output folder.")
FLAGS = flags.FLAGS

# The sweep script's grid flags mean nothing here; refusing them beats ignoring them.
_SWEEP_ONLY = {"lr_min": "--finder_lr_min", "lr_max": "--finder_lr_max",
               "num_lrs": "--check_num_lrs"}
# lr_sweep's flags that this script never reads (its check sweep selects by the default rule).
_NEVER_READ = ("target", "select", "score")
# The flags only the check sweep reads: the range test takes the optimizer family, clipping and
# batch size, and ramps the learning rate itself instead of a schedule (`finder.finder_optim`).
_CHECK_SWEEP_ONLY = ("lrs", "check_num_lrs", "check_span", "epochs", "patience", "monitor",
                     "min_delta", "restore_best", "divergence_factor", "max_steps", "schedule",
                     "decay_steps", "staircase", "boundaries", "scales")


def _check_flags_apply(f) -> None:
  """Refuses a flag given on the command line that this run would not read."""
  given = [name for name in (*_NEVER_READ, *_CHECK_SWEEP_ONLY) if f[name].present]
  for name in given:
    if name in _NEVER_READ:
      raise ConfigError(f"--{name} is lr_sweep's and does not apply here: the check sweep "
                        f"reports where each suggestion lands against its best learning rate; "
                        f"drop --{name}")
    if not f.check_sweep:
      raise ConfigError(f"--{name} does not apply with --nocheck_sweep: only the check sweep "
                        "reads it (the range test runs --finder_steps steps of its own "
                        f"learning-rate ramp); drop --{name}")
  if f.lrs is not None:
    for name in ("check_num_lrs", "check_span"):
      if f[name].present:
        raise ConfigError(f"--{name} does not apply with --lrs, which gives the check sweep's "
                          f"learning rates itself; drop --{name}")


def _one_value_each(f) -> dict[str, float]:
  """The dynamic numbers the flags give (`cli.hparams_from_flags`), one value each."""
  out = {}
  for name, values in cli.hparams_from_flags(f).items():
    if len(values) != 1:
      raise ConfigError(
          f"--{name}: the range test takes one value, got {','.join(map(str, values))}; valid: a "
          "single number")
    out[name] = values[0]
  return out


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.

  def run():
    # Every check runs before anything compiles (lr_finder's own checks included).
    for name, instead in _SWEEP_ONLY.items():
      if FLAGS[name].present:
        raise ConfigError(
            f"--{name} sets lr_sweep's grid and is not used here; valid: {instead} (and --lrs "
            "for the check sweep's grid)")
    _check_flags_apply(FLAGS)
    experiment = cli.experiment_from_flags(FLAGS)
    from lr_jax import api, config, engine, finder, outputs, results
    finder.check_finder_args(
        FLAGS.finder_lr_min, FLAGS.finder_lr_max, FLAGS.finder_steps, FLAGS.finder_beta,
        names=("--finder_lr_min", "--finder_lr_max", "--finder_steps", "--finder_beta"))
    config.check_positive("--seeds", FLAGS.seeds, integer=True)
    config.check_positive("--check_num_lrs", FLAGS.check_num_lrs, integer=True)
    if not FLAGS.check_span > 1 or not math.isfinite(FLAGS.check_span):
      raise ConfigError(f"--check_span must be a finite number > 1, got {FLAGS.check_span!r}")
    check_lrs = cli.parse_learning_rates("lrs", FLAGS.lrs)  # Distinct: as the sweep's Grid.
    hparams = _one_value_each(FLAGS)
    seeds = tuple(range(FLAGS.seeds))
    identity = {
        "kind": "lr_finder", "experiment": dataclasses.asdict(experiment), "seeds": seeds,
        "hparams": hparams,
        "finder": [FLAGS.finder_lr_min, FLAGS.finder_lr_max, FLAGS.finder_steps, FLAGS.finder_beta],
        "check": [FLAGS.check_sweep, check_lrs, FLAGS.check_num_lrs, FLAGS.check_span]}
    with outputs.OutputFolder(FLAGS.out, identity=identity, overwrite=FLAGS.overwrite) as folder:
      cli.enable_compilation_cache()
      result = finder.lr_finder(
          experiment, lr_min=FLAGS.finder_lr_min, lr_max=FLAGS.finder_lr_max,
          num_steps=FLAGS.finder_steps, seeds=seeds, beta=FLAGS.finder_beta, hparams=hparams)
      sweep = comparison = None
      if FLAGS.check_sweep:
        lrs = check_lrs or finder.check_grid(result, num=FLAGS.check_num_lrs, span=FLAGS.check_span)
        if lrs is None:
          logging.warning("no suggestion (every seed stopped within the skipped steps): no check")
        else:
          grid = engine.Grid(learning_rates=lrs, seeds=seeds,
                             hparams=tuple((k, (v,)) for k, v in hparams.items()))
          logging.info("check sweep: %d learning rates %.3g..%.3g x %d seeds, up to %d epochs",
                       len(lrs), lrs[0], lrs[-1], len(seeds), experiment.train.epochs)
          sweep = api.run_sweep(experiment, grid)
          comparison = finder.compare_with_sweep(result, sweep)
      with folder.staging() as staging:
        if sweep is not None:
          results.write_files(sweep, os.path.join(staging, "sweep"))
        paths = finder.write_finder_outputs(result, staging, sweep=sweep, comparison=comparison)
    logging.info("wrote %s into %s", ", ".join(map(os.path.basename, paths))
                 + (" and sweep/" if sweep is not None else ""), FLAGS.out)
    report = finder.finder_markdown(result, comparison=comparison, sweep=sweep)
    print(report.split("## Suggestions", 1)[1].strip())

  cli.run_main(run, on_interrupt=lambda: f"nothing written to {FLAGS.out}")


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
