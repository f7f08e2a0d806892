r"""The main job: a learning-rate sweep, every variant in one compiled program.

    python -m experiments.lr_sweep                       # digits, MLP(128), Adam, 16 LRs x 3 seeds
    python -m experiments.lr_sweep --optimizer=sgd --lrs=1e-3,1e-2,1e-1 --seeds=5 --out=runs/sgd
    python -m experiments.lr_sweep --train_size=100 --folds=5 --schedule=exponential

Writes results.csv, history.npz and summary.json into --out and prints the table.
"""

from absl import app, flags, logging

from lr_jax import cli

cli.define_sweep_flags()
cli.define_run_flags()
flags.DEFINE_string("out", "runs/lr_sweep", "Output folder.")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")

  def sweep():
    # Check every flag before importing the engine's heavy parts or compiling anything.
    experiment = cli.experiment_from_flags(FLAGS)
    grid = cli.grid_from_flags(FLAGS)
    options = cli.options_from_flags(FLAGS, FLAGS.out)
    from lr_jax import stats
    select = stats.check_select(FLAGS.select)
    cli.initialize_distributed(FLAGS)  # Before anything touches a JAX backend.
    from lr_jax import engine, results
    groups = engine.plan_sweep(experiment, grid)
    cli.enable_compilation_cache()
    result = engine.run_planned(groups, grid, target=FLAGS.target, options=options, select=select)
    import jax
    if jax.process_index() != 0:
      return  # Process 0 writes the outputs.
    paths = results.write_outputs(result, FLAGS.out)
    if options.checkpoint_dir and not FLAGS.checkpoint_dir:
      engine.clear_checkpoints(options.checkpoint_dir)  # The results now hold everything.
    print(results.format_table(result))
    logging.info("wrote %s", ", ".join(paths))

  cli.run_main(sweep)


if __name__ == "__main__":
  app.run(main)
