"""Checkpoints: exact round trip, refusals that say why, resume under other chunks, fault points."""

import collections
import contextlib
import functools
import logging
import os
import types

import numpy as np
import pytest

import lr_jax
from lr_jax import checkpoint, engine

EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(16,)),
    train=lr_jax.TrainConfig(epochs=4, patience=0))
GRID = lr_jax.Grid(learning_rates=(1e-3, 3e-3, 1e-2), seeds=(0, 1))
# Calls of 2 epochs: a checkpoint and a fault point between them.
RunOptions = functools.partial(engine.RunOptions, chunk_epochs=2)
CONFIG = {"grid": {"learning_rates": [0.001], "seeds": [0]}, "train": {"epochs": 4}}


def test_save_then_load_is_bit_exact(tmp_path):
  tree = {"a": np.arange(3, dtype=np.int32),
          "b": [np.array([[1.5, np.nan], [-0.0, 1e-30]], np.float32)]}
  path = str(tmp_path / "group0.npz")
  checkpoint.save(path, checkpoint.flatten("x", tree), CONFIG)
  back = checkpoint.unflatten("x", checkpoint.load(path, CONFIG), tree)
  for got, want in zip([back["a"], back["b"][0]], [tree["a"], tree["b"][0]]):
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
  assert os.listdir(tmp_path) == ["group0.npz"]  # no temporary file left behind
  assert checkpoint.load(str(tmp_path / "none.npz"), CONFIG) is None
  assert checkpoint.fingerprint({"a": 1}, np.ones(2)) != checkpoint.fingerprint({"a": 1}, np.zeros(2))


def test_a_corrupted_checkpoint_is_refused_in_one_line(tmp_path):
  path = str(tmp_path / "group0.npz")
  checkpoint.save(path, {"w": np.ones(1000, np.float32)}, CONFIG)
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 2])
  with pytest.raises(lr_jax.ConfigError, match="is corrupted") as exc:
    checkpoint.load(path, CONFIG)
  assert "\n" not in str(exc.value)


def test_a_different_configuration_is_refused_naming_each_differing_field(tmp_path):
  path = str(tmp_path / "group0.npz")
  checkpoint.save(path, {"w": np.ones(2)}, CONFIG)
  now = {"grid": {"learning_rates": [0.002], "seeds": [0]}, "train": {"epochs": 4, "new": 1}}
  with pytest.raises(lr_jax.ConfigError) as exc:
    checkpoint.load(path, now)
  msg = str(exc.value)
  assert "different configuration: grid.learning_rates (checkpoint [0.001], now [0.002]), " \
         "train.new (checkpoint none, now 1); resume with the same flags" in msg
  assert "seeds" not in msg and "epochs" not in msg and "\n" not in msg


def test_a_sweep_resumes_only_its_own_checkpoint_and_says_what_differs(tmp_path):
  ckdir = str(tmp_path / "ck")
  grid = lr_jax.Grid(learning_rates=(1e-3,))
  lr_jax.run_sweep(EXP, grid, options=RunOptions(checkpoint_dir=ckdir, checkpoint_every=2))
  assert os.path.exists(os.path.join(ckdir, "group0.npz"))
  resume = RunOptions(checkpoint_dir=ckdir, resume=True)
  assert lr_jax.run_sweep(EXP, grid, options=resume).num_variants == 1  # the same: accepted
  with pytest.raises(lr_jax.ConfigError,
                     match=r"grid\.learning_rates \(checkpoint \[0\.001\], now \[0\.002\]\);"):
    lr_jax.run_sweep(EXP, lr_jax.Grid(learning_rates=(2e-3,)), options=resume)
  with pytest.raises(lr_jax.ConfigError, match=r"data\.data_seed \(checkpoint 0, now 1\)"):
    lr_jax.run_sweep(EXP.replace(data__data_seed=1), grid, options=resume)
  with pytest.raises(lr_jax.ConfigError, match=r"train\.epochs \(checkpoint 4, now 6\)"):
    lr_jax.run_sweep(EXP.replace(train__epochs=6), grid, options=resume)


