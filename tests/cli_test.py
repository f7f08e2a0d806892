"""Bad input to the main script: one line naming the value and the choices, exit 2, nothing run."""

import csv
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from experiments import lr_sweep
from lr_jax import engine

from data_test import _npz, _pets, _write  # tests/ is on sys.path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# `run_script` (tests/conftest.py) runs lr_sweep's main in process, nothing compiled.


CASES = [
    (["--dataset=mnist_huge"], ["mnist_huge", "digits", "iris"]),
    (["--model=transformer"], ["transformer", "mlp", "cnn"]),
    (["--optimizer=adamax"], ["adamax", "adam", "rmsprop"]),
    (["--schedule=linear_warmup"], ["linear_warmup", "exponential", "cosine"]),
    (["--select=median"], ["median", "best", "one_se"]),
    (["--lrs=1e-3,-0.1"], ["-0.1"]),
    (["--lrs=1e-3,0"], ["0"]),
    (["--lrs=1e-3,nan"], ["nan"]),
    (["--lrs=1e-3,inf"], ["inf"]),
    (["--lrs=1e-3,abc"], ["abc"]),
    (["--lr_min=1e-2", "--lr_max=1e-3"], ["lr_min", "0.01", "0.001"]),
    (["--lr_min=1e-2", "--lr_max=1e-2"], ["lr_min"]),
    (["--lrs="], ["empty"]),
    (["--num_lrs=0"], ["num_lrs", "0"]),
    (["--train_size=5000"], ["5000", "1437"]),
    (["--train_size=5"], ["5", "10"]),
    (["--train_size=50", "--batch_size=64"], ["64", "50"]),
    (["--folds=1"], ["folds", "1"]),
    (["--train_size=30", "--folds=4"], ["4", "3"]),
    (["--val_fraction=0"], ["val_fraction", "0"]),
    (["--val_fraction=1.5"], ["val_fraction", "1.5"]),
    (["--monitor=val_acc"], ["val_acc", "val_loss", "val_accuracy"]),
    (["--epochs=0"], ["epochs", "0"]),
    (["--seeds=0"], ["seeds", "0"]),
    (["--optimizer=adam", "--momentum=0.9"], ["momentum", "adam"]),
    (["--hidden=64,x"], ["x"]),
    # The sweepable numbers: out of range or not a number, named with the valid range.
    (["--dropout_rate=0,1"], ["--dropout_rate", ": 1 ", "[0, 1)"]),
    (["--dropout=0.1,abc"], ["--dropout_rate", "'abc'", "[0, 1)"]),
    (["--label_smoothing=-0.1"], ["--label_smoothing", "-0.1", "[0, 1)"]),
    (["--input_noise=-1"], ["--input_noise", "-1", "[0, inf)"]),
    (["--schedule=plateau", "--plateau_factor=0.5,1"], ["--plateau_factor", ": 1 ", "(0, 1)"]),
    (["--schedule=plateau", "--plateau_patience=2.5"], ["--plateau_patience", "2.5", "integers"]),
    (["--weight_decay="], ["--weight_decay", "empty", "[0, inf)"]),
    (["--model=cnn", "--hidden=4", "--shift=8"], ["shift", "8", "[0, 7]"]),  # digits: 8x8
    (["--decay_rate=0.5"], ["decay_rate", "'constant'"]),
    (["--model=linear", "--dropout=0.2"], ["dropout_rate", "'linear'"]),
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_flag_is_refused_with_one_line(run_script, args, needles):
  code, err = run_script(*args)
  assert code == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])


