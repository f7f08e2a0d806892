"""Scaling out and surviving faults: several devices, several processes, SIGKILL and resume.

Every test here runs one sweep, `SPREAD`, and compares with it run once, uninterrupted, in
this process (`reference`: one CPU device, as a script's single-process run). What runs in
subprocesses is only what must: four devices, two processes, and runs killed with SIGKILL and
resumed. Each pays seconds of imports and compiles its programs, or loads them from JAX's
persistent compilation cache (`_env`; process 0 of a distributed run only, and the killed runs
from the reference's where this process has one), so the tests start as few as their claims
allow, and compute the reference while their subprocesses run.
"""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import types

import jax
import numpy as np
import pytest

import lr_jax
from lr_jax.results import write_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 8 learning rates x 2 seeds that stop at very different epochs (the two largest diverge at
# once, the next two stop early), in chunks of 2 seeds x 4 learning rates run in lockstep: the
# chunk of the large rates is compacted from the 2nd call of 2 epochs on (on one device at
# widths 4 then 2, on four at 4), the other runs whole to the end. 4 calls, so a checkpoint
# after each of the first three. Compacted wherever the survivors fit (`compile_cost_gflop=0`):
# too small a sweep to pay for a compacted program by default.
SPREAD_EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(16,)),
    train=lr_jax.TrainConfig(epochs=8, patience=1))
SPREAD_GRID = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 3.0, 8), seeds=(0, 1))
SPREAD_OPTIONS = lr_jax.RunOptions(chunk_epochs=2, max_variants_per_chunk=8,
                                   compile_cost_gflop=0)
VARIANTS = len(SPREAD_GRID.learning_rates) * len(SPREAD_GRID.seeds)
EPOCHS = SPREAD_EXP.train.epochs


def _flags(options=SPREAD_OPTIONS):
  """`SPREAD` as `experiments.lr_sweep` flags (no report: nothing here reads it)."""
  return [f"--train_size={SPREAD_EXP.data.train_size}",
          f"--hidden={','.join(map(str, SPREAD_EXP.model.hidden))}",
          f"--lrs={','.join(map(repr, SPREAD_GRID.learning_rates))}",
          f"--seeds={len(SPREAD_GRID.seeds)}", f"--epochs={EPOCHS}",
          f"--patience={SPREAD_EXP.train.patience}", f"--chunk_epochs={options.chunk_epochs}",
          f"--max_variants_per_chunk={options.max_variants_per_chunk}",
          f"--compile_cost_gflop={options.compile_cost_gflop}", "--noreport"]


assert SPREAD_GRID.seeds == tuple(range(len(SPREAD_GRID.seeds)))  # What --seeds=N means.


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache"))
  # Every program, as the scripts do (`cli.enable_compilation_cache`); JAX's default caches
  # only those that took a second, and the four-device run's compile in well under one each.
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  return env


def _script(out, *flags, env=None, options=SPREAD_OPTIONS):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.lr_sweep", f"--out={out}", *_flags(options), *flags],
      cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs, timeout=300):
  """Waits for every process; returns (returncode, stderr) of each."""
  outs = []
  for p in procs:
    _, err = p.communicate(timeout=timeout)
    outs.append((p.returncode, err))
  return outs


def _why(err: str) -> str:
  """What a failed child said: its first lines (where an abort says why) and its last."""
  return err if len(err) <= 5000 else f"{err[:3000]}\n[...]\n{err[-2000:]}"


def _same_outputs(a, b):
  # For a run and its kill and resume, of one configuration: the same programs, so bitwise.
  with open(os.path.join(a, "results.csv")) as fa, open(os.path.join(b, "results.csv")) as fb:
    assert fa.read() == fb.read()
  ha, hb = np.load(os.path.join(a, "history.npz")), np.load(os.path.join(b, "history.npz"))
  assert sorted(ha.files) == sorted(hb.files)
  for k in ha.files:
    np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """`SPREAD` run uninterrupted in this process, and the files the script writes for it.

  The test process has one CPU device, as the scripts' single-process runs, and the same XLA
  flags: its programs are those of a script run under `_flags()` (with checkpoints or not),
  so their files are the same bits. Where this process has a persistent compilation
  cache (`make test` sets one), every program goes into it, as the scripts' do, so the killed
  runs started after it load them instead of compiling them again. The tests that start
  other programs (more devices or processes) ask for it once theirs run.
  """
  cutoff = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    result = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID, options=SPREAD_OPTIONS)
  finally:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", cutoff)
  folder = tmp_path_factory.mktemp("reference")
  write_files(result, str(folder))
  return types.SimpleNamespace(result=result, dir=folder,
                               executed=result.timings[0]["variant_epochs_executed"])


