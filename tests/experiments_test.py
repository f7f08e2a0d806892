"""The two study scripts end to end in their smallest modes, and their refusal of bad input.

Each runs in a subprocess: the scripts define absl flags (--dataset, --seeds, --out, ...) that
lr_sweep also defines, so they cannot share one test process. JAX's persistent compilation
cache (the scripts turn it on) makes a second run of these tests fast. The refusals of one
script all run in one subprocess (tests/script_driver.py), each case as its own command line.
"""

import contextlib
import csv
import json
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
              "--schedules=constant,exponential", "--dropout_rate=0", "--weight_decay=0",
              "--label_noise=0", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert re.search(r"cell 2/2 done in .*elapsed .*ETA 0s", proc.stderr), proc.stderr[-2000:]
  assert "total wall time" in proc.stderr
  text = open(os.path.join(out, "report.md")).read()
  for heading in ("## Answer", "## Setup", "## Figures", "## Table", "## Command"):
    assert heading in text
  assert sorted(_figures(out, text)) == ["best_lr_epochs.png", "sensitivity_epochs_adam.png"]
  table = [line for line in text.splitlines()
           if line.startswith("| fixed epochs | - | adam | MLP(8) |")]
  assert len(table) == 4  # 2 sizes x 2 schedules
  assert [[line.split(" | ")[i] for i in (4, 8, 9, 10)] for line in table] == [
      ["constant", "25", "12–13", "4"], ["exponential", "25", "12–13", "4"],  # 2 seeds x 2 folds
      ["constant", "50", "25", "4"], ["exponential", "50", "25", "4"]]
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


# The refusals. Each used to be a process of its own (~3 s of Python, JAX and Flax imports to
# refuse in a millisecond); now every case of one script runs in one process, tests/
# script_driver.py, exactly as `python -m <script> <args>` runs (the `if __name__ == "__main__"`
# block: flag parsing, then main), with its own exit code, stderr (file descriptor 2: logging,
# warnings, JAX's compile log), and count of XLA compilations. The scripts' absl flags collide,
# so one process per script. The library's checks behind them are tested one by one, fast, in
# study_test.py. These prove the wiring: flag -> ConfigError -> one line, exit 2.
STUDY_CASES = [
    (["--optimizers=adam,adamax"], ["adamax", "sgd, momentum"]),
    (["--train_sizes=25,50,200,400,5000"], ["5000", "1437"]),  # the arms' sizes listed
    (["--train_sizes=25,100"], ["_sizes lists 50", "25, 100"]),
    (["--train_sizes=25,lots"], ["lots", "all"]),
    (["--dropout_rate=0.1"], ["dropout_rate", "(0.1,)", "list 0"]),  # The sweep's flag name.
]
EXAMPLE_CASES = [
    (["--configs=A,D"], ["'D'", "A, B, C"]),
    (["--num_lrs=12"], ["12", "odd"]),
]
FINDER_CASES = [  # The range test takes one value of each sweepable number, checked first.
    (["--dropout_rate=0.1,0.2"], ["--dropout_rate", "one value", "0.1,0.2"]),
    (["--optimizer=adamw", "--weight_decay=-1"], ["--weight_decay", "-1", "[0, inf)"]),
]
BAD_INPUT = {"experiments.small_data_study": STUDY_CASES,
             "experiments.seed_examples": EXAMPLE_CASES,
             "experiments.lr_finder": FINDER_CASES}

# The output folder, for every script: checked before anything compiles, one writer, another
# run's results kept unless --overwrite; and a flag error exits 2 with one line.

SCRIPTS = {"experiments.small_data_study": ["--quick"],
           "experiments.seed_examples": ["--quick"],
           "experiments.lr_finder": ["--nocheck_sweep"]}


def _bad_input(args):
  def setup(case, held):
    return [*args, f"--out={case / 'out'}"]
  return setup


def _existing_file(module):
  def setup(case, held):
    out = case / "report.md"
    out.write_text("keep")
    return [*SCRIPTS[module], f"--out={out}"]
  return setup


def _another_runs_results(module):
  def setup(case, held):
    from lr_jax import outputs
    out = case / "out"
    with outputs.OutputFolder(str(out), identity={"kind": "sweep", "config": {}}) as folder:
      with folder.staging() as staging:
        open(os.path.join(staging, "results.csv"), "w").write("a sweep's rows\n")
    return [*SCRIPTS[module], f"--out={out}"]
  return setup