def test_bad_files_are_refused_with_one_line(run_script, tmp_path):
  cases = [
      (str(tmp_path / "missing.csv"), [], ["missing.csv"]),
      (_write(tmp_path, "empty.csv", ""), [], ["empty.csv"]),
      (_write(tmp_path, "header_only.csv", "a,b,label\n"), [], ["header_only.csv"]),
      (_write(tmp_path, "ragged.csv", "a,b,label\n1,2,0\n3,1\n5,6,1\n"), [], ["3"]),
      (_write(tmp_path, "text.csv", "a,b,label\n1,2,0\n3,oops,1\n"), [], ["oops", "b"]),
      (_write(tmp_path, "nolabel.csv", "a,b,c\n1,2,0\n3,4,1\n"), ["--label_column=label"],
       ["label", "a, b, c"]),
      (_write(tmp_path, "nan.csv", "a,b,label\n1,nan,0\n3,4,1\n5,6,0\n7,8,1\n"), [], ["NaN", "b"]),
      (_npz(tmp_path, "nox.npz", features=np.zeros((4, 2)), y=np.zeros(4)), [], ["x", "features"]),
      (_write(tmp_path, "data.txt", "1,2\n"), [], ["data.txt", ".npz", ".csv"]),
  ]
  for path, extra, needles in cases:
    code, err = run_script(f"--dataset={path}", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (path, err)
    for needle in needles:
      assert needle in lines[0], (path, needle, lines[0])


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.lr_sweep", "--optimizer=adamax", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      proc.stderr.strip().splitlines()[0]] and "adamax" in proc.stderr
  assert not out.exists()


def test_val_dataset_flag(run_script, tmp_path):
  train, valid = _pets(tmp_path)
  bird = _write(tmp_path, "bird.csv", "a,b,pet\n1,2,bird\n")
  for extra, needles in ((["--folds=3"], ["folds=3", "valid.csv"]),
                         (["--val_fraction=0.2"], ["--val_fraction", "--val_dataset"]),
                         ([f"--val_dataset={bird}"], ["bird.csv", "'bird'"])):
    code, err = run_script(f"--dataset={train}", f"--val_dataset={valid}", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (extra, err)
    for needle in needles:
      assert needle in lines[0], (needle, lines[0])
  from lr_jax import cli
  try:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", f"--dataset={train}", f"--val_dataset={valid}", "--train_size=6",
                 "--batch_size=0"])
    exp, grid = cli.experiment_from_flags(flags.FLAGS), cli.grid_from_flags(flags.FLAGS)
  finally:
    flags.FLAGS.unparse_flags()
  assert exp.data.val_dataset == valid
  group = engine.plan_sweep(exp, grid)[0]
  val = group.splits.val_idx[0][group.splits.val_mask[0]]
  np.testing.assert_array_equal(group.dataset.x[val], [[70, 7], [80, 8], [90, 9]])


# The output folder, checkpoints, Ctrl-C and flag parsing (the engine replaced by a fake result:
# these are about the files around a run, not the run).

from lr_jax import cli, outputs  # noqa: E402
from outputs_test import fake_result  # noqa: E402


