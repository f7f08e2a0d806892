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
        exp, grid = cli.experiment_from_flags(FLAGS), cli.grid_from_flags(FLAGS)
        ...                                  # lr_jax.run_sweep(exp, grid, model=...)
      cli.run_main(run)                      # ConfigError: one `error:` line, exit 2

    if __name__ == "__main__":
      cli.run_app(main)                      # a flag error: one `error:` line, exit 2

A flag of the script's own with the name of one of lr_jax's is refused when it is defined
(`flags.DuplicateFlagError` naming it), whichever is defined first: rename yours, or read
lr_jax's (`FLAGS.seeds`). lr_jax's own scripts may each call the `define_*` functions; a flag
lr_jax already defined is defined once.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence

from lr_jax.errors import ConfigError


def enable_compilation_cache(path: str | None = None) -> str:
  """Turns on JAX's persistent compilation cache, so a second run skips XLA compilation.

  Args:
    path: cache folder; default `$JAX_COMPILATION_CACHE_DIR` or `~/.cache/lr_jax/xla`.

  Returns:
    The folder used.
  """
  import jax
  path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "lr_jax", "xla")
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  # Our programs compile in about a second: cache them all, not only the slow ones.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def parse_floats(flag: str, values: Sequence[str] | None) -> tuple[float, ...] | None:
  """Parses a comma-list flag of numbers; a bad entry is a `ConfigError` naming it."""
  if values is None:
    return None
  out = []
  for text in values:
    try:
      x = float(text)
    except ValueError:
      raise ConfigError(f"--{flag}: {text!r} is not a number; give a comma list like 1e-3,1e-2") from None
    if not math.isfinite(x):
      raise ConfigError(f"--{flag}: {text!r} is not finite; give finite numbers")
    out.append(x)
  return tuple(out)


def parse_ints(flag: str, values: Sequence[str] | None) -> tuple[int, ...] | None:
  """Parses a comma-list flag of integers; a bad entry is a `ConfigError` naming it."""
  if values is None:
    return None
  out = []
  for text in values:
    try:
      out.append(int(text))
    except ValueError:
      raise ConfigError(f"--{flag}: {text!r} is not an integer; give a comma list like 64,128") from None
  return tuple(out)


