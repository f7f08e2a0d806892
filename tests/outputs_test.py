"""The output folder: checked before anything runs, locked, committed as one unit, not clobbered."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lr_jax
from lr_jax import outputs, results
from lr_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_result(lrs=(0.01, 0.1), config=None):
  """A small `SweepResult` built by hand: the file logic needs no training."""
  n = len(lrs)
  rows = {"group": np.zeros(n, np.int64), "learning_rate": np.asarray(lrs, np.float64),
          "seed": np.zeros(n, np.int64), "fold": np.zeros(n, np.int64),
          "best_val_accuracy": np.linspace(0.5, 0.9, n)}
  history = {"val_loss": np.arange(2 * n, dtype=np.float32).reshape(n, 2)}
  config = config if config is not None else {"grid": {"learning_rates": list(lrs)}}
  return results.SweepResult(rows=rows, history=history, aggregates=[], best=[], config=config,
                             timings=[], params=[])


def _snapshot(folder):
  """{relative path: content} of the visible files under `folder` (an .npz as its arrays: its
  zip entries carry the time they were written)."""
  out = {}
  for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in files:
      if not name.startswith("."):
        path = os.path.join(root, name)
        if name.endswith(".npz"):
          with np.load(path) as f:
            content = {k: f[k].tolist() for k in f.files}
        else:
          content = open(path, "rb").read()
        out[os.path.relpath(path, folder)] = content
  return out


def _one_line(e):
  text = str(e.value)
  assert "\n" not in text, text
  return text


# Checked before anything runs.

def test_an_existing_file_or_a_path_under_one_is_refused(tmp_path):
  f = tmp_path / "results.txt"
  f.write_text("keep me")
  with pytest.raises(ConfigError) as e:
    outputs.check_writable(str(f))
  assert str(f) in _one_line(e) and "existing file" in str(e.value)
  with pytest.raises(ConfigError) as e:
    outputs.check_writable(str(f / "sub"), "--checkpoint_dir")
  assert _one_line(e).startswith("--checkpoint_dir ") and f"{f} is a file" in str(e.value)
  assert f.read_text() == "keep me"


def test_an_unwritable_place_is_refused_and_nothing_is_left(tmp_path):
  # /proc refuses new files even to root, so this holds whoever runs the tests.
  with pytest.raises(ConfigError) as e:
    outputs.check_writable("/proc/lr_jax_out/run")
  assert "/proc/lr_jax_out/run" in _one_line(e) and "not writable" in str(e.value)
  if os.geteuid() != 0:  # Root writes anywhere a mode bit forbids.
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(ConfigError, match="not writable"):
      outputs.check_writable(str(ro / "out"))
    assert not (ro / "out").exists()


def test_check_creates_the_folder_and_leaves_no_probe(tmp_path):
  out = tmp_path / "a" / "b"
  created = outputs.check_writable(str(out))
  assert created == [str(tmp_path / "a"), str(out)]
  assert os.listdir(out) == []
  outputs.remove_empty(created)
  assert not (tmp_path / "a").exists()


# One writer at a time.

def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
  out = str(tmp_path / "out")
  with outputs.OutputFolder(out, identity={"kind": "sweep"}):
    with pytest.raises(ConfigError) as e:
      lr_jax.write_outputs(fake_result(), out)
    assert "in use by another run" in _one_line(e) and f"process {os.getpid()}" in str(e.value)
    assert not os.path.exists(os.path.join(out, "results.csv"))
  lr_jax.write_outputs(fake_result(), out)  # Released on close.
  assert os.path.exists(os.path.join(out, "results.csv"))


def test_the_lock_of_a_killed_process_is_released_by_the_os(tmp_path):
  out = str(tmp_path / "out")
  holder = (f"import sys; sys.path.insert(0, {ROOT!r}); from lr_jax import outputs; "
            f"f = outputs.OutputFolder({out!r}, identity={{'kind': 'sweep'}}).open(); "
            "print('locked', flush=True); sys.stdin.readline()")
  proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline().strip() == "locked"  # Blocks until the child holds the lock.
    with pytest.raises(ConfigError, match=f"in use by another run \\(process {proc.pid}\\)"):
      lr_jax.write_outputs(fake_result(), out)
  finally:
    proc.kill()
    proc.wait()
  lr_jax.write_outputs(fake_result(), out)  # No stale lock after SIGKILL.
  assert os.path.exists(os.path.join(out, "summary.json"))


# Another run's results.

def test_the_same_sweep_replaces_its_results_a_different_one_needs_overwrite(tmp_path):
  out = str(tmp_path / "out")
  first = fake_result((0.01, 0.1))
  paths = lr_jax.write_outputs(first, out)
  assert [os.path.basename(p) for p in paths] == ["results.csv", "history.npz", "summary.json"]
  lr_jax.write_outputs(fake_result((0.01, 0.1)), out)  # Same configuration: no question.
  before = _snapshot(out)
  with pytest.raises(ConfigError) as e:
    lr_jax.write_outputs(fake_result((0.01, 0.2)), out)
  assert "different sweep" in _one_line(e) and "grid.learning_rates" in str(e.value)
  assert "overwrite=True" in str(e.value)
  assert _snapshot(out) == before
  lr_jax.write_outputs(fake_result((0.01, 0.2)), out, overwrite=True)
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert summary["config"]["grid"]["learning_rates"] == [0.01, 0.2]


def test_results_written_before_manifests_are_recognised_by_their_summary(tmp_path):
  out = tmp_path / "out"
  results.write_files(fake_result((0.01, 0.1)), str(out))  # No manifest: an old folder.
  with pytest.raises(ConfigError, match="different sweep"):
    lr_jax.write_outputs(fake_result((0.3,)), str(out))
  lr_jax.write_outputs(fake_result((0.01, 0.1)), str(out))


def test_a_different_kind_of_run_is_named_and_its_stale_files_go_with_overwrite(tmp_path):
  out = str(tmp_path / "out")
  with outputs.OutputFolder(out, identity={"kind": "study", "config": {"a": 1}}) as folder:
    with folder.staging() as staging:
      for name in ("report.md", "best_lr.png"):
        open(os.path.join(staging, name), "w").write(name)
  with pytest.raises(ConfigError) as e:
    lr_jax.write_outputs(fake_result(), out)
  assert "a study; this is a sweep" in _one_line(e)
  lr_jax.write_outputs(fake_result(), out, overwrite=True)
  # The study's files would be read as this sweep's: they go with the study.
  assert sorted(_snapshot(out)) == ["history.npz", "results.csv", "summary.json"]


# Committed as one unit.

def test_a_full_disk_mid_write_leaves_the_previous_set_whole(tmp_path, monkeypatch):
  out = str(tmp_path / "out")
  lr_jax.write_outputs(fake_result((0.01, 0.1)), out)
  before = _snapshot(out)
  real, calls = results.files.atomic_write, []  # Where `write_files` looks it up.

  def full_after_first(path, data):
    calls.append(path)
    if len(calls) > 1:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real(path, data)

  monkeypatch.setattr(results.files, "atomic_write", full_after_first)
  with pytest.raises(ConfigError) as e:
    lr_jax.write_outputs(fake_result((0.01, 0.1)), out)
  assert "No space left on device" in _one_line(e) and "unchanged" in str(e.value)
  assert len(calls) == 2  # results.csv was written (to the staging folder), then the disk filled.
  assert _snapshot(out) == before
  assert [n for n in os.listdir(out) if n.startswith(outputs.STAGING_PREFIX)] == []


class _Killed(BaseException):
  """Stands for SIGKILL: nothing after it runs."""


def test_a_commit_cut_short_is_finished_by_the_next_writer(tmp_path, monkeypatch):
  out = str(tmp_path / "out")
  lr_jax.write_outputs(fake_result((0.01, 0.1)), out)
  old = _snapshot(out)
  results.write_files(fake_result((0.3,)), str(tmp_path / "ref"))
  expected = _snapshot(tmp_path / "ref")
  real, moved = os.replace, []

  def killed_after_one_rename(src, dst):
    into_place = (os.path.basename(os.path.dirname(src)).startswith(outputs.STAGING_PREFIX)
                  and not os.path.basename(src).startswith(".tmp-"))
    if into_place:
      if moved:
        raise _Killed()
      moved.append(dst)
    real(src, dst)

  monkeypatch.setattr(os, "replace", killed_after_one_rename)
  with pytest.raises(_Killed):
    lr_jax.write_outputs(fake_result((0.3,)), out, overwrite=True)
  monkeypatch.setattr(os, "replace", real)
  mixed = _snapshot(out)
  assert mixed != old and mixed != expected  # One file renamed: a mixed set, for now.
  # The next writer (here a refused one: it differs) first completes the interrupted commit.
  with pytest.raises(ConfigError, match="different sweep"):
    lr_jax.write_outputs(fake_result((0.01, 0.1)), out)
  assert _snapshot(out) == expected
  assert [n for n in os.listdir(out) if n.startswith(outputs.STAGING_PREFIX)] == []


def test_an_unfinished_staging_folder_is_deleted(tmp_path):
  out = str(tmp_path / "out")
  lr_jax.write_outputs(fake_result(), out)
  before = _snapshot(out)
  leftover = os.path.join(out, outputs.STAGING_PREFIX + "dead")
  os.makedirs(leftover)
  open(os.path.join(leftover, "results.csv"), "w").write("half")
  lr_jax.write_outputs(fake_result(), out)
  assert not os.path.exists(leftover)
  assert _snapshot(out) == before