def test_resume_keeps_the_checkpoints_chunks_when_max_variants_per_chunk_changes(
    tmp_path, caplog, monkeypatch):
  ckdir = str(tmp_path / "ck")
  chunked = RunOptions(checkpoint_dir=ckdir, checkpoint_every=2, max_variants_per_chunk=3)
  whole = lr_jax.run_sweep(EXP, GRID, options=chunked)  # 3 chunks of 2 streams x 1 point
  # Make it the checkpoint of a run killed after its first chunk: drop the other two.
  path = os.path.join(ckdir, "group0.npz")
  with np.load(path) as f:
    kept = {k: f[k] for k in f.files if not k.startswith(("done1/", "done2/"))}
  np.savez(path, **kept)
  caplog.set_level(logging.INFO, logger="absl")
  for budget in (None, 6):  # The default (one chunk here) and an explicit other budget.
    resumed = lr_jax.run_sweep(EXP, GRID, options=RunOptions(
        checkpoint_dir=ckdir, resume=True, max_variants_per_chunk=budget))
    # The checkpoint's chunks are kept, so the same programs run: bitwise by construction.
    for k in whole.history:
      np.testing.assert_array_equal(resumed.history[k], whole.history[k], err_msg=k)
    for k in ("best_val_accuracy", "best_epoch", "epochs_run"):
      np.testing.assert_array_equal(resumed.rows[k], whole.rows[k], err_msg=k)
    np.savez(path, **kept)  # run_sweep rewrote it finished; back to one chunk done
  log = caplog.text
  assert "1 of 3 chunks done" in log
  assert "chunks of 2 streams x 1 point" in log and "max_variants_per_chunk=6" in log
  # Chunks of one point cannot be sharded over two devices: refused before anything runs.
  monkeypatch.setattr(engine.loop, "_mesh", lambda: types.SimpleNamespace(size=2))
  with pytest.raises(lr_jax.ConfigError, match="chunks of 1 point, which 2 devices cannot share"):
    lr_jax.run_sweep(EXP, GRID, options=RunOptions(checkpoint_dir=ckdir, resume=True))


class Killed(Exception):
  pass


def _fake_kill(monkeypatch):
  """Makes `fault_point`'s signal raise `Killed` instead; returns the list of signals sent."""
  sent = []

  def kill(pid, signum):
    sent.append((pid, signum))
    raise Killed  # The real SIGKILL would end the process here.

  monkeypatch.setattr(checkpoint.os, "kill", kill)
  monkeypatch.setattr(checkpoint, "_fault_passes", collections.Counter())
  return sent


def test_fault_point_signals_at_the_kth_pass_inside_a_checkpoint_write(tmp_path, monkeypatch):
  sent = _fake_kill(monkeypatch)
  monkeypatch.setenv("LR_JAX_FAULT", "in_checkpoint_write:2")
  path = str(tmp_path / "group0.npz")
  checkpoint.save(path, {"w": np.zeros(2)}, CONFIG)
  with pytest.raises(Killed):
    checkpoint.save(path, {"w": np.ones(2)}, CONFIG)
  assert sent == [(os.getpid(), checkpoint.signal.SIGKILL)]
  # Killed between write and rename: the previous checkpoint is whole, the new one staged.
  np.testing.assert_array_equal(checkpoint.load(path, CONFIG)["w"], np.zeros(2))
  with np.load(tmp_path / ".tmp-group0.npz") as staged:
    np.testing.assert_array_equal(staged["w"], np.ones(2))

  monkeypatch.setenv("LR_JAX_FAULT", "after_checkpoint:1:SIGINT")
  with pytest.raises(Killed):
    checkpoint.save(path, {"w": np.ones(2)}, CONFIG)
  assert sent[-1][1] == checkpoint.signal.SIGINT
  np.testing.assert_array_equal(checkpoint.load(path, CONFIG)["w"], np.ones(2))

  for bad in ("after_chekpoint", "after_checkpoint:0", "after_checkpoint:x", "before_compile:1:KILL"):
    monkeypatch.setenv("LR_JAX_FAULT", bad)
    with pytest.raises(lr_jax.ConfigError, match="LR_JAX_FAULT"):
      checkpoint.fault_point("before_compile")


