r"""The main job: a learning-rate sweep, every variant in one compiled program.

    python -m experiments.lr_sweep                       # digits, MLP(128), Adam, 16 LRs x 3 seeds
    python -m experiments.lr_sweep --optimizer=sgd --lrs=1e-3,1e-2,1e-1 --seeds=5 --out=runs/sgd
    python -m experiments.lr_sweep --train_size=100 --folds=5 --schedule=exponential
    python -m experiments.lr_sweep --train_size=200 --optimizer=adamw --dropout_rate=0,0.2,0.5 \
        --weight_decay=0,1e-4,1e-2          # learning rate x dropout x weight decay: one program

Every sweepable number (`--helpfull` lists them by namespace; README "Sweepable numbers") is a
comma list; the grid is the product of the lists. Writes results.csv, history.npz,
summary.json, report.md and its figures (lr_accuracy.png, lr_loss.png, curves_loss.png,
curves_accuracy.png; --noreport: none) into --out and prints the table. --out is checked and locked before anything compiles; the files replace the previous ones
together; a different sweep's results are only replaced with --overwrite. A finished sweep's
results are always written: a refit (--refit, --test_fraction, --save_model) that fails after
it (every refit run diverged) is one `error:` line and exit 2 after they are, with nothing
saved in --save_model.
"""

import contextlib
import dataclasses
import os
import sys

from absl import flags, logging

from lr_jax import cli, commands
from lr_jax.errors import ConfigError

cli.define_sweep_flags()
cli.define_run_flags()
cli.define_output_flags()
cli.define_export_flags()
flags.DEFINE_string("out", "runs/lr_sweep", "Output folder.")
flags.DEFINE_bool("report", True, "Write report.md and its figures (PNG) into --out.")
FLAGS = flags.FLAGS


def _checked_flags():
  """Every flag checked before the engine's heavy parts load or anything compiles: the
  experiment, the grid, the run options, the selection rule, the score, whether to refit."""
  experiment = cli.experiment_from_flags(FLAGS)
  grid = cli.grid_from_flags(FLAGS)
  options = cli.options_from_flags(FLAGS, FLAGS.out)
  from lr_jax import stats
  select = stats.check_select(FLAGS.select)
  from lr_jax.config import check_choice
  from lr_jax.results import SCORES
  check_choice("score", FLAGS.score, SCORES)
  return experiment, grid, options, select, FLAGS.score, cli.refit_from_flags(FLAGS)


def _refit(result, refit: bool):
  """`(result with its estimate, model, failure)`: the sweep is done, so the refit's failure (a
  divergence, a bug, Ctrl-C) is kept to report beside the written results, not raised here."""
  from lr_jax import export
  if not refit:  # Every process refits: the refit is a sweep too.
    return result, None, None
  try:
    model = export.refit(result)
  except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
    return result, None, e
  return dataclasses.replace(result, estimate=model.estimate), model, None


def _write(folder, model_folder, result, model, options, state: dict) -> list[str]:
  """The results (and the report) as one unit; the model in its folder; the names written."""
  from lr_jax import engine, export, results
  with folder.staging() as staging:
    names = results.write_files(result, staging)
    if FLAGS.report:  # The figures and the page go with the files they describe.
      from lr_jax import report
      names += report.write_sweep_report(
          result, staging, command=commands.command_line("lr_sweep", sys.argv))
  state["written"] = FLAGS.out
  if options.checkpoint_dir and not FLAGS.checkpoint_dir:
    engine.clear_checkpoints(options.checkpoint_dir)  # The results now hold everything.
  if FLAGS.save_model:
    if model is not None:
      with model_folder.staging() as staging:
        export.write_model(model, staging)
    else:  # Nothing to save: the folder as it was (gone again, if this run created it).
      model_folder.close(remove_if_empty=True)
  return names


def _raise_refit_failure(refit_failure, state: dict) -> None:
  """After the results: Ctrl-C as it was; otherwise one line (exit 2) that says both."""
  if refit_failure is None:
    return
  if isinstance(refit_failure, KeyboardInterrupt):
    state["refit_cut"] = True
    raise refit_failure
  what = (str(refit_failure) if isinstance(refit_failure, ConfigError)
          else f"{type(refit_failure).__name__}: {refit_failure}")
  message = (f"the refit failed: {' '.join(what.split())}; the sweep's results are written "
             f"into {FLAGS.out}" + (f", nothing saved in --save_model {FLAGS.save_model}"
                                    if FLAGS.save_model else ""))
  logging.error("%s", message)
  if not isinstance(refit_failure, ConfigError):
    raise RuntimeError(message) from refit_failure  # A bug: its traceback, data kept.
  raise ConfigError(message)


def _sweep(state: dict) -> None:
  """The run: plan, lock the folders, sweep, refit, write, print the table."""
  experiment, grid, options, select, score, refit = _checked_flags()
  cli.initialize_distributed(FLAGS)  # Before anything touches a JAX backend.
  from lr_jax import api, engine, export, outputs, results
  groups = engine.plan_sweep(experiment, grid)
  import jax
  primary = not FLAGS.distributed or jax.process_index() == 0  # Process 0 writes the files.
  with contextlib.ExitStack() as stack:
    folder = model_folder = None
    if primary:  # The output folder checked and locked, the checkpoints checked: no compiling.
      folder = stack.enter_context(outputs.OutputFolder(
          FLAGS.out, overwrite=FLAGS.overwrite,
          identity=outputs.sweep_identity(groups, grid, FLAGS.target, select,
                                          options.prune_config(), score)))
      cli.check_checkpoints(options, FLAGS.overwrite)
      if FLAGS.save_model:  # Checked and locked before compiling, as --out.
        model_folder = stack.enter_context(export.model_folder(
            FLAGS.save_model, folder.identity, FLAGS.overwrite))
    state["checkpoint_dir"] = options.checkpoint_dir
    cli.enable_compilation_cache()
    result = api.run_planned(groups, grid, target=FLAGS.target, options=options,
                             select=select, score=score)
    result, model, refit_failure = _refit(result, refit)
    if not primary:
      if refit_failure is not None:
        raise refit_failure
      return
    names = _write(folder, model_folder, result, model, options, state)
  print(results.format_table(result))
  logging.info("wrote %s into %s", ", ".join(map(os.path.basename, names)), FLAGS.out)
  _raise_refit_failure(refit_failure, state)


def _interrupted(state: dict) -> str:
  """What Ctrl-C leaves, in one line: the written results, a checkpoint to resume, or nothing."""
  if state.get("written"):
    return (f"the sweep's results are written into {state['written']}" + (
        "; the refit was cut short" + (f", nothing saved in --save_model {FLAGS.save_model}"
                                       if FLAGS.save_model else "")
        if state.get("refit_cut") else ""))
  if cli.checkpoint_files(state.get("checkpoint_dir")):
    return (f"the checkpoint in {state['checkpoint_dir']} keeps the progress; continue with: "
            f"{commands.resume_command('lr_sweep', sys.argv)}")
  return "no results written (--checkpoint_every=K would let --resume continue)"


def main(argv):
  del argv  # cli.parse_flags refuses stray arguments.
  state = {}
  cli.run_main(lambda: _sweep(state), on_interrupt=lambda: _interrupted(state))


if __name__ == "__main__":  # As `lr-jax` and experiments/ run it: commands.run.
  commands.run(sys.modules[__name__])
