"""The benchmark scripts run end to end in --quick mode and write complete, sane files.

No timing is asserted: a test machine is shared and its times mean nothing. The scripts run in
subprocesses (their absl flags would collide with the main script's in this process), with
XLA's backend optimizations off, which cuts compile time several-fold at the cost of run time
that --quick does not have.
"""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import benchmarks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = {"throughput:machine", "throughput:per_variant", "throughput:compile",
           "throughput:default_sweep", "throughput:targets", "convergence:optimizers",
           "convergence:summary", "convergence:articles", "convergence:figure",
           "compaction:default_sweep", "compaction:halving", "yardstick:hand_written"}


def _run(module, tmp_path, *args):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  out = tmp_path / "out"
  proc = subprocess.run([sys.executable, "-m", module, "--quick", f"--out={out}", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
  return out, proc.stdout


def _sections(md_path):
  with open(md_path) as f:
    text = f.read()
  return dict(re.findall(r"<!-- BEGIN (\S+) -->\n(.*?)\n<!-- END \1 -->", text, re.S))


def _check_fills_the_doc(tmp_path, sections):
  doc = tmp_path / "BENCHMARKS.md"
  shutil.copyfile(benchmarks.DOC, doc)
  assert benchmarks.fill_markers(str(doc), sections) == []
  filled = _sections(doc)
  for name, body in sections.items():
    assert filled[name] == body.strip()


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_the_document_has_a_marker_for_every_section_and_no_other():
  assert set(_sections(benchmarks.DOC)) == MARKERS


def test_fill_markers_replaces_only_the_marked_text(tmp_path):
  doc = tmp_path / "doc.md"
  doc.write_text("intro\n<!-- BEGIN a -->\nold\n<!-- END a -->\nmiddle\n<!-- BEGIN b -->\n"
                 "<!-- END b -->\nend\n")
  assert benchmarks.fill_markers(str(doc), {"a": "new | table", "c": "x"}) == ["c"]
  assert doc.read_text() == ("intro\n<!-- BEGIN a -->\nnew | table\n<!-- END a -->\nmiddle\n"
                             "<!-- BEGIN b -->\n<!-- END b -->\nend\n")


def test_throughput_quick(tmp_path):
  # A peers venv that does not exist: the peers are skipped with one line, the rest runs.
  out, stdout = _run("benchmarks.throughput", tmp_path,
                     "--systems=vmapped,loop,flax,torch,jaxsweep,torchvmap",
                     f"--peers_venv={tmp_path / 'no-venv'}")
  assert "peers not installed: pip install -e '.[peers]'" in stdout
  assert "skipped: torch, torchvmap" in stdout
  assert "FAIL" not in stdout
  with open(out / "throughput.json") as f:
    result = json.load(f)

  # Workload P's FLOPs, by hand: (64*128 + 128*10) MACs, x6 per training example, x2 per
  # validation example, one epoch in quick mode.
  data = result["data"]
  assert (data["n_train"], data["n_val"], data["features"], data["classes"]) == (1437, 360, 64, 10)
  assert result["flops"]["flops"] == 6 * 9472 * 1437 + 2 * 9472 * 360
  assert _positive(result["matmul_peak"]["median_gflops"])

  runs = result["records"]["runs"]
  systems = ("vmapped", "loop", "flax", "jaxsweep")
  assert set(runs) == {f"{s}-{n}" for s in systems for n in (1, 2)}
  for name, rec in runs.items():
    assert rec["n"] == len(rec["learning_rates"]) == len(rec["final_val_accuracy"]), name
    for key in ("first_s", "median_s", "min_s", "max_s", "peak_rss_mb"):
      assert _positive(rec[key]), (name, key)
    assert rec["min_s"] <= rec["median_s"] <= rec["max_s"]
    assert all(_positive(t) for t in rec["runs_s"])
    # None (NaN) only for a variant with no finite epoch: lr 0.1 may diverge in its one epoch.
    accs = rec["final_val_accuracy"]
    assert all(a is None or 0.0 <= a <= 1.0 for a in accs), name
    assert accs[0] is not None and 0.0 <= accs[0] <= 1.0, name
    if rec["system"] != "loop":  # The loop reuses the program vmapped N=1 compiled.
      assert rec["compile_events"]["trace_s"] >= 0
  assert runs["vmapped-1"]["learning_rates"] == pytest.approx([1e-3])
  assert runs["vmapped-2"]["learning_rates"] == pytest.approx([1e-4, 1e-1])
  assert runs["jaxsweep-2"]["learning_rates"] == pytest.approx([1e-4, 1e-1])

  rows = result["analysis"]["rows"]
  assert {(r["system"], r["n"]) for r in rows} == {(s, n) for s in systems for n in (1, 2)}
  for r in rows:
    for key in ("s_per_variant", "gflops", "pct_of_matmul_peak", "x_slower_than_vmapped"):
      assert _positive(r[key]), (r["system"], r["n"], key)
  checks = result["analysis"]["checks"]
  assert checks and all(c["ok"] is True for c in checks), checks
  names = [c["name"] for c in checks]
  assert any(n.startswith("jaxsweep = flax at N=1") for n in names), names
  assert any(n.startswith("jaxsweep ~ vmapped at N=2") for n in names), names
  targets = {t["name"]: t for t in result["analysis"]["targets"]}
  yardstick = next(t for name, t in targets.items() if "hand-written JAX" in name)
  ratio = float(yardstick["measured"].split("x")[0])
  rows_at = {(r["system"], r["n"]): r for r in rows}
  assert ratio == pytest.approx(rows_at["vmapped", 2]["s_per_variant"]
                                / rows_at["jaxsweep", 2]["s_per_variant"], rel=1e-2)
  for t in result["analysis"]["targets"]:
    assert isinstance(t["ok"], bool) and t["measured"], t

  sweep = result["records"]["default_sweep"]["cold"]
  assert sweep["num_variants"] == 1
  assert _positive(sweep["process_wall_s"]) and _positive(sweep["peak_rss_mb"])
  assert set(sweep["compile_events"]) >= {"trace_s", "lower_s", "compile_s"}

  with open(out / "throughput.csv") as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("system,label,n,how,s_per_variant") and len(lines) == 1 + len(rows)
  assert sum(line.startswith("jaxsweep,") for line in lines) == 2
  assert "(f) hand-written JAX jit(vmap(scan))" in _sections(out / "throughput.md")[
      "throughput:per_variant"]
  sections = _sections(out / "throughput.md")
  assert set(sections) == {m for m in MARKERS if m.startswith("throughput:")}
  _check_fills_the_doc(tmp_path, sections)


def test_compaction_quick(tmp_path):
  out, stdout = _run("benchmarks.compaction", tmp_path, "--datasets=wine")
  with open(out / "compaction.json") as f:
    r = json.load(f)
  on, off = r["default_sweep"]["on"], r["default_sweep"]["off"]
  # The same variants train the same epochs either way; compaction only drops idle lanes.
  assert on["variant_epochs_trained"] == off["variant_epochs_trained"] > 0
  assert (on["variant_epochs_trained"] <= on["variant_epochs_executed"]
          < off["variant_epochs_executed"])
  assert len(on["wall_s"]) == len(off["wall_s"]) == 3 and all(map(_positive, on["wall_s"]))
  assert r["default_sweep"]["speedup"] == pytest.approx(off["median_wall_s"] / on["median_wall_s"])
  wine = r["halving"]["wine"]
  assert set(r["halving"]) == {"wine"} and wine["points_pruned"] >= 1
  assert wine["executed_pruned"] < wine["executed"]
  assert wine["best_lr"] in wine["not_worse_set"]
  sections = _sections(out / "compaction.md")
  assert set(sections) == {m for m in MARKERS if m.startswith("compaction:")}
  assert sections["compaction:halving"] in stdout
  _check_fills_the_doc(tmp_path, sections)


def test_yardstick_quick(tmp_path):
  out, stdout = _run("benchmarks.yardstick", tmp_path)
  with open(out / "yardstick.json") as f:
    r = json.load(f)
  assert (r["n"], r["epochs"], r["rounds"]) == (4, 1, 2)
  for name in ("lr_jax", "hand"):
    assert len(r["runs_s"][name]) == 2 and all(_positive(t) for t in r["runs_s"][name])
    assert r["min_s"][name] <= r["median_s"][name] <= max(r["runs_s"][name])
    assert _positive(r["first_call_s"][name])
  assert r["ratios"] == pytest.approx([a / b for a, b in zip(r["runs_s"]["lr_jax"],
                                                            r["runs_s"]["hand"])])
  assert r["median_of_ratios"] == pytest.approx(float(np.median(r["ratios"])))
  section = _sections(out / "yardstick.md")["yardstick:hand_written"]
  assert "(f) hand-written jit(vmap(scan))" in section and "target <= 1.1" in section
  assert section in stdout
  _check_fills_the_doc(tmp_path, {"yardstick:hand_written": section})


def _peer_outcomes(python, tmp_path, code):
  data = tmp_path / "data.npz"
  rng = np.random.default_rng(0)
  # A small separable problem: 10 classes, 64 features, 320 training and 100 validation rows.
  centers = rng.normal(0, 1, (10, 64)).astype(np.float32)
  def split(n):
    y = rng.integers(0, 10, n).astype(np.int32)
    return (centers[y] + rng.normal(0, 1, (n, 64))).astype(np.float32), y
  (x_train, y_train), (x_val, y_val) = split(320), split(100)
  np.savez(data, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
  proc = subprocess.run(
      [python, "-c", "import json, sys; from benchmarks import peers; "
       f"data = peers.load_data({str(data)!r}); print(json.dumps({code}))"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0"))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.splitlines()[-1])


_KW = "epochs=3, batch_size=32, seed=0"  # 320 = 10 full batches; 3 epochs.


def test_jax_sweep_peer_trains_each_learning_rate_as_flax_alone(tmp_path):
  sweep, alone = _peer_outcomes(
      sys.executable, tmp_path,
      f"[peers.train_jax_sweep(data, [0.0, 1e-3, 3e-2], {_KW}), "
      f"[peers.train_flax(data, lr, {_KW}) for lr in (0.0, 1e-3, 3e-2)]]")
  # One init, one minibatch order, each variant its own learning rate.
  _assert_like_alone(sweep, alone)


def _assert_like_alone(population, alone):
  """A peer's vectorized variants (lr 0, 1e-3, 3e-2) are its one-at-a-time runs, to float
  rounding; lr 0 leaves the init alone and the others learn this easy problem."""
  for (acc, loss), (acc1, loss1) in zip(population, alone):
    assert acc == pytest.approx(acc1, abs=0.011) and loss == pytest.approx(loss1, rel=1e-3)
  assert population[0][0] < 0.4 and population[1][0] > 0.8 and population[2][0] > 0.8
  assert population[0][1] > 2 * population[1][1]


def _torch_python():
  """An interpreter that imports torch: this one, else the benchmark's default peers venv."""
  if importlib.util.find_spec("torch"):
    return sys.executable
  python = benchmarks.python_of_venv(os.path.join(ROOT, ".venv-peers"))
  if os.path.exists(python) and subprocess.run([python, "-c", "import torch, numpy, absl"],
                                               capture_output=True, check=False).returncode == 0:
    return python
  return None


def test_torch_vmap_peer_trains_each_learning_rate_as_torch_alone(tmp_path):
  python = _torch_python()
  if python is None:
    pytest.skip("torch is not importable, neither here nor in .venv-peers "
                "(python3 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]')")
  ensemble, alone = _peer_outcomes(
      python, tmp_path,
      f"[peers.train_torch_vmap(data, [0.0, 1e-3, 3e-2], {_KW}), "
      f"[peers.train_torch(data, lr, {_KW}) for lr in (0.0, 1e-3, 3e-2)]]")
  # The hand-written per-model Adam against torch.optim.Adam, same init and minibatches.
  _assert_like_alone(ensemble, alone)


def test_convergence_quick(tmp_path):
  out, stdout = _run("benchmarks.convergence", tmp_path)
  with open(out / "convergence.json") as f:
    result = json.load(f)
  assert list(result["optimizers"]) == ["sgd", "adam"]
  assert list(result["articles"]) == ["B", "C"]
  steps_per_epoch = math.ceil(1437 / 32)
  groups = [*result["optimizers"].values(), *result["articles"].values()]
  for group in groups:
    assert _positive(group["s_per_epoch"]) and _positive(group["wall_s"])
    assert 1 <= group["loop_epochs"] <= 2
    for p in group["points"]:
      assert 0 <= p["reached"] <= p["seeds"] == 1
      if p["reached"]:
        assert 1 <= p["epochs_to_target"] <= 2
        assert p["steps_to_target"] == p["epochs_to_target"] * steps_per_epoch
        assert _positive(p["wall_to_target_s"])
      else:
        assert p["epochs_to_target"] is None  # NaN in the JSON is null.
      acc = p["best_val_accuracy"]
      # None (NaN) only for a variant that diverged before its first validation.
      assert (acc is None and p["diverged"]) or 0.0 <= acc <= 1.0
  assert [p["learning_rate"] for p in result["optimizers"]["sgd"]["points"]] == \
      pytest.approx([1e-3, 1e-2, 1e-1], rel=1e-6)
  # The quick target is low enough that adam gets there within two epochs.
  assert any(p["reached"] for p in result["optimizers"]["adam"]["points"])
  with open(out / "convergence.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(out / "convergence.csv") as f:
    assert len(f.read().splitlines()) == 1 + sum(len(g["points"]) for g in groups)
  sections = _sections(out / "convergence.md")
  assert set(sections) == {m for m in MARKERS if m.startswith("convergence:")}
  _check_fills_the_doc(tmp_path, sections)