def run_main(main: Callable[[], object], on_interrupt: Callable[[], str | None] | None = None
             ) -> None:
  """Runs `main`: a `ConfigError` is one `error:` line and exit 2, Ctrl-C one line and exit 130.

  Args:
    main: the script's work.
    on_interrupt: returns what to say after "interrupted; " (e.g. the command that resumes),
      or None.
  """
  try:
    main()
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    hint = on_interrupt() if on_interrupt is not None else None
    print("interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
    sys.exit(130)  # 128 + SIGINT, as a shell reports a process Ctrl-C ended.


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parser, with a bad flag or a stray argument one `error:` line and exit 2."""
  from absl import flags
  try:
    rest = flags.FLAGS(list(argv))
  except flags.Error as e:
    message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
    print(f"error: {message} (--helpfull lists the flags)", file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f"error: unexpected arguments {' '.join(rest[1:])!r}; flags are written "
          "--name=value", file=sys.stderr)
    sys.exit(2)
  return rest


def run_app(main: Callable[[list[str]], object]) -> None:
  """`absl.app.run(main)` with `parse_flags`, so a flag error exits 2 as the README promises."""
  from absl import app
  app.run(main, flags_parser=parse_flags)


def command_line(module: str, argv: Sequence[str]) -> str:
  """'python -m module --flag=value ...': the command `argv` ran, quoted for a shell."""
  return f"python -m {module} {shlex.join(argv[1:])}".rstrip()


def resume_command(module: str, argv: Sequence[str]) -> str:
  """The command line that continues the run `argv` started: the same flags plus `--resume`."""
  kept = [a for a in argv[1:]
          if a.lstrip("-").split("=", 1)[0] not in ("resume", "noresume")]
  return f"python -m {module} " + shlex.join([*kept, "--resume"])


def checkpoint_files(checkpoint_dir: str | None) -> list[str]:
  """The sweep checkpoint files in `checkpoint_dir` (none if it is None or missing)."""
  if not checkpoint_dir or not os.path.isdir(checkpoint_dir):
    return []
  return sorted(n for n in os.listdir(checkpoint_dir)
                if n.startswith("group") and n.endswith(".npz"))


def check_checkpoints(options, overwrite: bool) -> None:
  """Checks the checkpoint folder can be written and refuses to start over a resumable one.

  Starting afresh would overwrite, then delete, a checkpoint that `--resume` could continue:
  that needs `--overwrite`, which discards it here (so a stale file cannot be resumed later).

  Raises:
    ConfigError: the folder is not writable, or holds a checkpoint and neither `--resume`
      nor `--overwrite` was given.
  """
  from lr_jax import outputs
  directory = options.checkpoint_dir
  if not directory:
    return
  outputs.remove_empty(outputs.check_writable(directory, "--checkpoint_dir"))
  found = checkpoint_files(directory)
  if not found or options.resume:
    return
  if not overwrite:
    raise ConfigError(
        f"{os.path.join(directory, found[0])} is the checkpoint of an interrupted sweep; "
        "continue it with --resume, or pass --overwrite to discard it and start afresh")
  from absl import logging
  logging.warning("--overwrite: discarding the checkpoint in %s", directory)
  for name in found:
    os.unlink(os.path.join(directory, name))


FLAG_GROUPS = ("sweep", "run", "output", "export")
"""The flag sets `define_flags` can define: the sweep's (data, model, optimizer, schedule,
training, selection), how it runs (chunks, checkpoints, processes), `--overwrite`, and a trained
model out (`--refit`, `--save_model`: `refit_from_flags`, `lr_jax.export`)."""


def define_flags(*groups: str, flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines lr_jax's flags for the calling script and lists them in its `--helpshort`.

  absl's `--helpshort` shows the key flags of the main module only; each flag defined here is
  registered as a key flag of the module that called this function (the script).

  Args:
    *groups: which of `FLAG_GROUPS` to define; default all of them.
    flag_values: the `absl.flags.FlagValues` to define them in; default `absl.flags.FLAGS`.

  Returns:
    The names of the flags, in the order defined.

  Raises:
    absl.flags.DuplicateFlagError: the script already defined a flag of the same name (absl
      itself raises it for one defined afterwards).
    ValueError: an unknown group.
  """
  defines = {"sweep": define_sweep_flags, "run": define_run_flags,
             "output": define_output_flags, "export": define_export_flags}
  for group in groups:
    if group not in defines:
      raise ValueError(f"unknown flag group {group!r}; valid choices: {', '.join(FLAG_GROUPS)}")
  names = []
  for group in groups or FLAG_GROUPS:
    names += defines[group](flag_values)
  return names


def _calling_module() -> str:
  """The name absl gives the first module on the stack outside this one (the script).

  absl names the main module by its path, `sys.argv[0]`, as its `--helpshort` looks it up.
  """
  frame = sys._getframe(1)
  while frame is not None and frame.f_globals.get("__name__") == __name__:
    frame = frame.f_back
  name = frame.f_globals.get("__name__") if frame is not None else None
  return sys.argv[0] if name in (None, "__main__") else name


class _Once:
  """absl's `flags` module whose DEFINE_* define each of lr_jax's flags once per `FlagValues`.

  A flag of that name defined by lr_jax already (another of lr_jax's scripts, or a second
  call) is kept; one defined by anyone else is a `flags.DuplicateFlagError`: silently taking
  over a script's own flag of the same name (say `--seeds`, with another meaning) is how a run
  goes wrong without a word. Every flag is made a key flag of the calling script, so that its
  `--helpshort` lists it.
  """

  def __init__(self, flag_values: "flags.FlagValues | None" = None):
    from absl import flags
    self.flag_values = flag_values if flag_values is not None else flags.FLAGS
    self.key_module = _calling_module()
    self.names: list[str] = []

  def __getattr__(self, name):
    from absl import flags
    define = getattr(flags, name)
    fv = self.flag_values

    def once(flag_name, *args, **kwargs):
      if flag_name not in fv:
        define(flag_name, *args, flag_values=fv, module_name=__name__, **kwargs)
      else:
        owner = fv.find_module_defining_flag(flag_name, default="an unknown module")
        if owner != __name__:
          raise flags.DuplicateFlagError(
              f"--{flag_name} is defined by {owner} and by lr_jax ({__name__}); lr_jax's "
              f"flags come with lr_jax.cli.define_flags: read FLAGS.{flag_name} instead of "
              "defining it, or rename yours")
      fv.register_key_flag_for_module(self.key_module, fv[flag_name])
      self.names.append(flag_name)

    return once


