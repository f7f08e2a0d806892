"""Scaling out and surviving faults: several devices, several processes, SIGKILL and resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lr_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_FLAGS = ["--train_size=200", "--hidden=16", "--lrs=1e-4,1e-3,1e-2", "--seeds=2",
               "--patience=0"]
EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(32,)),
    train=lr_jax.TrainConfig(epochs=4, patience=2))
GRID = lr_jax.Grid(learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), seeds=(0, 1))
# Variants that stop at very different epochs (the largest learning rates diverge at once), so
# the chunk is compacted between calls.
SPREAD_EXP = EXP.replace(model__hidden=(16,), train__epochs=8, train__patience=1)
SPREAD_GRID = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 3.0, 8), seeds=(0, 1))
SPREAD_OPTIONS = lr_jax.RunOptions(chunk_epochs=2)


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".jax_cache"))
  return env


def _script(out, *flags, env=None):
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.lr_sweep", f"--out={out}", *SMALL_FLAGS, *flags],
      cwd=ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _same_outputs(a, b):
  # For a run and its kill and resume, under the same flags: the same programs, so bitwise.
  with open(os.path.join(a, "results.csv")) as fa, open(os.path.join(b, "results.csv")) as fb:
    assert fa.read() == fb.read()
  ha, hb = np.load(os.path.join(a, "history.npz")), np.load(os.path.join(b, "history.npz"))
  assert sorted(ha.files) == sorted(hb.files)
  for k in ha.files:
    np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)


def test_four_devices_give_the_results_of_one_also_when_compacted(tmp_path):
  code = textwrap.dedent("""
      import sys, numpy as np, lr_jax, jax
      sys.path.insert(0, %r)
      from scale_test import SPREAD_EXP, SPREAD_GRID, SPREAD_OPTIONS
      assert jax.device_count() == 4
      r = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID, options=SPREAD_OPTIONS)
      np.savez(sys.argv[1], **r.history, best_epoch=r.rows["best_epoch"],
               epochs_run=r.rows["epochs_run"],
               executed=r.timings[0]["variant_epochs_executed"])
  """ % os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "devices.npz"  # Not in the checkout: parallel sessions must not share it.
  subprocess.run([sys.executable, "-c", code, out], cwd=ROOT, check=True, timeout=300,
                 env=_env(XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                          + " --xla_force_host_platform_device_count=4"))
  four = np.load(out)
  one = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID, options=SPREAD_OPTIONS)
  # Sharded and compacted: 2 streams x 8 points, then the survivors at a width of 4 or 8.
  assert one.rows["epochs_run"].min() < 8 and four["executed"] < 16 * 8
  for k in one.history:
    np.testing.assert_allclose(four[k], one.history[k], rtol=1e-5, atol=1e-6, err_msg=k)
  # Sharded programs are other programs; their integer outcomes are exact here because no val
  # loss comes within 0.3% of the best before it and divergence is far from its threshold.
  np.testing.assert_array_equal(four["best_epoch"], one.rows["best_epoch"])
  np.testing.assert_array_equal(four["epochs_run"], one.rows["epochs_run"])


def _why(err: str) -> str:
  """What a failed child said: its first lines (where an abort says why) and its last."""
  return err if len(err) <= 5000 else f"{err[:3000]}\n[...]\n{err[-2000:]}"


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_results_of_one_also_when_compacted(tmp_path):
  port = _free_port()
  outs = [tmp_path / f"p{i}" for i in range(2)]
  # lr 10 diverges in the first call: the other 4 variants continue compacted.
  flags = ["--epochs=4", "--chunk_epochs=2", "--lrs=1e-3,1e-2,10", "--patience=1"]
  procs = [_script(outs[i], *flags, "--distributed", f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}") for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=400)
    assert p.returncode == 0, _why(err)
  assert not outs[1].exists()  # only process 0 writes
  with open(outs[0] / "summary.json") as f:
    assert json.load(f)["timings"][0]["variant_epochs_executed"] < 8 * 4  # 2 x 4 lanes, each epoch
  single = _script(tmp_path / "single", *flags)
  _, err = single.communicate(timeout=300)
  assert single.returncode == 0, _why(err)
  with open(outs[0] / "results.csv") as a, open(tmp_path / "single" / "results.csv") as b:
    rows_a, rows_b = a.read().splitlines(), b.read().splitlines()
  assert len(rows_a) == 7 and rows_a[0] == rows_b[0]
  # Two processes run other programs: numbers to float32 rounding; the integer columns (epochs,
  # flags) are then exact, robust here (no val loss within 3% of the best before it).
  for ra, rb in zip(rows_a[1:], rows_b[1:]):
    for x, y in zip(ra.split(","), rb.split(",")):
      try:
        assert float(x) == pytest.approx(float(y), rel=1e-5, abs=1e-7)
      except ValueError:
        assert x == y


def _finish(procs, timeout=300):
  """Waits for every process; returns (returncode, stderr) of each."""
  outs = []
  for p in procs:
    _, err = p.communicate(timeout=timeout)
    outs.append((p.returncode, err))
  return outs


def test_sigkill_at_any_point_then_resume_is_bit_identical(tmp_path):
  # 3 chunks of 2 streams x 1 point, run in lockstep: 3 rounds of 2 epochs; a checkpoint after
  # each round but the last, and one when all are done: 3 in all.
  flags = ["--epochs=6", "--chunk_epochs=2", "--checkpoint_every=2", "--max_variants_per_chunk=3"]
  # Where `LR_JAX_FAULT` kills each run (`checkpoint.fault_point`), what it leaves in the
  # checkpoint folder, and the line the resumed run logs (None: starts afresh).
  # (A kill before the first checkpoint, which leaves nothing and starts afresh, is tested in
  # process: checkpoint_test's fault points.)
  scenarios = {
      "in_checkpoint_write:2": ([".tmp-group0.npz", "group0.npz"],  # write 1 in place, 2 staged
                                "0 of 3 chunks done, at epoch 2/6"),
      "after_checkpoint:2": (["group0.npz"], "0 of 3 chunks done, at epoch 4/6"),
  }
  outs = {fault: tmp_path / fault.replace(":", "_") for fault in scenarios}
  # Started together, each runs to its own deterministic end: nothing waits on a timer.
  procs = [_script(tmp_path / "ref", *flags)] + [
      _script(outs[fault], *flags, env=_env(LR_JAX_FAULT=fault)) for fault in scenarios]
  (code, err), *killed = _finish(procs)
  assert code == 0, _why(err)
  for (fault, (left, _)), (code, err) in zip(scenarios.items(), killed):
    assert code == -signal.SIGKILL, f"{fault}: exit {code}\n{_why(err)}"
    assert not (outs[fault] / "results.csv").exists(), fault
    ckpt = outs[fault] / "checkpoints"
    assert (sorted(p.name for p in ckpt.iterdir()) if ckpt.exists() else []) == left, fault

  resumed = _finish([_script(outs[fault], *flags, "--resume") for fault in scenarios])
  for (fault, (_, line)), (code, err) in zip(scenarios.items(), resumed):
    assert code == 0, f"{fault}: {_why(err)}"
    if line is None:
      assert "resuming" not in err, fault
    else:
      assert line in err, f"{fault}: {_why(err)}"
    _same_outputs(tmp_path / "ref", outs[fault])
    assert not (outs[fault] / "checkpoints").exists(), fault  # cleared once results are written


def test_sigkill_after_a_compaction_then_resume_is_bit_identical(tmp_path):
  # 2 seeds x 4 learning rates; the two largest diverge in the first call, so from the second
  # call on the 4 survivors run compacted. A checkpoint after every call: the 2nd is written
  # after a compacted call, and the run is killed right there.
  flags = ["--lrs=1e-3,1e-2,10,30", "--patience=2", "--epochs=8", "--chunk_epochs=2",
           "--checkpoint_every=2"]
  runs = [_script(tmp_path / "ref", *flags),
          _script(tmp_path / "killed", *flags, env=_env(LR_JAX_FAULT="after_checkpoint:2"))]
  (code, err), (killed, kerr) = _finish(runs)
  assert code == 0, err[-2000:]
  assert killed == -signal.SIGKILL, kerr[-2000:]
  with open(tmp_path / "ref" / "summary.json") as f:
    timing = json.load(f)["timings"][0]
  assert timing["variant_epochs_executed"] < 8 * 8  # It was compacted.
  (code, err), = _finish([_script(tmp_path / "killed", *flags, "--resume")])
  assert code == 0 and "at epoch 4/8" in err, err[-2000:]
  _same_outputs(tmp_path / "ref", tmp_path / "killed")
