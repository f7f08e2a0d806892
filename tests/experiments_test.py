"""The two study scripts end to end in their smallest modes, and their refusal of bad input.

Each runs in a subprocess: the scripts define absl flags (--dataset, --seeds, --out, ...) that
lr_sweep also defines, so they cannot share one test process. JAX's persistent compilation
cache (the scripts turn it on) makes a second run of these tests fast.
"""

import csv
import os
import re
import subprocess
import sys

import pytest

from lr_jax import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args, env=None, timeout=180):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env=env)


def _figures(out, text):
  """The PNGs report.md embeds; each must exist and be a real PNG."""
  paths = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
  assert paths, text
  for p in paths:
    assert not os.path.isabs(p), p  # relative, so the folder can move
    assert report.is_png(os.path.join(out, p)), p
  return paths


def _csv_rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_small_data_study_smallest_mode_end_to_end(tmp_path):
  out = str(tmp_path / "study")
  proc = _run("experiments.small_data_study", "--quick", "--train_sizes=25,50",
              "--optimizers=adam", "--widths=8", "--epochs=2", "--seeds=2", "--budgets=epochs",
              "--schedules=constant,exponential", "--dropout_rates=0", "--weight_decays=0",
              "--noise_levels=0", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r"cell 2/2 done in .*elapsed .*ETA 0s", proc.stderr), proc.stderr[-2000:]
  assert "total wall time" in proc.stderr
  text = open(os.path.join(out, "report.md")).read()
  for heading in ("## Answer", "## Setup", "## Figures", "## Table", "## Command"):
    assert heading in text
  assert sorted(_figures(out, text)) == ["best_lr_epochs.png", "sensitivity_epochs_adam.png"]
  table = [line for line in text.splitlines()
           if line.startswith("| fixed epochs | adam | MLP(8) |")]
  assert len(table) == 4  # 2 sizes x 2 schedules
  assert [[line.split(" | ")[i] for i in (3, 6, 7)] for line in table] == [
      ["constant", "25", "4"], ["exponential", "25", "4"],   # 2 seeds x 2 folds
      ["constant", "50", "4"], ["exponential", "50", "4"]]
  answer = text.split("## Answer")[1].split("##")[0]
  assert "or smaller was necessary" in answer and "of 4 cells under fixed epochs" in answer
  assert "Fixed epochs: at n=25 the best learning rate is larger than at n=50" in answer
  rows = _csv_rows(os.path.join(out, "results.csv"))
  assert len(rows) == 2 * 6 * 2 * 4  # groups x LRs x decay rates x streams
  # Constant is rate 1; exponential falls to 0.1x at a run's last step: 2 full-batch steps.
  rates = sorted({float(r["decay_rate"]) for r in rows})
  assert rates == pytest.approx([0.1 ** (1 / 2), 1.0], rel=1e-6)


def test_seed_examples_smallest_mode_end_to_end(tmp_path):
  out = str(tmp_path / "examples")
  proc = _run("experiments.seed_examples", "--quick", "--configs=B,C", "--seeds=2",
              "--max_epochs=2", "--train_size=100", "--num_lrs=3", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r"cell 2/2 done in .*ETA 0s", proc.stderr)
  text = open(os.path.join(out, "report.md")).read()
  assert sorted(_figures(out, text)) == ["loss_curves.png", "sensitivity.png"]
  assert "## Configuration B" in text and "## Configuration C" in text
  assert "## Configuration A" not in text
  answer = text.split("## Answer")[1].split("##")[0]
  assert "Configuration B (rmsprop, MLP(64), constant): the article's lr=1e-3" in answer
  assert "Configuration C (adam, MLP(128), exponential): the article's lr=1e-3" in answer
  assert "ExponentialDecay with decay_steps=1000 over 8 steps ends at 0.999x" in text
  assert text.count("| 1e-3 (article") == 2  # the article's row in each table
  # Committed as one unit from a staging folder: nothing of it left, the manifest in place.
  assert sorted(os.listdir(out)) == [".lr_jax-run.json", ".lr_jax.lock", "B", "C",
                                     "loss_curves.png", "report.md", "sensitivity.png"]
  assert sorted(os.listdir(os.path.join(out, "B"))) == [
      ".lr_jax-run.json", "history.npz", "results.csv", "summary.json"]
  for name, lrs in (("B", {"1e-05", "0.001", "0.1"}), ("C", {"1e-05", "0.001", "0.1"})):
    rows = _csv_rows(os.path.join(out, name, "results.csv"))
    assert len(rows) == 3 * 2  # 3 learning rates x 2 seeds
    assert {r["learning_rate"] for r in rows} == lrs
    assert {r["train_size"] for r in rows} == {"100"}


