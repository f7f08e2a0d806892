"""The engine refuses what cannot run, in one line and before compiling: sizes past memory,
step counts past int32, a checkpoint folder it cannot write or that another run holds; and it
reports compile time apart from run time.

Every refusal here is reached with the compiling and allocating parts of the engine replaced by
functions that fail the test, so none of these tests can compile, allocate or hang; the memory
of the machine is monkeypatched, so the verdicts do not depend on it. Only the last test
compiles (one tiny program).
"""

import fcntl
import logging
import os
import resource
import sys
import time

import numpy as np
import pytest

import lr_jax
from lr_jax import engine

GIB = 2**30
TINY = lr_jax.Experiment(data=lr_jax.DataConfig(train_size=200),
                         model=lr_jax.ModelConfig(hidden=(8,)),
                         train=lr_jax.TrainConfig(epochs=2))


class Reached(Exception):
  """A part of the engine past the checks (compiling, allocating, running) was reached."""


def _engine_modules() -> list:
  """The engine package and its modules (each looks a name up in its own namespace)."""
  return [m for n, m in sorted(sys.modules.items())
          if n == "lr_jax.engine" or n.startswith("lr_jax.engine.")]


def _patch(monkeypatch, name: str, value, *, raising: bool = True) -> None:
  """Replaces `name` in every engine module that holds it: wherever the engine looks it up."""
  where = [m for m in _engine_modules() if hasattr(m, name)]
  assert where or not raising, f"no module of lr_jax.engine has {name!r}"
  for module in where:
    monkeypatch.setattr(module, name, value)


def _forbid(monkeypatch, *names):
  """Replaces engine functions by ones that raise `Reached` (or fail the test)."""
  for name in names:
    def refuse(*args, _name=name, **kwargs):
      raise Reached(f"engine.{_name} was reached")
    _patch(monkeypatch, name, refuse)


# What compiles or allocates a group's arrays: none of it may run before a refusal.
_PAST_PLANNING = ("run_group", "_compiled", "_compiled_init", "stream_params", "_engine_model",
                  "make_trainer")


def _memory(monkeypatch, device: int, host: int):
  _patch(monkeypatch, "_device_memory_bytes", lambda: device)
  # raising=False: the code before these checks had no such function; the test then fails on
  # the missing refusal, not on the patch.
  _patch(monkeypatch, "_host_memory_bytes", lambda: host, raising=False)


# ------------------------------------------------------------------ 1. sizes past memory


def test_a_grid_past_host_memory_is_refused_from_its_lengths_before_any_value_is_walked(
    monkeypatch):
  _memory(monkeypatch, device=GIB, host=GIB)
  # Walking 1e9 values (the type check, the per-seed check) is the hang: make it a failure.
  _forbid(monkeypatch, "check_fields", "check_positive", "check_learning_rates")
  t0 = time.perf_counter()
  with pytest.raises(lr_jax.ConfigError, match=(
      r"^1 learning rate x 1,000,000,000 seeds = 1,000,000,000 variants: their result rows "
      r"alone need ~149\.0 GiB of host memory \(160 bytes each\), more than this machine's "
      r"1\.0 GiB; valid: at most 6,710,886 variants")):
    engine.Grid(seeds=range(10**9))
  with pytest.raises(lr_jax.ConfigError, match=(
      r"^10,000 learning rates x 1,000 seeds x 1,000 weight_decay values = 10,000,000,000 "
      r"variants")):
    engine.Grid(learning_rates=np.geomspace(1e-4, 1, 10**4), seeds=range(10**3),
                hparams={"weight_decay": np.linspace(0, 1e-3, 10**3)})
  # What a script can call before expanding --num_lrs / --seeds into tuples.
  with pytest.raises(lr_jax.ConfigError, match=r"^--num_lrs=1000000000 x --seeds=3 = "
                     r"3,000,000,000 variants: .* more than this machine's 1\.0 GiB"):
    engine.check_variant_count([("--num_lrs=1000000000", 10**9), ("--seeds=3", 3)])
  assert time.perf_counter() - t0 < 5
  engine.check_variant_count([("--num_lrs=16", 16), ("--seeds=3", 3)])  # Fits: no error.


