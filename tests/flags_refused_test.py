"""Input that used to be ignored, or refused only after compiling, or with a traceback: each is
one `error:` line naming the flag (or value) and why, exit 2, before anything compiles.

lr_sweep runs in-process, as cli_test's `run_script` (the engine replaced by one that fails the
test if reached). lr_finder and custom_model define flags of lr_sweep's names (`--out`), so each
runs in a process of its own, all its cases in-process there, the same way.
"""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

import lr_jax
from lr_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err
  return lines[0]


# `run_script` (tests/conftest.py) runs lr_sweep's main in process, nothing compiled.


# 1. A flag given on the command line for something the configuration does not have.
NOT_APPLYING = [
    (["--decay_steps=500"], ["--decay_steps", "--schedule=constant", "exponential"]),
    (["--decay_steps=1000"], ["--decay_steps", "--schedule=constant"]),  # given, at its default
    (["--staircase"], ["--staircase", "--schedule=constant", "exponential"]),
    (["--boundaries=10", "--scales=0.1"], ["--boundaries", "--schedule=constant", "piecewise"]),
    (["--schedule=cosine", "--scales=0.1"], ["--scales", "--schedule=cosine", "piecewise"]),
    (["--schedule=exponential", "--boundaries=10"], ["--boundaries", "exponential"]),
    (["--prune_eta=2"], ["--prune_eta", "--prune=halving"]),
    (["--prune_rungs=5,15"], ["--prune_rungs", "--prune=halving"]),
    (["--prune=halving", "--prune_rungs=50,60", "--epochs=40"],
     ["--prune_rungs", "50", "--epochs=40", "1..39"]),
    (["--prune=halving", "--epochs=3"], ["--prune=halving", "--epochs=3", "5,15,45"]),
    (["--model=linear", "--hidden=64"], ["--hidden", "--model=linear", "mlp, cnn"]),
    (["--model=linear", "--activation=tanh"], ["--activation", "--model=linear"]),
    (["--lrs=0.1,0.2", "--lr_min=1e-4"], ["--lr_min", "--lrs"]),
    (["--lrs=0.1", "--lr_max=1"], ["--lr_max", "--lrs"]),
    (["--learning_rate=0.1", "--num_lrs=4"], ["--num_lrs", "--lrs"]),
    (["--num_samples=500"], ["--num_samples", "--dataset=digits", "moons"]),
    (["--dataset=iris", "--noise=0.3"], ["--noise", "--dataset=iris", "moons"]),
    (["--folds=3", "--val_fraction=0.2"], ["--val_fraction", "--folds=3", "every non-test row"]),
    (["--coordinator_address=127.0.0.1:1"], ["--coordinator_address", "--distributed"]),
    (["--process_id=0"], ["--process_id", "--distributed"]),
]
# 2. Integers past int32, which JAX holds them in: refused with the valid range.
PAST_INT32 = [
    (["--epochs=99999999999"], ["epochs", "99999999999", "1..2147483647"]),
    (["--patience=99999999999"], ["patience", "99999999999", "0..2147483647"]),
    (["--max_steps=99999999999"], ["max_steps", "99999999999", "0..2147483647"]),
    (["--schedule=exponential", "--decay_steps=99999999999"], ["decay_steps", "2147483647"]),
    (["--schedule=piecewise", "--boundaries=99999999999", "--scales=0.1"],
     ["boundary", "2147483647"]),
    # Past memory: refused from the counts, before a billion learning rates or seeds are listed.
    (["--num_lrs=1000000000"], ["--num_lrs=1000000000", "--seeds=3", "variants", "memory"]),
    (["--seeds=1000000000"], ["--seeds=1000000000", "variants", "memory"]),
]
# 4. An empty folder is the working directory; 5. a repeated learning rate, named by its flag.
EMPTY_AND_REPEATED = [
    (["--out="], ["--out is empty", "working directory"]),
    (["--out= "], ["--out is empty"]),
    (["--checkpoint_dir=", "--checkpoint_every=1"], ["--checkpoint_dir is empty"]),
    (["--save_model="], ["--save_model is empty"]),
    (["--lrs=0.01,0.1,0.01"], ["--lrs", "0.01 twice", "distinct"]),
]
CASES = NOT_APPLYING + PAST_INT32 + EMPTY_AND_REPEATED


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_lr_sweep_refuses_with_one_line_before_compiling(run_script, args, needles):
  code, err = run_script(*args)
  line = _one_line(err)
  assert code == 2, err
  for needle in needles:
    assert needle in line, (needle, line)