@pytest.fixture
def sweep(monkeypatch, capsys):
  """Runs lr_sweep's main in-process; returns (exit code or 0, stderr, whether it ran)."""
  ran = []

  def fake_run(groups, grid, target=None, options=None, select=None, score="best_epoch"):
    ran.append(options)
    return fake_result(grid.learning_rates)

  monkeypatch.setattr(engine, "run_planned", fake_run)

  def run(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", "--train_size=100", "--epochs=2", *args])
    code = 0
    try:
      lr_sweep.main(["lr_sweep"])
    except SystemExit as e:
      code = e.code
    out = capsys.readouterr()
    return code, out.err, bool(ran) and ran.pop() is not None

  yield run
  flags.FLAGS.unparse_flags()


def _error_line(err):
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  return lines[0]


def test_a_bad_out_is_refused_before_anything_runs(sweep, tmp_path):
  existing = tmp_path / "results.csv"
  existing.write_text("keep")
  for out, needle in ((existing, "is an existing file"), (existing / "sub", "is a file"),
                      ("/proc/lr_jax/out", "not writable")):
    code, err, ran = sweep(f"--out={out}")
    assert code == 2 and not ran, err
    line = _error_line(err)
    assert f"--out {out}" in line and needle in line, line
  code, err, ran = sweep(f"--out={tmp_path / 'ok'}", "--checkpoint_every=1",
                         "--checkpoint_dir=/proc/lr_jax/ckpt")
  assert code == 2 and not ran
  assert "--checkpoint_dir /proc/lr_jax/ckpt is not writable" in _error_line(err)
  assert existing.read_text() == "keep"


def test_a_second_sweep_on_the_same_out_is_refused_before_it_runs(sweep, tmp_path):
  out = tmp_path / "out"
  with outputs.OutputFolder(str(out), identity={"kind": "sweep"}):  # Another sweep, running.
    code, err, ran = sweep(f"--out={out}", "--lrs=0.1")
  assert code == 2 and not ran
  assert f"--out {out} is in use by another run (process {os.getpid()})" in _error_line(err)
  assert sorted(os.listdir(out)) == [outputs.LOCK_NAME]


def test_rerunning_a_sweep_replaces_its_results_another_needs_overwrite(sweep, tmp_path):
  out = tmp_path / "out"
  assert sweep(f"--out={out}", "--lrs=0.01,0.1")[:2] == (0, "")
  assert sweep(f"--out={out}", "--lrs=0.01,0.1")[0] == 0  # `make run` twice.
  csv_before = (out / "results.csv").read_text()
  code, err, ran = sweep(f"--out={out}", "--lrs=0.01,0.2")
  assert code == 2 and not ran
  line = _error_line(err)
  assert "holds the results of a different sweep" in line and "grid.learning_rates" in line
  assert "--overwrite" in line
  assert (out / "results.csv").read_text() == csv_before
  code, err, ran = sweep(f"--out={out}", "--lrs=0.01,0.2", "--overwrite")
  assert code == 0 and ran
  assert "0.2" in (out / "results.csv").read_text()


def test_chunk_epochs_is_a_run_option_the_same_sweep_and_output_folder(sweep, tmp_path):
  out = tmp_path / "out"
  assert sweep(f"--out={out}", "--lrs=0.1", "--chunk_epochs=2")[0] == 0
  code, err, ran = sweep(f"--out={out}", "--lrs=0.1", "--chunk_epochs=5")
  assert (code, err) == (0, "") and ran  # Not "a different sweep": no --overwrite needed.
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["lr_sweep", "--chunk_epochs=5"])
  assert cli.options_from_flags(flags.FLAGS, str(out)).chunk_epochs == 5
  assert not hasattr(cli.experiment_from_flags(flags.FLAGS).train, "chunk_epochs")


def test_starting_afresh_over_a_checkpoint_is_refused_naming_resume_and_overwrite(sweep, tmp_path):
  out = tmp_path / "out"
  ckpt = out / "checkpoints" / "group0.npz"
  ckpt.parent.mkdir(parents=True)
  ckpt.write_bytes(b"an interrupted sweep's state")
  code, err, ran = sweep(f"--out={out}", "--lrs=0.1", "--checkpoint_every=1")
  assert code == 2 and not ran
  line = _error_line(err)
  assert str(ckpt) in line and "--resume" in line and "--overwrite" in line
  assert ckpt.read_bytes() == b"an interrupted sweep's state"
  code, err, ran = sweep(f"--out={out}", "--lrs=0.1", "--checkpoint_every=1", "--resume")
  assert code == 0 and ran  # --resume may use it (the engine checks its fingerprint).
  ckpt.parent.mkdir(exist_ok=True)
  ckpt.write_bytes(b"an interrupted sweep's state")
  code, err, ran = sweep(f"--out={out}", "--lrs=0.1", "--checkpoint_every=1", "--overwrite")
  assert code == 0 and ran and not ckpt.exists()


def test_ctrl_c_is_one_line_with_the_resume_command_and_exit_130(sweep, monkeypatch, tmp_path):
  out = tmp_path / "out"
  argv = ["lr_sweep.py", f"--out={out}", "--lrs=0.1", "--checkpoint_every=1"]
  monkeypatch.setattr(sys, "argv", argv)

  def interrupted_after_a_checkpoint(groups, grid, target=None, options=None, select=None,
                                     score="best_epoch"):
    os.makedirs(options.checkpoint_dir, exist_ok=True)
    open(os.path.join(options.checkpoint_dir, "group0.npz"), "wb").close()
    raise KeyboardInterrupt

  monkeypatch.setattr(engine, "run_planned", interrupted_after_a_checkpoint)
  code, err, _ = sweep(*argv[1:])
  assert code == 130
  assert err.strip().splitlines() == [
      f"interrupted; the checkpoint in {out}/checkpoints keeps the progress; continue with: "
      f"python -m experiments.lr_sweep --out={out} --lrs=0.1 --checkpoint_every=1 --resume"]
  assert not (out / "results.csv").exists()