def _in_use_by_this_process(case, held):
  from lr_jax import outputs
  out = case / "out"  # Held by this (the test) process while the script runs.
  held.enter_context(outputs.OutputFolder(str(out), identity={"kind": "seed_examples"}))
  return ["--quick", f"--out={out}"]


def _bad_flag_value(case, held):
  return ["--seeds=three", f"--out={case / 'out'}"]


def _cases(module):
  """The refusal cases of one script: name -> setup(case folder, held) -> its arguments."""
  cases = {("bad input", *args): _bad_input(args) for args, _ in BAD_INPUT[module]}
  cases["existing file"] = _existing_file(module)
  cases["another run's results"] = _another_runs_results(module)
  if module == "experiments.seed_examples":
    cases["in use"] = _in_use_by_this_process
  cases["bad flag value"] = _bad_flag_value
  return cases


def _run_cases(module, base):
  """Runs every refusal case of `module` in one driver process: name -> (outcome, folder)."""
  cases, argvs = {}, []
  with contextlib.ExitStack() as held:
    for i, (name, setup) in enumerate(_cases(module).items()):
      folder = base / f"case{i}"
      folder.mkdir()
      argvs.append(setup(folder, held))
      cases[name] = folder
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "script_driver.py"),
                           module], input=json.dumps(argvs), cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=60 * (len(argvs) + 1))
  assert proc.returncode == 0, proc.stderr[-3000:]
  outcomes = json.loads(proc.stdout)
  return {name: (outcome, folder) for (name, folder), outcome in zip(cases.items(), outcomes)}


@pytest.fixture(scope="module")
def refusal(tmp_path_factory):
  """refusal(module, case) -> (the script's outcome, the case's folder): the first call for a
  script runs all its cases, in one process (per pytest-xdist worker)."""
  runs = {}

  def outcome(module, name):
    if module not in runs:
      runs[module] = _run_cases(module, tmp_path_factory.mktemp(module.split(".")[-1]))
    return runs[module][name]

  return outcome


def _refused(outcome):
  """The one `error:` line of a script that exited 2 before compiling anything."""
  err = outcome["stderr"]
  assert outcome["code"] == 2, err[-2000:]
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
  # JAX_LOG_COMPILES logs every compilation to stderr: one line proves nothing compiled; the
  # driver counts the compilations too.
  assert outcome["compiles"] == 0, err[-2000:]
  return lines[0]


@pytest.mark.parametrize(
    "module,args,needles",
    [(m, a, n) for m, cases in BAD_INPUT.items() for a, n in cases],
    ids=[" ".join(a) for cases in BAD_INPUT.values() for a, _ in cases])
def test_bad_input_is_one_line_exit_2_and_nothing_compiled(refusal, module, args, needles):
  outcome, case = refusal(module, ("bad input", *args))
  line = _refused(outcome)
  for needle in needles:
    assert needle in line, (needle, line)
  assert not (case / "out").exists()


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_an_existing_file_as_out_is_refused_before_anything_compiles(refusal, module):
  outcome, case = refusal(module, "existing file")
  out = case / "report.md"
  assert f"--out {out} is an existing file" in _refused(outcome)
  assert out.read_text() == "keep"


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_another_runs_results_are_kept_without_overwrite(refusal, module):
  outcome, case = refusal(module, "another run's results")
  line = _refused(outcome)
  assert "holds the results of a different run (a sweep" in line and "--overwrite" in line
  assert (case / "out" / "results.csv").read_text() == "a sweep's rows\n"


def test_a_second_run_on_the_same_out_is_refused(refusal):
  outcome, case = refusal("experiments.seed_examples", "in use")
  out = case / "out"
  assert f"--out {out} is in use by another run (process {os.getpid()})" in _refused(outcome)


@pytest.mark.parametrize("module", sorted(SCRIPTS))
def test_a_bad_flag_value_exits_2_with_one_line(refusal, module):
  outcome, case = refusal(module, "bad flag value")
  assert "three" in _refused(outcome)  # absl alone exits 1 with two lines.
  assert not (case / "out").exists()