def test_flags_that_apply_are_still_taken():
  # The refusals above are about the configuration, not the flags: where they apply, they run.
  for args in (["--schedule=exponential", "--decay_steps=500", "--staircase"],
               ["--schedule=piecewise", "--boundaries=10", "--scales=0.1"],
               ["--dataset=moons", "--noise=0.3", "--num_samples=300"],
               ["--model=cnn", "--hidden=4", "--activation=tanh"],
               ["--folds=3"], ["--lr_min=1e-3", "--num_lrs=3"],
               ["--epochs=2147483647", "--patience=2147483647"]):
    fv = flags.FlagValues()
    cli.define_flags(flag_values=fv)
    fv(["x", *args])
    cli.experiment_from_flags(fv)
    cli.grid_from_flags(fv)
  fv = flags.FlagValues()
  cli.define_flags(flag_values=fv)
  fv(["x", "--prune=halving", "--prune_rungs=2,4", "--prune_eta=2", "--epochs=5"])
  assert cli.options_from_flags(fv, "out").prune_rungs == (2, 4)
  with pytest.raises(lr_jax.ConfigError, match="--prune_rungs: rung 5 is not below --epochs=5"):
    fv(["x", "--prune=halving", "--prune_rungs=2,5", "--epochs=5"])
    cli.options_from_flags(fv, "out")


@pytest.mark.parametrize("make,needles", [
    (lambda: lr_jax.Grid(seeds=(0, 2**40)), ["seed", str(2**40), "0..2147483647"]),
    (lambda: lr_jax.TrainConfig(epochs=2**40), ["epochs", "1..2147483647"]),
    (lambda: lr_jax.TrainConfig(patience=2**31), ["patience", "0..2147483647"]),
    (lambda: lr_jax.TrainConfig(max_steps=2**31), ["max_steps", "0..2147483647"]),
    (lambda: lr_jax.TrainConfig(monitor="val_acc"), ["'val_acc'", "val_loss", "val_accuracy",
                                                      "val_<name>"]),
    (lambda: lr_jax.TrainConfig(monitor="val_los"), ["'val_los'", "val_loss"]),
], ids=["seeds", "epochs", "patience", "max_steps", "monitor val_acc", "monitor val_los"])
def test_the_python_api_refuses_at_construction(make, needles):
  # 2. past int32; 7. a monitor that abbreviates a built-in one (Keras' old "val_acc").
  with pytest.raises(lr_jax.ConfigError) as e:
    make()
  line = str(e.value)
  assert "\n" not in line
  for needle in needles:
    assert needle in line, (needle, line)
  # The largest that fits is taken, and so is a user metric's monitor (checked when planned).
  lr_jax.Grid(seeds=(2**31 - 1,))
  lr_jax.TrainConfig(epochs=2**31 - 1, monitor="val_balanced_accuracy")


# 3. A malformed boolean flag, a malformed environment variable: one line, not a traceback.

def test_a_value_given_to_a_no_flag_is_one_line(capsys):
  flags.FLAGS.unparse_flags()
  try:
    with pytest.raises(SystemExit) as exc:
      cli.parse_flags(["lr_sweep", "--norestore_best=maybe"])
  finally:
    flags.FLAGS.unparse_flags()
  line = _one_line(capsys.readouterr().err)
  assert exc.value.code == 2
  assert "--norestore_best=maybe" in line and "--restore_best=true/false" in line, line


@pytest.mark.parametrize("variable,needles", [
    ("JAX_NUM_PROCESSES", ["JAX_NUM_PROCESSES='abc'", "not an integer", "--num_processes"]),
    ("JAX_PROCESS_ID", ["JAX_PROCESS_ID='abc'", "not an integer", "--process_id"]),
])
def test_a_bad_process_variable_with_distributed_is_one_line(run_script, monkeypatch, variable,
                                                             needles):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "0")
  monkeypatch.setenv(variable, "abc")
  code, err = run_script("--distributed", "--coordinator_address=127.0.0.1:1")
  line = _one_line(err)
  assert code == 2
  for needle in needles:
    assert needle in line, (needle, line)


# 6. A live sweep's checkpoint folder: a second sweep is refused, --overwrite or not.