def test_resume_command_keeps_the_flags_and_adds_resume_once():
  assert cli.resume_command("experiments.lr_sweep", ["x", "--out=a b", "--noresume", "--seeds=2"]
                            ) == "python -m experiments.lr_sweep '--out=a b' --seeds=2 --resume"


def test_a_real_sigint_prints_one_line_and_exits_130(tmp_path):
  # The child stops at a known point (the fake engine, after it printed "running") and stays
  # there until the SIGINT, which is sent only once that line was read: nothing depends on
  # timing. (It used to wait on its stdin, which `communicate` closes: on a loaded machine the
  # end of input could reach the child before the signal, and the sweep went on without
  # results.) It says so if its SIGINT is not Python's KeyboardInterrupt. The child first
  # takes Python's own SIGINT handler, as at a terminal: a test run started as a background
  # job of a script inherits SIGINT ignored, and Python then leaves it ignored.
  out = tmp_path / "out"
  child = ("import signal, sys, time\n"
           "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
           "from experiments import lr_sweep\n"
           "from lr_jax import cli, engine\n"
           "def blocked(*a, **k):\n"
           "  handler = signal.getsignal(signal.SIGINT)\n"
           "  print('running' if handler is signal.default_int_handler else\n"
           "        f'SIGINT handled by {handler!r}', flush=True)\n"
           "  while True:  # KeyboardInterrupt ends it: at once, or when a sleep returns.\n"
           "    time.sleep(0.05)\n"
           "engine.run_planned = blocked\n"
           "cli.run_app(lr_sweep.main)\n")
  proc = subprocess.Popen(
      [sys.executable, "-c", child, f"--out={out}", "--train_size=100", "--lrs=0.1"], cwd=ROOT,
      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  try:
    line = proc.stdout.readline().strip()
    if line != "running":  # It ended before the kill point: say how.
      proc.kill()
      _, err = proc.communicate()
      pytest.fail(f"the child never reached the kill point (stdout {line!r}): {err[-3000:]}")
    proc.send_signal(signal.SIGINT)
    # A generous limit: a loaded machine may take long to tear down JAX; nothing waits on it.
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 130, err
  assert err.strip().splitlines() == [
      "interrupted; no results written (--checkpoint_every=K would let --resume continue)"]


def test_flag_parse_errors_are_one_line_and_exit_2(capsys):
  for argv, needle in ((["lr_sweep", "--seeds=x"], "--seeds=x"),
                       (["lr_sweep", "--nonsense=1"], "nonsense"),
                       (["lr_sweep", "--dropout_rat=0.1"], "dropout_rat"),  # no such number
                       (["lr_sweep", "stray"], "stray")):
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exc:
      cli.parse_flags(argv)
    assert exc.value.code == 2
    assert needle in _error_line(capsys.readouterr().err)
  flags.FLAGS.unparse_flags()


def test_a_real_process_with_an_unknown_flag_exits_2(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.lr_sweep", "--lrz=0.1"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2  # absl's own parser exits 1.
  assert "lrz" in _error_line(proc.stderr)


# lr_jax's flags in a script of one's own: defined by one call, listed in the script's
# --helpshort, and a clash with the script's own flag refused when it is defined.

@pytest.mark.parametrize("define", ["define_flags", "define_sweep_flags"])
def test_a_scripts_own_flag_of_the_same_name_is_refused_at_definition(define):
  fv = flags.FlagValues()
  flags.DEFINE_integer("seeds", 5, "The script's own seeds: a list of them.", flag_values=fv)
  with pytest.raises(flags.DuplicateFlagError, match=r"--seeds is defined by .*cli_test"):
    getattr(cli, define)(flag_values=fv)
  # Defined afterwards, absl refuses it itself.
  fv = flags.FlagValues()
  cli.define_flags(flag_values=fv)
  with pytest.raises(flags.DuplicateFlagError, match="seeds"):
    flags.DEFINE_integer("seeds", 5, "mine", flag_values=fv)


def test_define_flags_makes_lr_jax_flags_key_flags_of_the_script_once():
  fv = flags.FlagValues()
  names = cli.define_flags(flag_values=fv)
  assert {"dataset", "lrs", "seeds", "select", "checkpoint_every", "overwrite"} <= set(names)
  key = {f.name for f in fv.get_key_flags_for_module(__name__)}
  assert set(names) <= key  # what --helpshort lists for this module
  assert fv.find_module_defining_flag("seeds") == "lr_jax.cli"
  # lr_jax's own scripts share flags: a second definition keeps the first.
  assert cli.define_flags(flag_values=fv) == names
  assert cli.define_flags("output", flag_values=fv) == ["overwrite"]
  with pytest.raises(ValueError, match="'sweeps'.*sweep, run, output"):
    cli.define_flags("sweeps", flag_values=fv)


def test_custom_model_example_helpshort_and_a_tiny_run(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "experiments.custom_model", "--helpshort"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
  listed = set(re.findall(r"^  --(?:\[no\])?(\w+):", proc.stdout, re.M))
  assert {"width", "blocks", "out"} <= listed, proc.stdout  # its own
  assert {"dataset", "lrs", "seeds", "optimizer", "select", "overwrite"} <= listed  # lr_jax's
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.custom_model", f"--out={out}", "--train_size=100",
       "--width=8", "--blocks=1", "--epochs=2", "--lrs=0.01,0.1", "--seeds=2"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "group 0: adam / constant / ResidualMLP" in proc.stdout
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4 and {r["model"] for r in rows} == {"ResidualMLP"}
  assert all(0 < float(r["best_val_balanced_accuracy"]) <= 1 for r in rows)  # its own metric
  assert "score: val_balanced_accuracy cross-fitted" in proc.stdout
  assert {float(r["learning_rate"]) for r in rows} == {0.01, 0.1}


# Flags from the config dataclasses and the registries.

def test_static_flags_take_their_defaults_and_help_from_the_dataclasses():
  import dataclasses
  from lr_jax.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
  fv = flags.FlagValues()
  cli.define_flags(flag_values=fv)
  renamed = {("ModelConfig", "name"): "model", ("OptimConfig", "name"): "optimizer"}
  checked = 0
  for cls in (DataConfig, ModelConfig, OptimConfig, TrainConfig, engine.RunOptions):
    docs = cli.field_docs(cls)
    for field in dataclasses.fields(cls):
      flag = renamed.get((cls.__name__, field.name), field.name)
      if flag not in fv or fv.find_module_defining_flag(flag) != "lr_jax.cli":
        continue  # A dynamic number's default (ModelConfig.dropout): its own flag, below.
      default = field.default
      if isinstance(default, tuple):
        default = [str(x) for x in default]
      assert fv[flag].default == default, flag
      if flag not in cli._FLAG_HELP:  # A few say what the flag means instead.
        assert docs[field.name].split()[-1].rstrip(".") in fv[flag].help, flag
      checked += 1
  assert checked >= 35
  assert fv["monitor"].help.startswith('"val_loss" (lower is better)')  # the docstring's line
  assert "dropout" not in [f.name for f in dataclasses.fields(TrainConfig)]


def test_every_catalog_number_is_a_comma_list_flag_parsed_into_the_grid():
  from lr_jax import hparams
  fv = flags.FlagValues()
  cli.define_flags(flag_values=fv)
  for name, axis in hparams.catalog().items():
    flag = "lrs" if name == "learning_rate" else name
    assert fv[flag].default is None and fv[flag].help and name in fv, name
    assert fv.find_module_defining_flag(flag) == f"lr_jax.hparams.{axis.namespace}"
  fv(["x", "--optimizer=adamw", "--schedule=plateau", "--dropout=0.1,0.2",
      "--weight_decay=0,1e-4", "--plateau_patience=2,3", "--learning_rate=0.1,0.2",
      "--label_smoothing=0.05"])
  grid = cli.grid_from_flags(fv)
  assert grid.learning_rates == (0.1, 0.2)
  assert dict(grid.hparams) == {"weight_decay": (0.0, 1e-4), "plateau_patience": (2.0, 3.0),
                                "label_smoothing": (0.05,), "dropout_rate": (0.1, 0.2)}
  exp = cli.experiment_from_flags(fv)
  assert exp.model.dropout == 0.0 and exp.optim.plateau_patience == 10  # defaults: the grid's
  points = engine.grid._points(exp, grid)  # One compile group: every value is a point.
  assert len(points["learning_rate"]) == 2 * 2 * 2 * 2
  assert sorted(set(points["plateau_patience"])) == [2.0, 3.0]


def test_helpfull_groups_the_sweepable_numbers_by_namespace():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "experiments.lr_sweep", "--helpfull"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, env=env)
  assert "lr_jax.hparams.model:" in proc.stdout, proc.stderr[-2000:]  # (absl exits 1 after help)
  sections = {}
  for block in re.split(r"\n(?=\S[^\n]*:\n)", proc.stdout):
    head, _, body = block.partition(":\n")
    sections[head.strip()] = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", body, re.M))
  assert {"dropout_rate", "dropout"} <= sections["lr_jax.hparams.model"]
  assert {"label_smoothing"} == sections["lr_jax.hparams.loss"]
  assert {"input_noise", "shift", "rotate", "crop", "flip", "label_noise"} == sections[
      "lr_jax.hparams.data"]
  assert {"plateau_factor", "plateau_patience", "plateau_cooldown", "plateau_min_lr",
          "plateau_min_delta", "decay_rate", "alpha"} <= sections["lr_jax.hparams.schedule"]
  assert {"lrs", "weight_decay", "momentum", "clip_norm"} <= sections["lr_jax.hparams.optim"]
  assert {"epochs", "optimizer", "chunk_epochs"} <= sections["lr_jax.cli"]
  assert "dropout_rate" not in sections["lr_jax.cli"]


def test_the_readmes_table_of_sweepable_numbers_is_the_catalogs():
  with open(os.path.join(ROOT, "README.md")) as f:
    text = f.read()
  table = text.split("<!-- sweepable:begin -->\n")[1].split("<!-- sweepable:end -->")[0]
  # A fresh process: this one may hold user families other tests registered (the README's).
  fresh = subprocess.run(
      [sys.executable, "-c", "from lr_jax import cli; print(cli.sweepable_table(), end='')"],
      cwd=ROOT, capture_output=True, text=True, check=True).stdout
  assert table == fresh, (
      "README.md's table of sweepable numbers is stale; paste the output of: python -c "
      "'from lr_jax import cli; print(cli.sweepable_table(), end=\"\")'")
  for name in ("learning_rate", "weight_decay", "dropout_rate", "label_noise"):
    assert f".{name}` |" in table
  # The example sweep over learning rate x dropout x weight decay, with its table.
  assert "--dropout_rate=0,0.2,0.5 --weight_decay=0,0.01,0.1" in text
  assert "lr  weight_decay  dropout_rate       val_accuracy" in text


def test_one_value_of_a_number_is_a_one_point_axis_two_values_share_a_program():
  # --dropout was a static ModelConfig field (a program per value); now one value or several
  # are points of the dropout_rate axis, and 0 (off) is the program without dropout.
  def planned(*args):
    fv = flags.FlagValues()
    cli.define_flags(flag_values=fv)
    fv(["x", "--train_size=100", "--lrs=0.1", "--seeds=1", *args])
    groups = engine.plan_sweep(cli.experiment_from_flags(fv), cli.grid_from_flags(fv))
    assert len(groups) == 1
    return groups[0]

  a, b = planned("--dropout=0.2"), planned("--dropout=0.5")
  assert a.points["dropout_rate"].tolist() == [0.2] and b.points["dropout_rate"].tolist() == [0.5]
  assert engine.programs._compile_key(a) == engine.programs._compile_key(b)
  both = planned("--dropout_rate=0.2,0.5")
  assert both.points["dropout_rate"].tolist() == [0.2, 0.5]
  assert engine.programs._compile_key(both) == engine.programs._compile_key(a)
  assert "dropout_rate" not in planned("--dropout=0").points