def define_sweep_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines the flags of a learning-rate sweep (data, model, optimizer, schedule, training).

  Returns their names; see `define_flags` (key flags of the caller, clashes refused).
  """
  d = _Once(flag_values)
  # Data.
  d.DEFINE_string("dataset", "digits", "Built-in data set name, or a .npz/.csv file path.")
  d.DEFINE_integer("train_size", None, "Training examples (stratified subsample); default all.")
  d.DEFINE_float("val_fraction", 0.2, "Fraction held out for validation (holdout mode).")
  d.DEFINE_string("val_dataset", None, "Validation rows: a .npz/.csv with --dataset's columns.")
  d.DEFINE_integer("folds", None, "k-fold cross-validation over the training examples (k >= 2).")
  d.DEFINE_float("test_fraction", None, "Fraction held out as a test set, drawn first and "
                 "never seen by the sweep; the refit chosen configuration is scored on it.")
  d.DEFINE_integer("data_seed", 0, "Seed of the split and subsample.")
  d.DEFINE_string("label_column", None, "Label column of a .csv file (name or index); default last.")
  d.DEFINE_bool("standardize", True, "Standardize features with training statistics.")
  d.DEFINE_string("task", None, "classification or regression (.npz/.csv files); default inferred.")
  # Model.
  d.DEFINE_string("model", "mlp", "Model: mlp, linear or cnn.")
  d.DEFINE_list("hidden", ["128"], "Hidden widths (MLP) or conv channels (CNN), comma list.")
  d.DEFINE_string("activation", "relu", "Hidden activation.")
  d.DEFINE_float("dropout", 0.0, "Dropout rate after hidden layers.")
  # Optimizer and schedule.
  d.DEFINE_string("optimizer", "adam", "Optimizer family.")
  d.DEFINE_list("lrs", None, "Learning rates, comma list; overrides --lr_min/--lr_max/--num_lrs.")
  d.DEFINE_float("lr_min", 1e-5, "Smallest learning rate of the log-spaced grid.")
  d.DEFINE_float("lr_max", 1.0, "Largest learning rate of the log-spaced grid.")
  d.DEFINE_integer("num_lrs", 16, "Number of log-spaced learning rates.")
  d.DEFINE_list("weight_decay", None, "Weight decays to sweep (adamw, lion, lamb).")
  d.DEFINE_list("momentum", None, "Momentums to sweep (momentum, nesterov).")
  d.DEFINE_string("schedule", "constant", "Schedule shape; its peak is each variant's LR.")
  d.DEFINE_integer("decay_steps", 1000, "exponential: steps per factor of --decay_rate.")
  d.DEFINE_float("decay_rate", 0.9, "exponential: decay factor per --decay_steps.")
  d.DEFINE_bool("staircase", False, "exponential: decay in whole steps.")
  d.DEFINE_float("warmup_fraction", 0.1, "warmup_cosine: fraction of steps warming up.")
  d.DEFINE_float("alpha", 0.0, "cosine, warmup_cosine: final LR as a fraction of the peak.")
  d.DEFINE_float("pct_start", 0.3, "onecycle: fraction of steps rising to the peak.")
  d.DEFINE_list("boundaries", [], "piecewise: step boundaries, comma list.")
  d.DEFINE_list("scales", [], "piecewise: LR multiplier at each boundary, comma list.")
  d.DEFINE_float("clip_norm", None, "Clip gradients to this global norm.")
  # Training.
  d.DEFINE_integer("seeds", 3, "Number of training seeds (0..seeds-1).")
  d.DEFINE_integer("epochs", 100, "Maximum epochs.")
  d.DEFINE_integer("batch_size", 32, "Minibatch size; 0 = full batch.")
  d.DEFINE_integer("patience", 5, "Early-stopping patience in epochs; 0 disables it.")
  d.DEFINE_string("monitor", "val_loss", "Early-stopping metric: val_loss, val_accuracy, or "
                  "val_<name> of a metric the script passes to run_sweep(metrics=...).")
  d.DEFINE_float("min_delta", 0.0, "Smallest change that counts as an improvement.")
  d.DEFINE_bool("restore_best", True, "End each variant with its best epoch's parameters.")
  d.DEFINE_float("divergence_factor", 10.0, "Diverged when loss > this x initial loss.")
  d.DEFINE_float("target", None, "Validation accuracy (loss for regression) to reach.")
  d.DEFINE_string("select", "best", "How the learning rate is chosen: best (highest mean) or "
                  "one_se (largest LR within one standard error of the best).")
  return d.names


def experiment_from_flags(f) -> "Experiment":
  """Builds the `Experiment` the sweep flags describe; bad values raise `ConfigError`."""
  from lr_jax.config import DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig
  if f.val_dataset is not None and f["val_fraction"].present:  # Even at its default value.
    raise ConfigError(f"--val_fraction does not apply with --val_dataset={f.val_dataset}: its "
                      "rows are the validation split; drop --val_fraction")
  return Experiment(
      data=DataConfig(
          dataset=f.dataset, train_size=f.train_size, val_fraction=f.val_fraction,
          folds=f.folds, data_seed=f.data_seed, label_column=f.label_column,
          standardize=f.standardize, task=f.task, val_dataset=f.val_dataset,
          test_fraction=f.test_fraction),
      model=ModelConfig(
          name=f.model, hidden=parse_ints("hidden", f.hidden), activation=f.activation,
          dropout=f.dropout),
      optim=OptimConfig(
          name=f.optimizer, schedule=f.schedule, decay_steps=f.decay_steps,
          decay_rate=f.decay_rate, staircase=f.staircase, warmup_fraction=f.warmup_fraction,
          alpha=f.alpha, pct_start=f.pct_start, boundaries=parse_ints("boundaries", f.boundaries),
          scales=parse_floats("scales", f.scales), clip_norm=f.clip_norm),
      train=TrainConfig(
          epochs=f.epochs, batch_size=f.batch_size, patience=f.patience, monitor=f.monitor,
          min_delta=f.min_delta, restore_best=f.restore_best,
          divergence_factor=f.divergence_factor))


def grid_from_flags(f) -> "Grid":
  """Builds the `Grid` (learning rates, seeds, extra hyperparameters) the sweep flags describe."""
  from lr_jax.config import check_positive, log_spaced
  from lr_jax.engine import Grid
  lrs = parse_floats("lrs", f.lrs)
  if lrs is None:
    lrs = log_spaced(f.lr_min, f.lr_max, f.num_lrs)
  check_positive("seeds", f.seeds, integer=True)
  extra = {name: parse_floats(name, getattr(f, name)) for name in ("weight_decay", "momentum")}
  return Grid(learning_rates=lrs, seeds=tuple(range(f.seeds)),
              hparams=tuple((k, v) for k, v in extra.items() if v is not None))


def define_export_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--refit` and `--save_model`: a trained model out of the sweep (`lr_jax.export`).

  Returns their names; see `define_flags`.
  """
  d = _Once(flag_values)
  d.DEFINE_bool("refit", None, "Retrain the chosen configuration on all the sweep's rows (an "
                "ensemble of --seeds); default on with --test_fraction or --save_model.")
  d.DEFINE_string("save_model", None, "Folder to save the refit model in (params.msgpack, "
                  "model.json); load it with lr_jax.load_model or experiments.predict.")
  return d.names