def test_a_user_model_resumes_in_a_new_process_and_another_width_is_named(tmp_path):
  import flax.linen as nn

  class Net(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
      return nn.Dense(10)(nn.relu(nn.Dense(self.width)(x)))

  ckdir = str(tmp_path / "ck")
  grid = lr_jax.Grid(learning_rates=(1e-3,))
  exp = lr_jax.Experiment(data=EXP.data, train=EXP.train)  # A user model takes no ModelConfig.
  # Each from_linen call builds new functions, as a new process would: the checkpoint must
  # not depend on their identity (their repr holds memory addresses).
  first = lr_jax.run_sweep(exp, grid, model=lr_jax.from_linen(Net(8), 64),
                           options=RunOptions(checkpoint_dir=ckdir, checkpoint_every=2))
  resume = RunOptions(checkpoint_dir=ckdir, resume=True)
  again = lr_jax.run_sweep(exp, grid, model=lr_jax.from_linen(Net(8), 64), options=resume)
  # The same program (the same flags and model): bitwise by construction.
  np.testing.assert_array_equal(again.history["val_loss"], first.history["val_loss"])
  with pytest.raises(lr_jax.ConfigError, match=r"model\.user\.Dense_1\.kernel \(checkpoint "
                                               r"\[\[64, 8\], \"float32\"\], now \[\[64, 12\]"):
    lr_jax.run_sweep(exp, grid, model=lr_jax.from_linen(Net(12), 64), options=resume)


@pytest.mark.parametrize("fault,left", [
    ("before_compile", []), ("after_compile", []), ("after_checkpoint", ["group0.npz"])])
def test_the_engines_fault_points_stop_a_sweep_where_they_say(fault, left, tmp_path, monkeypatch):
  sent = _fake_kill(monkeypatch)
  monkeypatch.setenv("LR_JAX_FAULT", fault)
  ckdir = tmp_path / "ck"
  opts = RunOptions(checkpoint_dir=str(ckdir), checkpoint_every=1)
  with pytest.raises(Killed):
    lr_jax.run_sweep(EXP, lr_jax.Grid(learning_rates=(1e-3,)), options=opts)
  assert len(sent) == 1
  assert (sorted(os.listdir(ckdir)) if ckdir.exists() else []) == left
  if left:  # The first checkpoint, at the first call boundary: compacting, the first call
    # ends after one epoch (`rounds._stop`), 1 of 4 done.
    with np.load(ckdir / "group0.npz") as f:
      assert f["live0/hist/val_loss"].shape[0] == 1 and "done0/epoch" not in f.files


@contextlib.contextmanager
def _keeping_checkpoint_at(epoch: int):
  """Yields a dict that gets the checkpoint written with chunk 0 at `epoch` (path, arrays,
  config): what a run killed right after that write would leave."""
  kept = {}
  real_save = checkpoint.save

  def save(path, arrays, config):
    if "live0/hist/train_loss" in arrays and len(arrays["live0/hist/train_loss"]) == epoch:
      kept.update(path=path, arrays=dict(arrays), config=config)
    real_save(path, arrays, config)

  with pytest.MonkeyPatch.context() as m:
    m.setattr(checkpoint, "save", save)
    yield kept


def test_a_pruned_sweep_resumes_bit_identically_and_only_under_the_same_pruning(tmp_path):
  ckdir = str(tmp_path / "ck")
  exp = EXP.replace(train__epochs=6, train__patience=2)
  grid = lr_jax.Grid(learning_rates=(1e-6, 1e-3, 1e-2, 3.0), seeds=(0, 1))
  prune = dict(prune="halving", prune_rungs=(2,), prune_eta=2)
  ref = lr_jax.run_sweep(exp, grid, options=RunOptions(**prune))
  assert ref.rows["pruned"].any()
  # Keep the checkpoint written after the rung (epoch 4): a run killed there.
  real_save = checkpoint.save
  with _keeping_checkpoint_at(4) as kept:
    lr_jax.run_sweep(exp, grid, options=RunOptions(
        checkpoint_dir=ckdir, checkpoint_every=2, **prune))
  real_save(kept["path"], kept["arrays"], kept["config"])
  assert kept["arrays"]["live0/pruned"].any()  # Decided before the kill, kept by the checkpoint.
  resumed = lr_jax.run_sweep(exp, grid, options=RunOptions(
      checkpoint_dir=ckdir, resume=True, **prune))
  # Resumed under the same options: the same programs, the same survivors; bitwise.
  for k in ("pruned", "epochs_run", "best_epoch", "stopped_early"):
    np.testing.assert_array_equal(resumed.rows[k], ref.rows[k], err_msg=k)
  for k in ref.history:
    np.testing.assert_array_equal(resumed.history[k], ref.history[k], err_msg=k)
  real_save(kept["path"], kept["arrays"], kept["config"])
  with pytest.raises(lr_jax.ConfigError, match=r"prune\.eta \(checkpoint 2(\.0)?, now 3(\.0)?\)"):
    lr_jax.run_sweep(exp, grid, options=RunOptions(
        checkpoint_dir=ckdir, resume=True, **{**prune, "prune_eta": 3}))


def test_chunk_epochs_is_a_run_option_a_checkpoint_resumes_under_another(tmp_path):
  # Calls of 2 epochs, killed after the first call; resumed in calls of 1, and of all epochs:
  # the same sweep (its checkpoint identity, and its results to float32 rounding).
  ckdir = str(tmp_path / "ck")
  grid = lr_jax.Grid(learning_rates=(1e-3, 3e-2), seeds=(0, 1))
  ref = lr_jax.run_sweep(EXP, grid, options=engine.RunOptions(chunk_epochs=0))
  real_save = checkpoint.save
  with _keeping_checkpoint_at(2) as kept:
    lr_jax.run_sweep(EXP, grid, options=RunOptions(checkpoint_dir=ckdir, checkpoint_every=2))
  assert "train" in kept["config"] and "chunk_epochs" not in kept["config"]["train"]
  for chunk_epochs in (1, 0):
    real_save(kept["path"], kept["arrays"], kept["config"])
    resumed = lr_jax.run_sweep(EXP, grid, options=engine.RunOptions(
        checkpoint_dir=ckdir, resume=True, chunk_epochs=chunk_epochs))
    assert resumed.timings[0]["epochs_executed"] == 4
    # Another call length is another program: equal to float32 rounding, not bit for bit.
    for k in ref.history:
      np.testing.assert_allclose(resumed.history[k], ref.history[k], rtol=1e-6, err_msg=k)
