"""lr_jax's absl flags and what every absl script shares: one-line errors, the compilation cache.

Public, for scripts of your own (see `experiments/custom_model.py`):

    from absl import flags
    from lr_jax import cli

    cli.define_flags()                       # lr_jax's flags, listed in this script's --helpshort
    flags.DEFINE_integer("width", 64, "My model's width.")   # and the script's own
    flags.DEFINE_string("out", "runs/mine", "Output folder.")
    FLAGS = flags.FLAGS

    def main(argv):
      def run():
        cli.check_out(FLAGS.out)             # not empty, writable, not in use: before any work
        exp = cli.experiment_from_flags(FLAGS, user_model="Mine")  # --hidden etc. refused
        grid = cli.grid_from_flags(FLAGS)
        ...                                  # lr_jax.run_sweep(exp, grid, model=...)
      cli.run_main(run)                      # ConfigError: one `error:` line, exit 2

    if __name__ == "__main__":
      cli.run_app(main)                      # a flag error: one `error:` line, exit 2

The static flags are the config dataclasses' fields (`field_docs`: default and help from the
dataclass); every number of `lr_jax.hparams.catalog()` is a comma-list flag `--<name>`
(`define_hparam_flags`), grouped by namespace in `--helpfull`. A flag given on the command line
that the configuration does not read is refused, not ignored (`check_flags_apply`, from
`lr_jax.config.APPLIES`; a sweepable number's when the sweep is planned).

A flag of the script's own with the name of one of lr_jax's is refused when it is defined
(`flags.DuplicateFlagError` naming it), whichever is defined first: rename yours, or read
lr_jax's (`FLAGS.seeds`). lr_jax's own scripts may each call the `define_*` functions; a flag
lr_jax already defined is defined once.

The package's modules, one idea each (each imports only those above it):

    folders      `check_out`; the checkpoint folder checked and held until the run ends
    run          `run_main`, `run_app`: one-line errors and exit 2, Ctrl-C; the compilation cache
    sweepable    the sweepable numbers' flags: help, defaults, the README's table, parsing
    flags        `define_flags`: each of lr_jax's flags defined once, from the config dataclasses
    build        configs from the parsed flags: `experiment_from_flags`, `grid_from_flags`, ...
    configs      an application's flags from its config dataclass (`define_config_flags`,
                 `config_from_flags`): the study's and the article examples'
    distributed  `initialize_distributed`: `--distributed`, the process group joined
"""

from lr_jax.cli.build import (check_flags_apply, experiment_from_flags, grid_from_flags,
                              hparams_from_flags, options_from_flags, parse_floats, parse_ints,
                              parse_learning_rates, parse_list, refit_from_flags)
from lr_jax.cli.configs import config_from_flags, define_config_flags
from lr_jax.cli.distributed import initialize_distributed
from lr_jax.cli.flags import (define_distributed_flags, define_export_flags, define_flags,
                              define_hparam_flags, define_output_flags, define_run_flags,
                              define_sweep_flags, field_docs)
from lr_jax.cli.flags import _FLAG_HELP  # noqa: F401  (read by tests/cli_test.py)
from lr_jax.cli.folders import check_checkpoints, check_out, checkpoint_files, release_locks
from lr_jax.cli.run import (command_line, enable_compilation_cache, parse_flags, resume_command,
                            run_app, run_main)
from lr_jax.cli.sweepable import sweepable_table

__all__ = [
    "check_checkpoints", "check_flags_apply", "check_out", "checkpoint_files", "command_line",
    "config_from_flags", "define_config_flags", "define_distributed_flags",
    "define_export_flags", "define_flags",
    "define_hparam_flags", "define_output_flags", "define_run_flags", "define_sweep_flags",
    "enable_compilation_cache", "experiment_from_flags", "field_docs", "grid_from_flags",
    "hparams_from_flags", "initialize_distributed", "options_from_flags", "parse_flags",
    "parse_floats", "parse_ints", "parse_learning_rates", "parse_list", "refit_from_flags",
    "release_locks",
    "resume_command", "run_app", "run_main", "sweepable_table"]