def refit_from_flags(f) -> bool:
  """Whether to refit: `--refit`, else on when `--test_fraction` or `--save_model` is given."""
  wanted = f.test_fraction is not None or f.save_model is not None
  if f.refit is False and wanted:
    given = "--test_fraction" if f.test_fraction is not None else "--save_model"
    raise ConfigError(f"{given} needs the refit model; drop --norefit")
  out = getattr(f, "out", None)
  if f.save_model is not None and out and os.path.abspath(f.save_model) == os.path.abspath(out):
    raise ConfigError(f"--save_model={f.save_model} is --out; give the model its own folder, "
                      f"e.g. --save_model={os.path.join(out, 'model')}")
  return bool(f.refit) or wanted


def define_output_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines `--overwrite`, which every script with an `--out` takes; returns its name."""
  d = _Once(flag_values)
  d.DEFINE_bool(
      "overwrite", False, "Replace a different run's results in --out (and discard a checkpoint "
      "that --resume could continue); the same run's results are replaced without it.")
  return d.names


def define_run_flags(flag_values: "flags.FlagValues | None" = None) -> list[str]:
  """Defines the flags of how a sweep runs: chunks, checkpoints, resume, processes.

  Returns their names; see `define_flags`.
  """
  d = _Once(flag_values)
  d.DEFINE_integer("max_variants_per_chunk", None,
                   "Most variants per compiled call; default from the memory and, on a CPU, the cache.")
  d.DEFINE_integer("chunk_epochs", 10, "Epochs per compiled call (progress, early exit).")
  d.DEFINE_integer("checkpoint_every", 0, "Checkpoint the sweep every this many epochs (0: off).")
  d.DEFINE_string("checkpoint_dir", None, "Checkpoint folder; default <out>/checkpoints.")
  d.DEFINE_bool("resume", False, "Continue an interrupted sweep from its checkpoints.")
  d.DEFINE_bool("compact", True, "Between compiled calls, continue only the variants still "
                "training, in a narrower program (--nocompact: keep every chunk whole).")
  d.DEFINE_string("prune", None, "Pruning rule: 'halving' (successive halving of the grid "
                  "points at --prune_rungs); default none.")
  d.DEFINE_list("prune_rungs", ["5", "15", "45"], "Epochs at which --prune=halving decides.")
  d.DEFINE_float("prune_eta", 3.0, "At each rung about 1/eta of the grid points continue.")
  d.DEFINE_bool("distributed", False, "Run on several processes (jax.distributed.initialize).")
  d.DEFINE_string("coordinator_address", None, "host:port of process 0 (or JAX_COORDINATOR_ADDRESS).")
  d.DEFINE_integer("num_processes", None, "Number of processes (or JAX_NUM_PROCESSES).")
  d.DEFINE_integer("process_id", None, "This process's index (or JAX_PROCESS_ID).")
  return d.names


def options_from_flags(f, out: str):
  """The `RunOptions` the run flags describe; checkpoints default to `<out>/checkpoints`."""
  from lr_jax.engine import RunOptions
  wants = f.checkpoint_every > 0 or f.resume
  ckpt = f.checkpoint_dir or (os.path.join(out, "checkpoints") if wants else None)
  rungs = []
  for r in f.prune_rungs:
    try:
      rungs.append(int(r))
    except ValueError:
      raise ConfigError(f"--prune_rungs {r!r} is not an integer epoch; e.g. 5,15,45") from None
  return RunOptions(max_variants_per_chunk=f.max_variants_per_chunk, checkpoint_dir=ckpt,
                    checkpoint_every=f.checkpoint_every, resume=f.resume, compact=f.compact,
                    prune=f.prune, prune_rungs=tuple(rungs), prune_eta=f.prune_eta,
                    chunk_epochs=f.chunk_epochs)


def initialize_distributed(f) -> None:
  """Joins the process group when `--distributed`; flags override the JAX_* variables.

  Afterwards `jax.devices()` lists every process's devices, the engine's mesh spans them all,
  and only process 0 should write files.
  """
  if not f.distributed:
    return
  import jax
  address = f.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = f.num_processes if f.num_processes is not None else os.environ.get("JAX_NUM_PROCESSES")
  pid = f.process_id if f.process_id is not None else os.environ.get("JAX_PROCESS_ID")
  if address is None or num is None or pid is None:
    raise ConfigError("--distributed needs --coordinator_address, --num_processes and "
                      "--process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
  num, pid = int(num), int(pid)
  if not 0 <= pid < num:
    raise ConfigError(f"--process_id must be in 0..{num - 1}, got {pid}")
  jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