def test_a_model_past_the_devices_memory_is_refused_when_planned_without_allocating(
    monkeypatch):
  _memory(monkeypatch, device=int(23.4 * GIB), host=int(23.4 * GIB))
  _forbid(monkeypatch, *_PAST_PLANNING)
  rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  t0 = time.perf_counter()
  exp = lr_jax.Experiment(model=lr_jax.ModelConfig(hidden=(200_000_000,)))
  with pytest.raises(lr_jax.ConfigError, match=(
      r"^ModelConfig\(name='mlp', hidden=\(200000000,\)\) \(--model, --hidden\) on 'digits' "
      r"\(64 features\): one variant needs ~[\d.]+ GiB \(parameters 55\.9 GiB, best parameters "
      r"55\.9 GiB, optimizer state 111\.8 GiB, validation outcomes [\d.]+ \w+, gradients 55\.9 GiB, activations [\d.]+ GiB\), "
      r"more than this (machine|device)'s 23\.4 GiB; valid: narrower or fewer hidden layers")):
    lr_jax.run_sweep(exp, lr_jax.Grid())
  assert time.perf_counter() - t0 < 30
  grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
  assert grown < 2**20, f"the refusal raised the peak memory by {grown} KiB"


def test_a_grid_whose_variants_do_not_fit_the_host_is_refused_when_planned(monkeypatch):
  _memory(monkeypatch, device=16 * GIB, host=64 * 2**20)
  _forbid(monkeypatch, *_PAST_PLANNING)
  # 100,000 variants pass the grid's own check (160 bytes each: 16 MB < 64 MiB); with the
  # default MLP(128) and Adam each holds ~150 KiB of state and 100 epochs of history.
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-5, 1.0, 1000), seeds=tuple(range(100)))
  with pytest.raises(lr_jax.ConfigError, match=(
      r"^100 seeds x 1,000 grid points = 100,000 variants need ~[\d.]+ GiB of host memory "
      r"\([\d.]+ KiB each: the final state, 100 epochs of history and the result row\), more "
      r"than this machine's 64\.0 MiB; valid: at most \d+ variants")):
    lr_jax.run_sweep(lr_jax.Experiment(), grid)
  # The default sweep fits in the same memory.
  assert len(engine.plan_sweep(lr_jax.Experiment(), lr_jax.Grid(
      learning_rates=lr_jax.log_spaced(1e-4, 1e-2, 16), seeds=(0, 1, 2)))) == 1


# ------------------------------------------------------------------ 3. steps past int32


@pytest.mark.parametrize("schedule,max_steps,refused", [
    ("warmup_cosine", 0, "the 'warmup_cosine' schedule's horizon"),
    ("onecycle", 0, "the 'onecycle' schedule's horizon"),
    ("onecycle", 1000, "max_steps does not shorten it"),  # The horizon spans all epochs.
    ("constant", 0, "a variant's step count, an int32"),
    ("constant", 1000, None),                             # Capped: it never counts that far.
])
def test_steps_past_int32_are_refused_when_planned(schedule, max_steps, refused, monkeypatch):
  _forbid(monkeypatch, *_PAST_PLANNING)
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(schedule=schedule),
                          train=lr_jax.TrainConfig(epochs=2**30, batch_size=8,
                                                   max_steps=max_steps))
  if refused is None:
    _memory(monkeypatch, device=2**60, host=2**60)  # 2**30 epochs of history: not this check.
    engine.plan_sweep(exp, lr_jax.Grid())
    return
  with pytest.raises(lr_jax.ConfigError, match=(
      r"^epochs=1,073,741,824 x 180 steps per epoch \(batch_size=8, 1,437 training rows\) = "
      r"193,273,528,320 optimizer steps, more than 2,147,483,647, the most .*; valid: epochs "
      r"<= 11,930,464 at this batch size, or a larger batch_size")) as e:
    engine.plan_sweep(exp, lr_jax.Grid())
  assert refused in str(e.value)


def test_steps_at_the_int32_limit_are_planned(monkeypatch):
  _forbid(monkeypatch, *_PAST_PLANNING)
  # 2**31 - 1 epochs of history would not fit here (the host check says so): not this test's.
  _memory(monkeypatch, device=2**60, host=2**60)
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(schedule="warmup_cosine"),
                          train=lr_jax.TrainConfig(epochs=2**31 - 1, batch_size=0))  # 1 step each
  assert engine.plan_sweep(exp, lr_jax.Grid())[0].experiment.train.epochs == 2**31 - 1


# ------------------------------------------------------------------ 2. the checkpoint folder


def _probe(path) -> bool:
  """Whether `path` is free: a fresh descriptor's flock, as another run would take it (a
  missing folder is free)."""
  if not os.path.isdir(path):
    return True
  fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  finally:
    os.close(fd)
  return True