def test_four_devices_give_the_results_of_one_also_when_compacted(tmp_path, request):
  code = textwrap.dedent("""
      import sys, numpy as np, lr_jax, jax
      sys.path.insert(0, %r)
      from scale_test import SPREAD_EXP, SPREAD_GRID, SPREAD_OPTIONS
      assert jax.device_count() == 4
      r = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID, options=SPREAD_OPTIONS)
      np.savez(sys.argv[1], **r.history, best_epoch=r.rows["best_epoch"],
               epochs_run=r.rows["epochs_run"],
               executed=r.timings[0]["variant_epochs_executed"])
      # The program built ahead, sharded, is the one the call runs: built once (a new one).
      import threading
      built = []
      jax.monitoring.register_event_time_span_listener(
          lambda event, start, end, fun_name="", **_: built.append(
              threading.current_thread().name)
          if event.endswith("backend_compile_duration") and fun_name == "jit(run)" else None)
      lr_jax.run_sweep(SPREAD_EXP.replace(model__hidden=(5,)), SPREAD_GRID,
                       options=lr_jax.engine.RunOptions(compact=False))
      assert built == ["lr_jax-build-ahead"], built
  """ % os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "devices.npz"  # Not in the checkout: parallel sessions must not share it.
  proc = subprocess.Popen([sys.executable, "-c", code, out], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env=_env(XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                                   + " --xla_force_host_platform_device_count=4"))
  try:
    one = request.getfixturevalue("reference").result  # Meanwhile.
  finally:
    (rc, err), = _finish([proc])
  assert rc == 0, _why(err)
  four = np.load(out)
  # Sharded and compacted: chunks of 2 streams x 4 points (one per device), then the survivors
  # of the large rates' chunk at a width of 4.
  assert one.rows["epochs_run"].min() < EPOCHS and four["executed"] < VARIANTS * EPOCHS
  for k in one.history:
    np.testing.assert_allclose(four[k], one.history[k], rtol=1e-5, atol=1e-6, err_msg=k)
  # Sharded programs are other programs; their integer outcomes are exact here because no val
  # loss comes within 0.3% of the best before it and divergence is far from its threshold.
  np.testing.assert_array_equal(four["best_epoch"], one.rows["best_epoch"])
  np.testing.assert_array_equal(four["epochs_run"], one.rows["epochs_run"])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_results_of_one_also_when_compacted(tmp_path, request):
  port = _free_port()
  outs = [tmp_path / f"p{i}" for i in range(2)]
  # Chunks of 2 x 4 lanes, 2 per process; the large rates' chunk continues compacted, at a width
  # of 2 (1 per process). Other programs than the reference's whatever their call length: calls
  # of 4 epochs, 2 in all, compile one width fewer and sync the processes half as often.
  options = dataclasses.replace(SPREAD_OPTIONS, chunk_epochs=4)
  procs = [_script(outs[i], "--distributed", f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}", options=options) for i in range(2)]
  try:
    ref = request.getfixturevalue("reference")  # Meanwhile.
  finally:
    done = _finish(procs, timeout=400)
  for code, err in done:
    assert code == 0, _why(err)
  assert not outs[1].exists()  # only process 0 writes
  with open(outs[0] / "summary.json") as f:
    assert json.load(f)["timings"][0]["variant_epochs_executed"] < VARIANTS * EPOCHS  # compacted
  # Two processes run other programs: numbers to float32 rounding; the integer columns (epochs,
  # flags) are then exact, robust here (no val loss within 0.3% of the best before it).
  _same_csv_to_rounding(outs[0] / "results.csv", ref.dir / "results.csv", VARIANTS)


def _same_csv_to_rounding(path_a, path_b, num_rows: int, *, stable_below: float = 0.1):
  """Two results.csv files: the same header and `num_rows` rows, every non-numeric field
  exactly; numbers to float32 rounding of other programs, compounded over up to 12 epochs:
  1e-5 relative at the stable learning rates (below `stable_below`: DESIGN.md's invariant),
  2e-5 above, where this grid's runs stop early or diverge (1.07e-5 measured, a last-epoch
  training loss at 0.158)."""
  with open(path_a) as a, open(path_b) as b:
    rows_a, rows_b = a.read().splitlines(), b.read().splitlines()
  assert len(rows_a) == len(rows_b) == 1 + num_rows and rows_a[0] == rows_b[0]
  lr_column = rows_a[0].split(",").index("learning_rate")
  for ra, rb in zip(rows_a[1:], rows_b[1:]):
    rel = 1e-5 if float(ra.split(",")[lr_column]) < stable_below else 2e-5
    for x, y in zip(ra.split(","), rb.split(",")):
      try:
        assert float(x) == pytest.approx(float(y), rel=rel, abs=1e-7)
      except ValueError:
        assert x == y


STUDY_FLAGS = ["--quick", "--train_sizes=25,50", "--optimizers=adam", "--widths=8",
               "--budgets=epochs", "--epochs=3", "--seeds=2", "--label_noise=0",
               "--dropout_rate=0", "--weight_decay=0", "--test_up_to=0"]


def test_the_study_on_two_processes_gives_the_results_of_one(tmp_path):
  # The study's groups sharded over two processes' devices: process 0 alone writes, and its
  # results equal one process's to float32 rounding (other programs: a narrower shard).
  port = _free_port()
  study = lambda out, *extra: subprocess.Popen(
      [sys.executable, "-m", "experiments.small_data_study", f"--out={out}", *STUDY_FLAGS,
       *extra], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  outs = [tmp_path / f"p{i}" for i in range(2)]
  procs = [study(outs[i], "--distributed", f"--coordinator_address=127.0.0.1:{port}",
                 "--num_processes=2", f"--process_id={i}") for i in range(2)]
  procs.append(study(tmp_path / "one"))
  for code, err in _finish(procs, timeout=400):
    assert code == 0, _why(err)
  assert not outs[1].exists()  # only process 0 writes
  # 2 groups x 6 learning rates x 4 streams (2 seeds x 2 folds).
  _same_csv_to_rounding(outs[0] / "results.csv", tmp_path / "one" / "results.csv", 2 * 6 * 4)


# Where `LR_JAX_FAULT` kills a run (`checkpoint.fault_point`; the first checkpoint is written
# after the 1st call, the 2nd after the 2nd, the first compacted one), what it leaves in the
# checkpoint folder, and the line the resumed run logs. A kill before the first checkpoint,
# which leaves nothing and starts afresh, is tested in process: checkpoint_test's fault points.
KILLS = {
    # Write 1 in place, write 2 staged: resumed from before the first compaction.
    "in_checkpoint_write:2": ([".tmp-group0.npz", "group0.npz"],
                              f"0 of 2 chunks done, at epoch 2/{EPOCHS}"),
    # Write 2 in place, after a compacted call: resumed compacted.
    "after_checkpoint:2": (["group0.npz"], f"0 of 2 chunks done, at epoch 4/{EPOCHS}"),
}
CHECKPOINT_FLAGS = ["--checkpoint_every=2"]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, reference):
  """Runs of `SPREAD` killed at each of `KILLS` (together), then each resumed (together);
  after `reference`, whose programs they share.

  Returns a namespace of dicts by kill point: `out` (the run's folder), `killed` and `resumed`
  ((exit status, stderr) of each run), `wrote` (whether the killed run wrote results.csv),
  `left` (the files it left in its checkpoint folder) and `checkpoint` (the arrays of the
  checkpoint it left, read before the resume replaces it).
  """
  tmp = tmp_path_factory.mktemp("kills")
  runs = types.SimpleNamespace(out={fault: tmp / fault.replace(":", "_") for fault in KILLS},
                               wrote={}, left={}, checkpoint={})
  # Started together, each runs to its own deterministic end: nothing waits on a timer.
  runs.killed = dict(zip(KILLS, _finish(
      [_script(runs.out[fault], *CHECKPOINT_FLAGS, env=_env(LR_JAX_FAULT=fault))
       for fault in KILLS])))
  for fault in KILLS:
    ckpt = runs.out[fault] / "checkpoints"
    runs.wrote[fault] = (runs.out[fault] / "results.csv").exists()
    runs.left[fault] = sorted(p.name for p in ckpt.iterdir()) if ckpt.exists() else []
    if (ckpt / "group0.npz").exists():
      with np.load(ckpt / "group0.npz") as f:
        runs.checkpoint[fault] = {k: f[k] for k in f.files
                                  if k.endswith(("/executed", "/hist/val_loss"))}
  runs.resumed = dict(zip(KILLS, _finish(
      [_script(runs.out[fault], *CHECKPOINT_FLAGS, "--resume") for fault in KILLS])))
  return runs


def test_sigkill_at_any_point_then_resume_is_bit_identical(killed_and_resumed, reference):
  runs = killed_and_resumed
  for fault, (left, line) in KILLS.items():
    code, err = runs.killed[fault]
    assert code == -signal.SIGKILL, f"{fault}: exit {code}\n{_why(err)}"
    assert not runs.wrote[fault], fault
    assert runs.left[fault] == left, fault
    code, err = runs.resumed[fault]
    assert code == 0, f"{fault}: {_why(err)}"
    assert line in err, f"{fault}: {_why(err)}"
    _same_outputs(reference.dir, runs.out[fault])
    assert not (runs.out[fault] / "checkpoints").exists(), fault  # cleared once results are written


def test_sigkill_after_a_compaction_then_resume_is_bit_identical(killed_and_resumed, reference):
  runs, fault = killed_and_resumed, "after_checkpoint:2"
  assert reference.executed < VARIANTS * EPOCHS  # It was compacted.
  code, err = runs.killed[fault]
  assert code == -signal.SIGKILL, f"exit {code}\n{_why(err)}"
  # Killed right after the checkpoint of the 2nd call, which ran the large rates' chunk (1)
  # compacted: fewer variant-epochs than its 8 lanes x 4 epochs; the other chunk (0) whole.
  saved = runs.checkpoint[fault]
  assert saved["live0/hist/val_loss"].shape[0] == saved["live1/hist/val_loss"].shape[0] == 4
  assert saved["live0/executed"] == 8 * 4 and saved["live1/executed"] < 8 * 4
  code, err = runs.resumed[fault]
  assert code == 0 and KILLS[fault][1] in err, _why(err)
  _same_outputs(reference.dir, runs.out[fault])
  # Resumed compacted: the same calls as the uninterrupted run.
  with open(runs.out[fault] / "summary.json") as f:
    assert json.load(f)["timings"][0]["variant_epochs_executed"] == reference.executed