_LIVE_SWEEP = """
import sys
from experiments import lr_sweep
from lr_jax import cli, engine

def live(groups, grid, target=None, options=None, select=None, score="best_epoch"):
  import os
  os.makedirs(options.checkpoint_dir, exist_ok=True)
  with open(os.path.join(options.checkpoint_dir, "group0.npz"), "wb") as f:
    f.write(b"a live sweep's state")
  print("running", flush=True)
  sys.stdin.read()  # Until the test is done with it (it kills this process).

engine.run_planned = live
cli.run_app(lr_sweep.main)
"""


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no overwrite"])
def test_a_live_sweeps_checkpoint_folder_is_refused(run_script, tmp_path, overwrite):
  ckpt = tmp_path / "ckpt"
  live = subprocess.Popen(
      [sys.executable, "-c", _LIVE_SWEEP, f"--out={tmp_path / 'live_out'}", "--train_size=100",
       "--lrs=0.1", "--checkpoint_every=1", f"--checkpoint_dir={ckpt}"],
      cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    ready = live.stdout.readline().strip()
    if ready != "running":
      live.kill()
      pytest.fail(f"the live sweep never started: {live.communicate()[1][-3000:]}")
    code, err = run_script(f"--checkpoint_dir={ckpt}", "--checkpoint_every=1", "--lrs=0.2",
                           *(["--overwrite"] if overwrite else []))
  finally:
    live.kill()
    live.communicate()
  line = _one_line(err)
  assert code == 2
  assert f"--checkpoint_dir {ckpt} is in use by another run (process {live.pid})" in line, line
  assert (ckpt / "group0.npz").read_bytes() == b"a live sweep's state"


# lr_finder and custom_model: each in a process of its own, its cases in-process there.

_DRIVER = """
import contextlib, importlib, io, json, os, shutil, sys
from absl import flags
module, out, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
script = importlib.import_module(module)
from lr_jax import engine, finder

def must_not_run(*args, **kwargs):
  raise AssertionError("bad input reached the engine")

engine.run_planned = engine.api.run_planned = finder.lr_finder = must_not_run
results = []
for args in cases:
  flags.FLAGS.unparse_flags()
  err = io.StringIO()
  before = set(os.listdir("."))
  with contextlib.redirect_stderr(err):
    try:
      flags.FLAGS([module, *args])
      script.main([module])
      code = "returned"
    except SystemExit as e:
      code = e.code
    except BaseException as e:  # Reached the engine, or a traceback: either fails the test.
      code = f"{type(e).__name__}: {e}"
  left = sorted(set(os.listdir(".")) - before)  # In the working directory, and in --out:
  if os.path.exists(out):
    left.append(out)
    shutil.rmtree(out)
  for name in set(os.listdir(".")) - before:
    (shutil.rmtree if os.path.isdir(name) else os.unlink)(name)
  results.append([code, err.getvalue(), left])
print(json.dumps(results))
"""

FINDER_CASES = [
    (["--lrs=0.01,0.01"], ["--lrs", "0.01 twice", "distinct"]),  # 5.
    (["--finder_steps=99999999999"], ["--finder_steps", "99999999999", "1..2147483647"]),  # 2.
    (["--out="], ["--out is empty"]),  # 4.
    (["--target=0.9"], ["--target", "does not apply"]),  # 1: never read by this script.
    (["--select=one_se"], ["--select", "does not apply"]),
    (["--nocheck_sweep", "--epochs=5"], ["--epochs", "--nocheck_sweep"]),
    (["--nocheck_sweep", "--lrs=0.1"], ["--lrs", "--nocheck_sweep"]),
    (["--lrs=0.01,0.1", "--check_num_lrs=5"], ["--check_num_lrs", "--lrs"]),
    (["--model=linear", "--hidden=8"], ["--hidden", "--model=linear"]),
]
CUSTOM_CASES = [
    (["--out=/proc/lr_jax/nope"], ["--out /proc/lr_jax/nope is not writable"]),  # 7.
    (["--out="], ["--out is empty"]),  # 4.
    (["--hidden=128"], ["--hidden", "user model 'ResidualMLP'"]),  # 1: given at its default.
    (["--activation=relu"], ["--activation", "user model 'ResidualMLP'"]),
    (["--epochs=99999999999"], ["epochs", "1..2147483647"]),  # 2.
]
SCRIPT_CASES = {"experiments.lr_finder": FINDER_CASES, "experiments.custom_model": CUSTOM_CASES}


@pytest.fixture(scope="module")
def script_results(tmp_path_factory):
  """Each script's (exit code, stderr, files left) per case: one process per script, both
  started at once."""
  base = tmp_path_factory.mktemp("scripts")
  procs = {}
  for module, cases in SCRIPT_CASES.items():
    cwd, out = base / module, base / f"{module}-out"
    cwd.mkdir()
    argv = [[*args, *([] if any(a.startswith("--out=") for a in args) else [f"--out={out}"]),
             "--train_size=100"] for args, _ in cases]
    procs[module] = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, module, str(out), json.dumps(argv)], cwd=cwd,
        env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
  results = {}
  for module, proc in procs.items():
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    results[module] = json.loads(out.strip().splitlines()[-1])
  return results


@pytest.mark.parametrize(
    "module,index", [(m, i) for m, cases in SCRIPT_CASES.items() for i in range(len(cases))],
    ids=[f"{m.split('.')[1]} {' '.join(c[0])}" for m, cases in SCRIPT_CASES.items()
         for c in cases])
def test_other_scripts_refuse_with_one_line_before_compiling(script_results, module, index):
  code, err, left = script_results[module][index]
  assert code == 2, (code, err)
  line = _one_line(err)
  assert not left, f"a refused run left {left} (in --out or the working directory)"
  for needle in SCRIPT_CASES[module][index][1]:
    assert needle in line, (needle, line)


def test_check_out_is_the_early_out_check_every_script_gets(tmp_path):
  # 7. What custom_model calls first: refuses as OutputFolder would, and leaves nothing.
  from lr_jax import outputs
  for path, needle in (("", "--out is empty"), (str(tmp_path / "f"), "is an existing file"),
                       ("/proc/lr_jax/nope", "is not writable")):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(lr_jax.ConfigError, match=needle):
      cli.check_out(path)
  held = tmp_path / "held"
  with outputs.OutputFolder(str(held), identity={"kind": "sweep"}):
    with pytest.raises(lr_jax.ConfigError, match=f"--out {held} is in use by another run"):
      cli.check_out(str(held))
  assert cli.check_out(str(tmp_path / "new" / "out")) == str(tmp_path / "new" / "out")
  assert not (tmp_path / "new").exists()