# Each case is a process (~3 s); the library's checks behind them are tested one by one, fast,
# in study_test.py. These prove the wiring: flag -> ConfigError -> one line, exit 2.
STUDY_CASES = [
    (["--optimizers=adam,adamax"], ["adamax", "sgd, momentum"]),
    (["--train_sizes=25,5000"], ["5000", "1437"]),
    (["--train_sizes=25,lots"], ["lots", "all"]),
]
EXAMPLE_CASES = [
    (["--configs=A,D"], ["'D'", "A, B, C"]),
    (["--num_lrs=12"], ["12", "odd"]),
]
FINDER_CASES = [  # The range test takes one value of each sweepable number, checked first.
    (["--dropout_rate=0.1,0.2"], ["--dropout_rate", "one value", "0.1,0.2"]),
    (["--optimizer=adamw", "--weight_decay=-1"], ["--weight_decay", "-1", "[0, inf)"]),
]


@pytest.mark.parametrize(
    "module,args,needles",
    [("experiments.small_data_study", a, n) for a, n in STUDY_CASES]
    + [("experiments.seed_examples", a, n) for a, n in EXAMPLE_CASES]
    + [("experiments.lr_finder", a, n) for a, n in FINDER_CASES],
    ids=[" ".join(a) for a, _ in STUDY_CASES + EXAMPLE_CASES + FINDER_CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_compiled(tmp_path, module, args, needles):
  out = tmp_path / "out"
  # JAX_LOG_COMPILES logs every compilation to stderr: one line proves nothing compiled.
  proc = _run(module, *args, f"--out={out}", env={"JAX_LOG_COMPILES": "1"}, timeout=60)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
  assert not out.exists()


# The output folder, for every script: checked before anything compiles, one writer, another
# run's results kept unless --overwrite; and a flag error exits 2 with one line.

SCRIPTS = {"experiments.small_data_study": ["--quick"],
           "experiments.seed_examples": ["--quick"],
           "experiments.lr_finder": ["--nocheck_sweep"]}


def _refused(proc):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_an_existing_file_as_out_is_refused_before_anything_compiles(tmp_path, module):
  out = tmp_path / "report.md"
  out.write_text("keep")
  proc = _run(module, *SCRIPTS[module], f"--out={out}", env={"JAX_LOG_COMPILES": "1"},
              timeout=60)
  assert f"--out {out} is an existing file" in _refused(proc)
  assert out.read_text() == "keep"


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_another_runs_results_are_kept_without_overwrite(tmp_path, module):
  from lr_jax import outputs
  out = tmp_path / "out"
  with outputs.OutputFolder(str(out), identity={"kind": "sweep", "config": {}}) as folder:
    with folder.staging() as staging:
      open(os.path.join(staging, "results.csv"), "w").write("a sweep's rows\n")
  proc = _run(module, *SCRIPTS[module], f"--out={out}", env={"JAX_LOG_COMPILES": "1"},
              timeout=60)
  line = _refused(proc)
  assert "holds the results of a different run (a sweep" in line and "--overwrite" in line
  assert (out / "results.csv").read_text() == "a sweep's rows\n"


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
  from lr_jax import outputs
  out = tmp_path / "out"
  with outputs.OutputFolder(str(out), identity={"kind": "seed_examples"}):
    proc = _run("experiments.seed_examples", "--quick", f"--out={out}",
                env={"JAX_LOG_COMPILES": "1"}, timeout=60)
  assert f"--out {out} is in use by another run (process {os.getpid()})" in _refused(proc)


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_a_bad_flag_value_exits_2_with_one_line(tmp_path, module):
  proc = _run(module, "--seeds=three", f"--out={tmp_path / 'out'}", timeout=60)
  assert "three" in _refused(proc)  # absl alone exits 1 with two lines.
  assert not (tmp_path / "out").exists()