def test_a_checkpoint_dir_that_cannot_be_written_is_refused_before_compiling(
    tmp_path, monkeypatch):
  _forbid(monkeypatch, *_PAST_PLANNING)
  afile = tmp_path / "afile"
  afile.write_text("x")
  for path, problem in [
      (afile, r"checkpoint_dir .*afile is an existing file, not a folder; give a folder path"),
      (afile / "ck", r"checkpoint_dir .*afile/ck: .*afile is a file, not a folder"),
      # Not writable even for root.
      ("/proc/lr_jax_engine_safety/ck", r"checkpoint_dir /proc/lr_jax_engine_safety/ck is not "
       r"writable \(.*\); give a folder you can write to"),
  ]:
    with pytest.raises(lr_jax.ConfigError, match=f"^{problem}"):
      lr_jax.run_sweep(TINY, lr_jax.Grid(),
                       options=engine.RunOptions(checkpoint_dir=str(path), checkpoint_every=1))
  assert afile.read_text() == "x"


@pytest.mark.parametrize("planned", [False, True])
def test_the_checkpoint_folder_is_held_for_the_whole_run(planned, tmp_path, monkeypatch):
  ckdir = tmp_path / "ck"
  seen = []

  def run_group(group, *, index=0, options=None, in_turn=None):
    seen.append(_probe(ckdir))  # Another run would be refused now.
    raise Reached("run_group")

  monkeypatch.setattr(engine.loop, "run_group", run_group)
  options = engine.RunOptions(checkpoint_dir=str(ckdir), checkpoint_every=1)
  with pytest.raises(Reached):
    if planned:  # A script's way: plan, check, then run.
      engine.run_planned(engine.plan_sweep(TINY, lr_jax.Grid()), lr_jax.Grid(), options=options)
    else:
      lr_jax.run_sweep(TINY, lr_jax.Grid(), options=options)
  assert seen == [False]
  assert not ckdir.exists()  # Released, and the folder the run created (empty) removed.


def test_a_checkpoint_folder_another_run_holds_is_refused_before_compiling(tmp_path,
                                                                            monkeypatch):
  _forbid(monkeypatch, *_PAST_PLANNING)
  ckdir = tmp_path / "ck"
  ckdir.mkdir()
  fd = os.open(ckdir, os.O_RDONLY | os.O_DIRECTORY)  # Another run's hold.
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(lr_jax.ConfigError, match=r"^checkpoint_dir .*ck is in use by another run"):
      lr_jax.run_sweep(TINY, lr_jax.Grid(),
                       options=engine.RunOptions(checkpoint_dir=str(ckdir), resume=True))
  finally:
    os.close(fd)


def test_a_checkpoint_folder_this_process_holds_is_not_locked_twice(tmp_path, monkeypatch):
  """A script holds its checkpoints (`cli.check_checkpoints`) before it runs the engine: the
  engine must not refuse the folder as another run's (a second flock of one process would)."""
  from lr_jax import cli
  _forbid(monkeypatch, "run_group")
  options = engine.RunOptions(checkpoint_dir=str(tmp_path / "ck"), checkpoint_every=1)
  cli.check_checkpoints(options, overwrite=False)
  try:
    with pytest.raises(Reached):
      lr_jax.run_sweep(TINY, lr_jax.Grid(), options=options)
    assert not _probe(tmp_path / "ck")  # Still the script's, until it releases it.
  finally:
    cli.release_locks()
  assert _probe(tmp_path / "ck")  # Released.


# ------------------------------------------------------------------ 4. compile time and its log


def test_compile_time_is_reported_apart_from_run_time_and_a_reused_program_as_reused(
    monkeypatch, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  # Its own signature (hidden=(3,)): no other test's program is in the in-process cache.
  exp = TINY.replace(model__hidden=(3,))
  grid = lr_jax.Grid(learning_rates=(1e-3, 1e-2))
  options = engine.RunOptions(chunk_epochs=0)  # One compiled call: compile_s was run_s.
  real_round, pause = engine.loop._round, 0.5

  def slow_round(*args, **kwargs):  # Running takes at least `pause`; compiling does not.
    real_round(*args, **kwargs)
    time.sleep(pause)

  monkeypatch.setattr(engine.loop, "_round", slow_round)
  first = lr_jax.run_sweep(exp, grid, options=options).timings[0]
  assert 0 < first["compile_s"] <= first["run_s"] - pause, first
  assert "compile group" not in caplog.text
  assert "group 1/1: compiled " in caplog.text and "(tracing, lowering, XLA)" in caplog.text
  caplog.clear()
  again = lr_jax.run_sweep(exp, grid, options=options).timings[0]  # The in-process cache's.
  assert again["compile_s"] == 0.0 and again["run_s"] >= pause, again
  assert "group 1/1: reused the programs compiled earlier in this process (nothing compiled)" \
      in caplog.text
  assert "compiled " not in caplog.text.replace("compiled earlier", "").replace(
      "nothing compiled", "")
