"""The benchmark scripts run end to end in --quick mode and write complete, sane files.

No timing is asserted: a test machine is shared and its times mean nothing. The scripts run in
subprocesses (their absl flags would collide with the main script's in this process), with
XLA's backend optimizations off, which cuts compile time several-fold at the cost of run time
that --quick does not have.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

import benchmarks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = {"throughput:machine", "throughput:per_variant", "throughput:compile",
           "throughput:default_sweep", "throughput:targets", "convergence:optimizers",
           "convergence:summary", "convergence:articles", "convergence:figure"}


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
  out, stdout = _run("benchmarks.throughput", tmp_path, "--systems=vmapped,loop,flax,torch",
                     f"--peers_venv={tmp_path / 'no-venv'}")
  assert "peers not installed: pip install -e '.[peers]'" in stdout
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
  assert set(runs) == {f"{s}-{n}" for s in ("vmapped", "loop", "flax") for n in (1, 2)}
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

  rows = result["analysis"]["rows"]
  assert {(r["system"], r["n"]) for r in rows} == {(s, n) for s in ("vmapped", "loop", "flax")
                                                   for n in (1, 2)}
  for r in rows:
    for key in ("s_per_variant", "gflops", "pct_of_matmul_peak", "x_slower_than_vmapped"):
      assert _positive(r[key]), (r["system"], r["n"], key)
  checks = result["analysis"]["checks"]
  assert checks and all(c["ok"] is True for c in checks), checks
  for t in result["analysis"]["targets"]:
    assert isinstance(t["ok"], bool) and t["measured"], t

  sweep = result["records"]["default_sweep"]["cold"]
  assert sweep["num_variants"] == 1
  assert _positive(sweep["process_wall_s"]) and _positive(sweep["peak_rss_mb"])
  assert set(sweep["compile_events"]) >= {"trace_s", "lower_s", "compile_s"}

  with open(out / "throughput.csv") as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("system,label,n,how,s_per_variant") and len(lines) == 1 + len(rows)
  sections = _sections(out / "throughput.md")
  assert set(sections) == {m for m in MARKERS if m.startswith("throughput:")}
  _check_fills_the_doc(tmp_path, sections)


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
