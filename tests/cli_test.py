"""Bad input to the main script: one line naming the value and the choices, exit 2, nothing run."""

import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from experiments import lr_sweep
from lr_jax import engine

from data_test import _npz, _pets, _write  # tests/ is on sys.path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_script(monkeypatch, capsys, tmp_path):
  """Runs lr_sweep's main in-process with the given flags; returns (exit code, stderr)."""

  def must_not_run(*args, **kwargs):
    raise AssertionError("bad input reached the engine")

  monkeypatch.setattr(engine, "run_planned", must_not_run)
  out = tmp_path / "out"

  def run(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", f"--out={out}", *args])
    with pytest.raises(SystemExit) as exc:
      lr_sweep.main(["lr_sweep"])
    err = capsys.readouterr().err
    assert not out.exists(), "a refused run left files in --out"
    return exc.value.code, err

  yield run
  flags.FLAGS.unparse_flags()


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
