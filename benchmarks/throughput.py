r"""Throughput of a learning-rate sweep: lr_jax against the usual ways to write it.

    python -m benchmarks.throughput --out runs/benchmarks/throughput         # ~20 min, 2 cores
    python -m benchmarks.throughput --full --out runs/benchmarks/throughput  # peers at N=64 too
    python -m benchmarks.throughput --quick --out /tmp/throughput            # checks that it runs

Workload P: digits (1437 training, 360 validation examples), an MLP 64-128-10, Adam, batch 32,
20 epochs, validation after every epoch, no early stopping, N learning rates log-spaced from
1e-4 to 1e-1 (N = 1 trains 1e-3 alone). Systems:

  vmapped  lr_jax: the N learning rates in one compiled program (`lr_jax.run_sweep`).
  loop     lr_jax's single-variant program called N times (one `run_sweep` per learning rate;
           it compiles once).
  flax     the Flax examples' shape: a jitted `train_step` per minibatch from Python
           (`benchmarks.peers`).
  torch    a PyTorch eager loop (peers venv).
  keras    Keras 3 `fit` on TensorFlow-CPU (peers venv).
  jaxsweep a minimal hand-written JAX sweep: `jit(vmap(scan))` over the learning rates with
           `optax.inject_hyperparams(optax.adam)`, shared init and minibatch order, nothing
           else; the yardstick for what lr_jax's features cost per variant.
  torchvmap PyTorch's vectorized ensemble: `torch.func.stack_module_state` + `functional_call`
           + `vmap(grad)`, a hand-written Adam with a learning rate per model (peers venv).

Every measurement runs in a fresh process (its own peak RSS; cold = an empty JAX persistent
compilation cache, warm = the cache the cold run filled). Each reports seconds per variant
(median over --repeats runs after a first run that pays compilation), GFLOP/s against the float32
matmul peak measured in the same run, and the final validation accuracy; the script checks that
every system reaches a similar accuracy at --check_lr and prints PASS/MISS against the targets.
Writes throughput.json (everything), throughput.csv (one row per system and N) and
throughput.md (the tables, between the markers of benchmarks/BENCHMARKS.md; --fill_doc pastes
them there) into --out.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from absl import app, flags

import benchmarks
from benchmarks import fmt, markdown_table

SYSTEMS = ("vmapped", "loop", "flax", "torch", "keras", "jaxsweep", "torchvmap")
LR_JAX = ("vmapped", "loop")
# Run from the peers' virtual environment, which must hold these modules.
PEER_MODULES = {"torch": ("torch",), "keras": ("tensorflow", "keras"), "torchvmap": ("torch",)}
PEERS = tuple(PEER_MODULES)
# Train all N variants in one program: their cost per variant depends on N, never extrapolated.
BATCHED = ("vmapped", "jaxsweep", "torchvmap")
LABELS = {
    "vmapped": "(a) lr_jax vmapped",
    "loop": "(b) lr_jax single-variant x N",
    "flax": "(c) Flax-example loop",
    "torch": "(d) PyTorch eager",
    "keras": "(e) Keras 3 fit (TF-CPU)",
    "jaxsweep": "(f) hand-written JAX jit(vmap(scan))",
    "torchvmap": "(g) PyTorch torch.func vmap ensemble",
}
PEERS_HINT = ("peers not installed: pip install -e '.[peers]' "
              "(python3 -m venv .venv-peers && .venv-peers/bin/pip install -e '.[peers]')")
# (system, the least speed-up per variant of vmapped over it at --target_n).
SPEEDUP_TARGETS = (("loop", 3.0), ("keras", 100.0), ("torch", 50.0), ("flax", 40.0))
# vmapped may cost at most this many times the hand-written JAX sweep per variant at --target_n.
YARDSTICK_FACTOR = 1.1

flags.DEFINE_string("out", "runs/benchmarks/throughput", "Output folder.")
flags.DEFINE_bool("quick", False,
                  "A short run that checks the script works: N in {1, 2}, 1 epoch, 1 repeat, no "
                  "peers, every JAX measurement in this one process with one shared compilation "
                  "cache, no warm runs, the default sweep's probe without its report (--noreport); "
                  "its numbers mean nothing.")
flags.DEFINE_bool("full", False, "Also measure the peers at N=64 instead of extrapolating.")
flags.DEFINE_list("ns", ["1", "8", "64", "256"], "Numbers of variants (learning rates).")
flags.DEFINE_list("peer_ns", ["1", "8"], "N at which torch and keras are measured (cost is "
                  "linear in N: larger N are extrapolated); jaxsweep and torchvmap train N at "
                  "once, so they are measured at --ns.")
flags.DEFINE_list("systems", list(SYSTEMS), f"Systems to measure: {', '.join(SYSTEMS)}.")
flags.DEFINE_integer("epochs", 20, "Epochs of workload P.")
flags.DEFINE_integer("batch_size", 32, "Minibatch size of workload P.")
flags.DEFINE_integer("repeats", 3, "Timed runs per measurement after the first (median, min-max).",
                     lower_bound=1)
flags.DEFINE_float("check_lr", 1e-3, "Learning rate of N=1, where every system's final "
                   "validation accuracy must agree.")
flags.DEFINE_float("acc_tolerance", 0.03, "Largest spread of final validation accuracy between "
                   "systems at --check_lr before the check FAILs.")
flags.DEFINE_integer("target_n", 64, "N at which the speed-up and matmul-peak targets are judged.")
flags.DEFINE_bool("warm", True, "Also measure each system in a fresh process with a warm cache.")
flags.DEFINE_bool("default_sweep", True, "Measure compile time and memory of the default sweep "
                  "(`python -m experiments.lr_sweep` with its defaults), cold and warm.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the float32 matmul that measures the peak.")
flags.DEFINE_integer("matmul_reps", 10, "Timed matmuls (median) for the peak.")
flags.DEFINE_string("peers_venv", os.path.join(benchmarks.ROOT, ".venv-peers"),
                    "Virtual environment with torch and tensorflow-cpu "
                    "(pip install -e '.[peers]').")
flags.DEFINE_integer("torch_threads", 1, "PyTorch intra-op threads (0: torch's default, one per "
                     "core, several times slower on this workload's tiny matmuls).", lower_bound=0)
flags.DEFINE_integer("worker_timeout_s", 3600, "Give up on one measurement after this long.")
flags.DEFINE_bool("xla_dump", False, "Also dump XLA's optimized HLO of lr_jax's program at "
                  "--target_n (1 epoch) into --out/xla_dump and summarize its minibatch loop: a "
                  "profile hint, what each step executes.")
flags.DEFINE_bool("fill_doc", False, "Paste the tables into benchmarks/BENCHMARKS.md's markers.")
flags.DEFINE_string("worker", None, "Internal: run one lr_jax measurement from this spec file.")
FLAGS = flags.FLAGS

# Run in a fresh interpreter: times and records the unchanged main script (`make run`).
_SCRIPT_PROBE = r"""
import atexit, sys, time
start = time.perf_counter()
from benchmarks import peak_rss_mb, write_json
from benchmarks.peers import watch_compiles
events = watch_compiles()
result_path, sys.argv = sys.argv[1], ["lr_sweep"] + sys.argv[2:]
atexit.register(lambda: write_json(result_path, {
    "process_s": time.perf_counter() - start, "compile_events": dict(events),
    "peak_rss_mb": peak_rss_mb()}))
import runpy
runpy.run_module("experiments.lr_sweep", run_name="__main__", alter_sys=True)
"""


# ----------------------------------------------------------------------------- workload


def learning_rates(n: int, check_lr: float) -> list[float]:
  """Workload P's grid: `check_lr` alone for N = 1, else N log-spaced from 1e-4 to 1e-1."""
  if n == 1:
    return [check_lr]
  from lr_jax import log_spaced
  return list(log_spaced(1e-4, 1e-1, n))


def workload_experiment(epochs: int, batch_size: int):
  """Workload P as an lr_jax `Experiment` (no early stopping)."""
  import lr_jax
  return lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits"),
      model=lr_jax.ModelConfig(name="mlp", hidden=(128,)),
      optim=lr_jax.OptimConfig(name="adam"),
      train=lr_jax.TrainConfig(epochs=epochs, batch_size=batch_size, patience=0))


def write_data(path: str) -> dict:
  """Writes lr_jax's standardized digits split for the peers; returns its sizes."""
  import numpy as np
  import lr_jax
  cfg = lr_jax.DataConfig(dataset="digits")
  dataset = lr_jax.load_dataset(cfg)
  splits = lr_jax.make_splits(dataset, cfg)
  train = splits.train_idx[0][splits.train_mask[0]]
  val = splits.val_idx[0][splits.val_mask[0]]
  scale = lambda x: ((x - splits.mean[0]) / splits.std[0]).astype(np.float32)
  arrays = {"x_train": scale(dataset.x[train]), "y_train": dataset.y[train].astype(np.int32),
            "x_val": scale(dataset.x[val]), "y_val": dataset.y[val].astype(np.int32)}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path, **arrays)
  return {"n_train": len(train), "n_val": len(val), "features": dataset.x.shape[1],
          "classes": dataset.num_classes}


def flops_per_variant(sizes: dict, hidden: Sequence[int], epochs: int) -> dict:
  """FLOPs of one variant of workload P, counted from its matmuls.

  A dense layer costs in*out multiply-adds (MACs) per example: 2 FLOPs each forward, 4 backward
  (gradients of weights and inputs), so training costs 6 x MACs per example and validation 2 x
  MACs. Biases, activations, the loss and Adam's update (about 10 FLOPs per parameter per step,
  ~5% here) are left out.
  """
  widths = [sizes["features"], *hidden, sizes["classes"]]
  macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  train = 6 * macs * sizes["n_train"] * epochs
  val = 2 * macs * sizes["n_val"] * epochs
  return {"macs_per_example": macs, "train_flops": train, "val_flops": val, "flops": train + val}


def matmul_peak(size: int, reps: int) -> dict:
  """The float32 matmul rate of this machine under JAX: median and best of `reps` jnp.dot."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    dot(a, a).block_until_ready()
    times.append(time.perf_counter() - t0)
  flops = 2.0 * size**3
  return {"size": size, "reps": reps, "median_gflops": flops / statistics.median(times) / 1e9,
          "best_gflops": flops / min(times) / 1e9, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()]}


# ----------------------------------------------------------------------------- the lr_jax worker


def _final(row) -> float:
  """The last finite value of a per-epoch row (a diverged variant stops early)."""
  import numpy as np
  finite = row[np.isfinite(row)]
  return float(finite[-1]) if finite.size else math.nan


def run_worker(spec: dict) -> dict:
  """One lr_jax measurement (`vmapped` or `loop`) in this fresh process."""
  from benchmarks import loadavg, peers
  start_load = loadavg()
  import jax
  import lr_jax
  from lr_jax import cli
  cli.enable_compilation_cache()  # $JAX_COMPILATION_CACHE_DIR, set by the parent.
  events = peers.watch_compiles()
  exp = workload_experiment(spec["epochs"], spec["batch_size"])
  lrs = [float(x) for x in spec["learning_rates"]]
  diverged = []

  def outcomes(result):
    diverged.append(int(result.rows["diverged"].sum()))
    return [(_final(a), _final(l))
            for a, l in zip(result.history["val_accuracy"], result.history["val_loss"])]

  if spec["system"] == "vmapped":
    grid = lr_jax.Grid(learning_rates=tuple(lrs), seeds=(0,))
    run_all = lambda: outcomes(lr_jax.run_sweep(exp, grid))
    record = peers.measure(run_all, spec["repeats"])
  else:
    grids = [lr_jax.Grid(learning_rates=(lr,), seeds=(0,)) for lr in lrs]
    run_all = lambda: [o for g in grids for o in outcomes(lr_jax.run_sweep(exp, g))]
    # Every learning rate runs the same program: one of them pays its compilation.
    record = peers.measure(run_all, spec["repeats"], first=lambda: lr_jax.run_sweep(exp, grids[0]),
                           first_share=1 / len(lrs))
  record.update(
      system=spec["system"], n=len(lrs), learning_rates=lrs, compile_events=dict(events),
      diverged_last_run=diverged[-1] if spec["system"] == "vmapped" else sum(diverged[-len(lrs):]),
      facts={**benchmarks.package_versions(["jax", "jaxlib", "flax", "optax"]),
             "backend": jax.default_backend(), "devices": len(jax.devices())},
      loadavg_start=start_load, loadavg_end=benchmarks.loadavg())
  return record


# ----------------------------------------------------------------------------- the parent


class Runner:
  """Spawns measurement processes and keeps their logs under `out/logs`."""

  def __init__(self, out: str, timeout_s: int, in_process: bool = False):
    self.out = out
    self.timeout_s = timeout_s
    # --quick: the main-venv workers run in this process, one after another, to skip the
    # seconds each fresh process spends importing, loading data and tracing.
    self.in_process = in_process
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    os.makedirs(os.path.join(out, "specs"), exist_ok=True)

  def spawn(self, name: str, argv: list[str], cache_dir: str | None, result: str) -> dict:
    """Runs `argv` from the repository root; returns its JSON result or an `error` record."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir:
      os.makedirs(cache_dir, exist_ok=True)
      env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = os.path.join(self.out, "logs", name + ".log")
    if os.path.exists(result):
      os.unlink(result)
    t0 = time.perf_counter()
    try:
      with open(log, "w") as f:
        proc = subprocess.run(argv, cwd=benchmarks.ROOT, env=env, stdout=f,
                              stderr=subprocess.STDOUT, timeout=self.timeout_s, check=False)
      rc = proc.returncode
    except subprocess.TimeoutExpired:
      rc = "timeout"
    wall = time.perf_counter() - t0
    if rc == 0 and os.path.exists(result):
      with open(result) as f:
        record = json.load(f)
      record["process_wall_s"] = wall
      return record
    with open(log) as f:
      tail = f.read()[-2000:]
    return {"error": f"{name} exited with {rc}; last lines of {log}:\n{tail}"}

  def measure(self, name: str, spec: dict, python: str, module: str, cache_dir: str | None) -> dict:
    """Runs one measurement worker (`module` is benchmarks.throughput or benchmarks.peers)."""
    spec = dict(spec, result=os.path.join(self.out, "specs", name + ".result.json"))
    spec_path = os.path.join(self.out, "specs", name + ".json")
    benchmarks.write_json(spec_path, spec)
    if self.in_process and python == sys.executable:
      from benchmarks import peers
      if cache_dir:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache_dir
      record = run_worker(spec) if module == "benchmarks.throughput" else peers.run_spec(spec)
      return dict(record, process_wall_s=math.nan, in_process=True)
    flag = "--worker" if module == "benchmarks.throughput" else "--spec"
    argv = [python, "-m", module, f"{flag}={spec_path}"]
    return self.spawn(name, argv, cache_dir, spec["result"])


def _peers_python(venv: str, modules: Sequence[str] = ("torch", "tensorflow", "keras")
                  ) -> str | None:
  """The peers' interpreter if every one of `modules` is installed there, else None."""
  python = benchmarks.python_of_venv(venv)
  if not os.path.exists(python):
    return None
  # find_spec, not import: importing TensorFlow alone takes many seconds.
  code = ("import importlib.util as u, sys; "
          f"sys.exit(not all(u.find_spec(m) for m in {tuple(modules)!r}))")
  probe = subprocess.run([python, "-c", code], capture_output=True, timeout=120, check=False)
  return python if probe.returncode == 0 else None


def _ints(values: Sequence[str]) -> list[int]:
  return sorted({int(v) for v in values})


def collect(cfg: dict, runner: Runner) -> dict:
  """Runs every measurement `cfg` asks for; returns the raw records."""
  records: dict = {"runs": {}, "warm": {}, "errors": []}
  data_path = os.path.join(runner.out, "data.npz")
  shared_cache = os.path.join(runner.out, "cache", "shared") if cfg["quick"] else None
  # Per peer: a venv with torch alone still runs both torch peers.
  peers_python = {s: _peers_python(cfg["peers_venv"], PEER_MODULES[s])
                  for s in cfg["systems"] if s in PEERS}
  missing = [s for s, python in peers_python.items() if python is None]
  if missing:
    print(f"{PEERS_HINT}; skipped: {', '.join(missing)}", flush=True)
    records["peers_missing"] = f"{PEERS_HINT}; skipped: {', '.join(missing)}"
  base = {"data": data_path, "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "seed": 0,
          "torch_threads": cfg["torch_threads"]}

  def cache_for(system, n):
    return shared_cache or os.path.join(runner.out, "cache", f"{system}-{n}")

  for system in cfg["systems"]:
    if system in PEERS and peers_python[system] is None:
      continue
    python = peers_python[system] if system in PEERS else sys.executable
    module = "benchmarks.throughput" if system in LR_JAX else "benchmarks.peers"
    ns = cfg["peer_ns"] if system in PEERS and system not in BATCHED else cfg["ns"]
    for n in ns:
      name = f"{system}-{n}"
      cache = None if system in PEERS else cache_for(system, n)
      if cache and not cfg["quick"]:
        shutil.rmtree(cache, ignore_errors=True)  # Cold: an empty persistent cache.
      spec = dict(base, system=system, learning_rates=learning_rates(n, cfg["check_lr"]),
                  repeats=cfg["repeats"])
      print(f"measuring {LABELS[system]} at N={n} ...", flush=True)
      t0 = time.perf_counter()
      rec = runner.measure(name, spec, python, module, cache)
      if "error" in rec:
        print(f"ERROR {rec['error']}", flush=True)
        records["errors"].append(rec["error"])
        continue
      records["runs"][name] = rec
      print(f"  {rec['median_s'] / n:.4g} s/variant, first call {rec['first_s']:.3g} s, "
            f"peak RSS {rec['peak_rss_mb']:.0f} MB, {time.perf_counter() - t0:.1f} s", flush=True)
    if cfg["warm"] and system not in PEERS and f"{system}-{ns[0]}" in records["runs"]:
      # The same program again, in a fresh process whose persistent cache the cold run filled.
      n = ns[0]
      spec = dict(base, system=system, learning_rates=learning_rates(n, cfg["check_lr"]), repeats=1)
      rec = runner.measure(f"{system}-{n}-warm", spec, python, module, cache_for(system, n))
      if "error" in rec:
        records["errors"].append(rec["error"])
      else:
        records["warm"][system] = rec
  if cfg["default_sweep"]:
    records["default_sweep"] = measure_default_sweep(cfg, runner)
    records["errors"] += records["default_sweep"].get("errors", [])
  return records


def measure_default_sweep(cfg: dict, runner: Runner) -> dict:
  """`python -m experiments.lr_sweep` with its defaults, cold then warm (fresh processes)."""
  cache = os.path.join(runner.out, "cache", "default-sweep")
  args = [f"--out={os.path.join(runner.out, 'default_sweep')}"]
  states = ("cold", "warm")
  if cfg["quick"]:
    # The quick workload's own program, so that the shared cache holds it: this only checks
    # that the probe works. No report: its figures would double the process's time.
    cache = os.path.join(runner.out, "cache", "shared")
    args += [f"--lrs={cfg['check_lr']}", "--seeds=1", f"--epochs={cfg['epochs']}", "--patience=0",
             "--noreport"]
    states = ("cold",)
  else:
    shutil.rmtree(cache, ignore_errors=True)
  out = {"args": args}
  for state in states:
    print(f"measuring the default sweep ({state} cache) ...", flush=True)
    result = os.path.join(runner.out, "specs", f"default-sweep-{state}.result.json")
    argv = [sys.executable, "-c", _SCRIPT_PROBE, result, *args]
    rec = runner.spawn(f"default-sweep-{state}", argv, cache, result)
    if "error" in rec:
      print(f"ERROR {rec['error']}", flush=True)
      out.setdefault("errors", []).append(rec["error"])
      continue
    summary = os.path.join(runner.out, "default_sweep", "summary.json")
    with open(summary) as f:
      summary = json.load(f)
    rec["num_variants"] = summary["num_variants"]
    rec["engine_timings"] = summary["timings"]
    out[state] = rec
  return out


# ----------------------------------------------------------------------------- analysis


def _compile_s(events: dict | None) -> float:
  if not events:
    return math.nan
  return events["trace_s"] + events["lower_s"] + events["compile_s"]


def analyse(cfg: dict, records: dict, peak: dict, flops: dict) -> dict:
  """Per system and N: seconds per variant, ratios, GFLOP/s; the checks and the targets."""
  runs = records["runs"]
  rows = []
  vmapped = {n: runs[f"vmapped-{n}"]["median_s"] / n for n in cfg["ns"] if f"vmapped-{n}" in runs}
  for system in cfg["systems"]:
    measured = sorted((r for r in runs.values() if r["system"] == system), key=lambda r: r["n"])
    if not measured:
      continue
    largest_n, largest = measured[-1]["n"], measured[-1]
    for n in sorted(set(cfg["ns"]) | {r["n"] for r in measured}):
      rec = runs.get(f"{system}-{n}")
      if rec is not None:
        per, lo, hi = rec["median_s"] / n, rec["min_s"] / n, rec["max_s"] / n
        how = "measured"
      elif system in BATCHED:
        continue  # Its cost is not linear in N: never extrapolated.
      else:
        # The others train one variant at a time: their cost is linear in N.
        per, lo, hi = (largest["median_s"] / largest_n, largest["min_s"] / largest_n,
                       largest["max_s"] / largest_n)
        how = f"extrapolated from N={largest_n}"
      gflops = flops["flops"] / per / 1e9
      rows.append({
          "system": system, "label": LABELS[system], "n": n, "how": how,
          "s_per_variant": per, "min_s_per_variant": lo, "max_s_per_variant": hi,
          "total_s": per * n,
          "x_slower_than_vmapped": per / vmapped[n] if n in vmapped else math.nan,
          "gflops": gflops, "pct_of_matmul_peak": 100 * gflops / peak["median_gflops"],
          "peak_rss_mb": rec["peak_rss_mb"] if rec else math.nan,
          "rss_before_mb": rec["rss_before_mb"] if rec else math.nan,
          "first_call_overhead_s": rec["first_call_overhead_s"] if rec else math.nan,
          "compile_events_s": _compile_s(rec.get("compile_events")) if rec else math.nan,
          # Over the variants that have a final accuracy: a diverged one (JSON null) has none.
          "final_val_accuracy_mean": (
              statistics.fmean([a for a in rec["final_val_accuracy"]
                                if a is not None and math.isfinite(a)] or [math.nan])
              if rec else math.nan),
      })
  return {"rows": rows, "checks": checks(cfg, records),
          "targets": targets(cfg, records, rows, peak)}


def checks(cfg: dict, records: dict) -> list[dict]:
  """Correctness: a fast wrong answer is not a result."""
  runs = records["runs"]
  out = []
  # Every system at --check_lr (the N=1 run): final validation accuracy within the tolerance.
  acc = {r["system"]: r["final_val_accuracy"][0] for r in runs.values()
         if r["n"] == 1 and math.isclose(r["learning_rates"][0], cfg["check_lr"])}
  if len(acc) >= 2:
    spread = max(acc.values()) - min(acc.values())
    mid = statistics.median(acc.values())
    worst = max(acc, key=lambda s: abs(acc[s] - mid))
    out.append({
        "name": f"final val accuracy at lr {cfg['check_lr']:g}, all systems within "
                f"{cfg['acc_tolerance']:.2f}",
        "ok": spread <= cfg["acc_tolerance"],
        "detail": ", ".join(f"{s} {a:.4f}" for s, a in acc.items())
                  + f"; spread {spread:.4f}" + ("" if spread <= cfg["acc_tolerance"]
                                                 else f"; farthest from the median: {worst}"),
        "accuracy": acc})
  else:
    out.append({"name": "final val accuracy at the check lr", "ok": None,
                "detail": "skipped: needs N=1 runs of at least two systems"})
  # vmapped against alone: the same computation, so the same answer at stable learning rates.
  for n in cfg["ns"]:
    a, b = runs.get(f"vmapped-{n}"), runs.get(f"loop-{n}")
    if not a or not b:
      continue
    diffs = [abs(x - y) for lr, x, y in zip(a["learning_rates"], a["final_val_accuracy"],
                                             b["final_val_accuracy"]) if lr <= 1e-2]
    if diffs:
      out.append({"name": f"vmapped = alone at N={n} (lr <= 1e-2), final val accuracy within 0.01",
                  "ok": max(diffs) <= 0.01, "detail": f"largest difference {max(diffs):.4f}"})
  # The hand-vectorized peers are seeded as their one-at-a-time counterparts: at N = 1 they
  # train the same model on the same minibatches, so their losses agree to float rounding.
  for batched, single in (("jaxsweep", "flax"), ("torchvmap", "torch")):
    a, b = runs.get(f"{batched}-1"), runs.get(f"{single}-1")
    if a and b and a["final_val_loss"][0] is not None and b["final_val_loss"][0] is not None:
      rel = abs(a["final_val_loss"][0] - b["final_val_loss"][0]) / abs(b["final_val_loss"][0])
      out.append({"name": f"{batched} = {single} at N=1 (same init and minibatches): final val "
                          "loss within 1e-3 relative",
                  "ok": rel <= 1e-3, "detail": f"relative difference {rel:.2g}"})
  # Their accuracies against lr_jax's at the same learning rates (other inits, other orders:
  # within noise, not equal).
  for system in ("jaxsweep", "torchvmap"):
    for n in cfg["ns"]:
      a, b = runs.get(f"vmapped-{n}"), runs.get(f"{system}-{n}")
      if not a or not b:
        continue
      diffs = [abs(x - y) for lr, x, y in zip(a["learning_rates"], a["final_val_accuracy"],
                                               b["final_val_accuracy"])
               if lr <= 1e-2 and x is not None and y is not None]
      if diffs:
        mean = statistics.fmean(diffs)
        out.append({"name": f"{system} ~ vmapped at N={n} (lr <= 1e-2): final val accuracy, mean "
                            f"difference within {cfg['acc_tolerance']:.2f}, largest within "
                            f"{2 * cfg['acc_tolerance']:.2f}",
                    "ok": mean <= cfg["acc_tolerance"] and max(diffs) <= 2 * cfg["acc_tolerance"],
                    "detail": f"mean difference {mean:.4f}, largest {max(diffs):.4f}"})
  for err in records["errors"]:
    out.append({"name": "measurement ran", "ok": False, "detail": err.splitlines()[0]})
  return out


def targets(cfg: dict, records: dict, rows: list[dict], peak: dict) -> list[dict]:
  """The performance targets, each with the measured figure and PASS/MISS."""
  out = []
  at = {(r["system"], r["n"]): r for r in rows}
  n = cfg["target_n"]
  for system, factor in SPEEDUP_TARGETS:
    r = at.get((system, n))
    if r is None or not math.isfinite(r["x_slower_than_vmapped"]):
      continue
    # What the target asks of vmapped, against what this CPU's matmuls can do at all.
    needed = factor * r["gflops"]
    out.append({"name": f"N={n}: vmapped >= {factor:g}x faster per variant than {LABELS[system]}",
                "ok": r["x_slower_than_vmapped"] >= factor,
                "measured": f"{r['x_slower_than_vmapped']:.3g}x"
                            + ("" if r["how"] == "measured" else f" ({r['how']})")
                            + f"; needs vmapped at {needed:.3g} GFLOP/s, "
                              f"{100 * needed / peak['median_gflops']:.0f}% of the matmul peak"})
  r, f = at.get(("vmapped", n)), at.get(("jaxsweep", n))
  if r and f:
    ratio = r["s_per_variant"] / f["s_per_variant"]
    out.append({"name": f"N={n}: vmapped <= {YARDSTICK_FACTOR:g}x {LABELS['jaxsweep']} per "
                        "variant (what lr_jax's features cost)",
                "ok": ratio <= YARDSTICK_FACTOR,
                "measured": f"{ratio:.3g}x ({r['s_per_variant']:.4g} against "
                            f"{f['s_per_variant']:.4g} s per variant)"})
  if r:
    out.append({"name": f"N={n}: vmapped >= 50% of the float32 matmul peak "
                        f"({peak['median_gflops']:.1f} GFLOP/s)",
                "ok": r["pct_of_matmul_peak"] >= 50,
                "measured": f"{r['pct_of_matmul_peak']:.1f}% ({r['gflops']:.2f} GFLOP/s)"})
  sweep = records.get("default_sweep", {})
  label = "default sweep"
  if cfg["quick"]:
    label += " (quick: the quick workload's program, cached)"
  for state, limit, what in (("cold", 5.0, "cold compile"), ("warm", 1.0, "warm start")):
    rec = sweep.get(state)
    if rec:
      c = rec["compile_events"]
      out.append({"name": f"{label}: {what} <= {limit:g} s (trace + lower + XLA compile or cache "
                          "load, summed over every program)",
                  "ok": _compile_s(c) <= limit,
                  "measured": f"{_compile_s(c):.2f} s (trace {c['trace_s']:.2f}, lower "
                              f"{c['lower_s']:.2f}, compile/load {c['compile_s']:.2f}; process "
                              f"{rec['process_wall_s']:.1f} s)"})
  if sweep.get("cold"):
    rss = max(sweep[s]["peak_rss_mb"] for s in ("cold", "warm") if s in sweep)
    out.append({"name": f"{label}: peak RSS < 1 GB", "ok": rss < 1024,
                "measured": f"{rss:.0f} MB"})
  mem = [(r["n"], r["peak_rss_mb"]) for r in rows if r["system"] == "vmapped"
         and r["how"] == "measured"]
  if len(mem) >= 3:
    out.append(memory_linearity(mem))
  return out


def memory_linearity(points: list[tuple[int, float]]) -> dict:
  """Is peak RSS a straight line in N? Least squares; every residual within max(10%, 32 MB)."""
  ns, ys = [p[0] for p in points], [p[1] for p in points]
  mn, my = statistics.fmean(ns), statistics.fmean(ys)
  slope = sum((x - mn) * (y - my) for x, y in zip(ns, ys)) / sum((x - mn) ** 2 for x in ns)
  residual = max(abs(y - (my + slope * (x - mn))) for x, y in zip(ns, ys))
  allowed = max(0.1 * (max(ys) - min(ys)), 32.0)
  return {"name": "vmapped peak RSS linear in N (least squares, residuals <= max(10% of the "
                  "range, 32 MB))",
          "ok": residual <= allowed,
          "measured": f"{slope * 1024:.0f} KB per variant, intercept {my - slope * mn:.0f} MB, "
                      f"largest residual {residual:.0f} MB"}


# ----------------------------------------------------------------------------- HLO


_DTYPE_BYTES = {"f32": 4, "s32": 4, "u32": 4, "pred": 1, "f16": 2, "bf16": 2, "f64": 8, "s64": 8}


def _shape_bytes(shape: str) -> int:
  """Bytes of an HLO array shape such as `f32[1,64,128]{2,1,0}`."""
  m = re.match(r"(\w+)\[([\d,]*)\]", shape)
  if not m:
    return 0
  size = math.prod(int(d) for d in m.group(2).split(",") if d)
  return size * _DTYPE_BYTES.get(m.group(1), 4)


def hlo_summary(dump_dir: str) -> dict:
  """What the hottest loop of lr_jax's optimized program executes per iteration.

  Reads XLA's text dump (`--xla_dump_to --xla_dump_hlo_as_text`) of the module named like
  `jit_run` (the largest module otherwise), finds its `while` loops and picks the body with the
  most matmuls (dots, directly or inside fusions): the minibatch step. Counts its operations,
  lists its matmul output shapes and the bytes its `copy` ops move -- each fusion is a separate
  pass over memory and a separate kernel launch on the CPU.
  """
  files = [f for f in os.listdir(dump_dir) if f.endswith("after_optimizations.txt")]
  if not files:
    return {"error": f"no optimized HLO in {dump_dir}"}
  runs = [f for f in files if "jit_run" in f]
  path = os.path.join(dump_dir, max(runs or files,
                                    key=lambda f: os.path.getsize(os.path.join(dump_dir, f))))
  with open(path) as f:
    text = f.read()
  comps, name, body = {}, None, []
  for line in text.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if name is None and head:
      name, body = head.group(1), []
    elif name is not None and line.startswith("}"):
      comps[name] = body
      name = None
    elif name is not None:
      body.append(line)
  op = re.compile(r"= (\S+) ([a-z][\w-]*)\(")

  def dots(lines):
    found = []
    for line in lines:
      m = op.search(line)
      if m and m.group(2) in ("dot", "convolution"):
        found.append(m.group(1))
      for callee in re.findall(r"calls=%([\w.\-]+)", line):
        found += dots(comps.get(callee, []))
    return found

  loops = [re.search(r"body=%([\w.\-]+)", line).group(1)
           for lines in comps.values() for line in lines if " while(" in line]
  if not loops:
    return {"module": os.path.basename(path), "error": "no while loop"}
  hot = max(loops, key=lambda b: len(dots(comps.get(b, []))))
  ops: dict[str, int] = {}
  copy_bytes = 0
  for line in comps[hot]:
    m = op.search(line)
    if m:
      ops[m.group(2)] = ops.get(m.group(2), 0) + 1
      if m.group(2) == "copy":
        copy_bytes += _shape_bytes(m.group(1))
  return {"module": os.path.basename(path), "hot_loop": hot,
          "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
          "matmul_outputs": [re.sub(r"\{.*", "", d) for d in dots(comps[hot])],
          "copy_mb_per_iteration": copy_bytes / 2**20,
          "kernels_per_iteration": sum(v for k, v in ops.items()
                                       if k not in ("get-tuple-element", "tuple", "parameter",
                                                    "constant", "bitcast"))}


def dump_hlo(cfg: dict, runner: Runner) -> dict:
  """Compiles lr_jax's program at --target_n with XLA's dump on (a fresh process); summarizes it."""
  dump = os.path.join(runner.out, "xla_dump")
  shutil.rmtree(dump, ignore_errors=True)
  cache = os.path.join(runner.out, "cache", "xla-dump")
  shutil.rmtree(cache, ignore_errors=True)  # A cache hit would compile, and dump, nothing.
  n = cfg["target_n"]
  spec = {"data": os.path.join(runner.out, "data.npz"), "epochs": 1,
          "batch_size": cfg["batch_size"], "seed": 0, "system": "vmapped",
          "learning_rates": learning_rates(n, cfg["check_lr"]), "repeats": 1}
  flags_before = os.environ.get("XLA_FLAGS")
  os.environ["XLA_FLAGS"] = f"{flags_before or ''} --xla_dump_to={dump} --xla_dump_hlo_as_text"
  in_process, runner.in_process = runner.in_process, False  # XLA reads its flags at start.
  try:
    print(f"dumping XLA's HLO of lr_jax's program at N={n} ...", flush=True)
    rec = runner.measure(f"xla-dump-{n}", spec, sys.executable, "benchmarks.throughput", cache)
  finally:
    runner.in_process = in_process
    if flags_before is None:
      os.environ.pop("XLA_FLAGS")
    else:
      os.environ["XLA_FLAGS"] = flags_before
  if "error" in rec:
    return {"error": rec["error"]}
  return dict(hlo_summary(dump), n=n, dump_dir=dump)


# ----------------------------------------------------------------------------- reporting


def _verdict(ok) -> str:
  return "-" if ok is None else ("PASS" if ok else "MISS")


def report(cfg: dict, result: dict) -> dict[str, str]:
  """The Markdown sections (named as the markers of BENCHMARKS.md)."""
  a, peak, flops = result["analysis"], result["matmul_peak"], result["flops"]
  machine = result["machine"]
  noise = ("**Quick mode: 1 epoch, 1 repeat, one process and one shared compilation cache; these "
           "numbers only show that the script runs.**\n\n" if cfg["quick"] else "")
  sections = {}
  facts = [("CPU", machine.get("model_name", "?")), ("cores (os.cpu_count)", machine["cpu_count"]),
           ("memory", f"{machine.get('memory_gib', '?')} GiB"), ("SIMD", machine.get("simd", "?")),
           ("OS", machine["platform"]), ("Python", machine["python"]),
           ("load average at start / end", f"{machine['loadavg']} / {result['loadavg_end']}")]
  facts += [(k, v) for k, v in result["versions"].items()]
  facts += [("float32 matmul peak (jnp.dot "
             f"{peak['size']}x{peak['size']}, median of {peak['reps']})",
             f"{peak['median_gflops']:.1f} GFLOP/s (best {peak['best_gflops']:.1f})"),
            ("FLOPs per variant (6 x MACs x examples, + validation)",
             f"{flops['flops'] / 1e9:.3f} GFLOP ({flops['train_flops'] / 1e9:.3f} training + "
             f"{flops['val_flops'] / 1e9:.3f} validation)")]
  sections["throughput:machine"] = noise + markdown_table(["", ""], facts)

  rows = [[r["label"], r["n"], fmt(r["s_per_variant"], 4),
           f"{fmt(r['min_s_per_variant'])}–{fmt(r['max_s_per_variant'])}",
           fmt(r["x_slower_than_vmapped"]), fmt(r["gflops"]), fmt(r["pct_of_matmul_peak"]),
           fmt(r["peak_rss_mb"], 4), fmt(r["final_val_accuracy_mean"]), r["how"]]
          for r in sorted(a["rows"], key=lambda r: (r["n"], SYSTEMS.index(r["system"])))]
  sections["throughput:per_variant"] = noise + markdown_table(
      ["system", "N", "s / variant (median)", "min–max", "× vmapped", "GFLOP/s", "% matmul peak",
       "peak RSS (MB)", "mean final val acc", "how"], rows)

  compile_rows = []
  for system in cfg["systems"]:
    cold = next((r for k, r in sorted(result["records"]["runs"].items(), key=lambda kv: kv[1]["n"])
                 if r["system"] == system), None)
    if cold is None:
      continue
    warm = result["records"]["warm"].get(system)
    for state, rec in (("cold", cold), ("warm", warm)):
      if rec is None:
        continue
      ev = rec.get("compile_events")
      notes = {
          "loop": "one program for every lr",
          "flax": f"{rec['facts'].get('traces', {}).get('train_step')} train_step traces (full "
                  "and last partial batch), whatever N; a naive `optax.adam(lr)` would "
                  "recompile per lr",
          "torch": f"eager: nothing to compile; {rec['facts'].get('threads')} thread(s)",
          "keras": "a new tf.function per model, inside every variant's time; "
                   f"jit_compile={rec['facts'].get('jit_compile')}",
          "jaxsweep": "one program per N",
          "torchvmap": f"eager torch.func: nothing to compile; {rec['facts'].get('threads')} "
                       "thread(s)",
      }
      note = notes.get(system, "") if state == "cold" else ""
      compile_rows.append([LABELS[system], rec["n"], state if system not in PEERS else "-",
                           fmt(rec["first_call_overhead_s"]),
                           fmt(ev["trace_s"]) if ev else "-", fmt(ev["lower_s"]) if ev else "-",
                           fmt(ev["compile_s"]) if ev else "-",
                           f"{ev['cache_hits']}/{ev['cache_misses']}" if ev else "-", note])
  sections["throughput:compile"] = noise + markdown_table(
      ["system", "N", "cache", "first-call overhead (s)", "trace (s)", "lower (s)",
       "XLA compile / cache load (s)", "cache hits/misses", "note"], compile_rows)

  sweep = result["records"].get("default_sweep", {})
  sweep_rows = []
  for state in ("cold", "warm"):
    rec = sweep.get(state)
    if rec:
      ev = rec["compile_events"]
      sweep_rows.append([state, rec["num_variants"], fmt(rec["process_wall_s"]),
                         fmt(_compile_s(ev)), fmt(ev["trace_s"]), fmt(ev["lower_s"]),
                         fmt(ev["compile_s"]), fmt(rec["peak_rss_mb"], 4)])
  sections["throughput:default_sweep"] = noise + (
      f"`python -m experiments.lr_sweep {' '.join(sweep.get('args', []))}`\n\n" + markdown_table(
          ["cache", "variants", "process wall (s)", "trace+lower+compile (s)", "trace (s)",
           "lower (s)", "XLA compile / cache load (s)", "peak RSS (MB)"], sweep_rows)
      if sweep_rows else "not measured")

  verdicts = [[c["name"], c.get("measured", c.get("detail", "")), _verdict(c["ok"])]
              for c in a["targets"]]
  verdicts += [[c["name"], c.get("detail", ""), "-" if c["ok"] is None else
                ("PASS" if c["ok"] else "FAIL")] for c in a["checks"]]
  sections["throughput:targets"] = noise + markdown_table(["target / check", "measured", ""],
                                                          verdicts)
  return sections


def _csv(rows: list[dict]) -> str:
  import csv
  import io
  if not rows:
    return ""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def config_from_flags() -> dict:
  quick = FLAGS.quick
  unknown = sorted(set(FLAGS.systems) - set(SYSTEMS))
  if unknown:
    raise app.UsageError(f"unknown system {unknown[0]!r}; valid choices: {', '.join(SYSTEMS)}")
  cfg = {
      "quick": quick, "full": FLAGS.full, "ns": _ints(FLAGS.ns), "peer_ns": _ints(FLAGS.peer_ns),
      "systems": [s for s in SYSTEMS if s in FLAGS.systems], "epochs": FLAGS.epochs,
      "batch_size": FLAGS.batch_size, "repeats": FLAGS.repeats, "check_lr": FLAGS.check_lr,
      "acc_tolerance": FLAGS.acc_tolerance, "target_n": FLAGS.target_n, "warm": FLAGS.warm,
      "default_sweep": FLAGS.default_sweep, "matmul_size": FLAGS.matmul_size,
      "matmul_reps": FLAGS.matmul_reps, "peers_venv": FLAGS.peers_venv,
      "torch_threads": FLAGS.torch_threads,
  }
  if FLAGS.full:
    cfg["peer_ns"] = sorted(set(cfg["peer_ns"]) | {64})
  if quick:
    # Explicit flags still win over the quick defaults (the test narrows the systems this way).
    given = lambda name: FLAGS[name].present
    cfg.update({"ns": cfg["ns"] if given("ns") else [1, 2],
                "peer_ns": cfg["peer_ns"] if given("peer_ns") else [1],
                "systems": (cfg["systems"] if given("systems")
                            else ["vmapped", "loop", "flax", "jaxsweep"]),
                "epochs": cfg["epochs"] if given("epochs") else 1,
                "repeats": cfg["repeats"] if given("repeats") else 1,
                # One epoch is far from converged: only a broken system is this far off.
                "acc_tolerance": cfg["acc_tolerance"] if given("acc_tolerance") else 0.15,
                "matmul_size": cfg["matmul_size"] if given("matmul_size") else 1024,
                "matmul_reps": cfg["matmul_reps"] if given("matmul_reps") else 3,
                "warm": False})
    cfg["target_n"] = cfg["target_n"] if given("target_n") else max(cfg["ns"])
  return cfg


def main(argv):
  if benchmarks.run_as_worker(argv, FLAGS.worker, run_worker):
    return
  cfg = config_from_flags()
  out = FLAGS.out
  os.makedirs(out, exist_ok=True)
  if cfg["quick"]:
    shutil.rmtree(os.path.join(out, "cache"), ignore_errors=True)
    # Before anything compiles here: JAX reads the cache setting once, at its first compile.
    from lr_jax import cli
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cli.enable_compilation_cache(
        os.path.join(out, "cache", "shared"))
  machine = benchmarks.machine_info()
  print(f"machine: {machine.get('model_name', '?')}, {machine['cpu_count']} cores, load average "
        f"{machine['loadavg']}", flush=True)
  sizes = write_data(os.path.join(out, "data.npz"))
  flops = flops_per_variant(sizes, (128,), cfg["epochs"])
  peak = matmul_peak(cfg["matmul_size"], cfg["matmul_reps"])
  print(f"float32 matmul peak: {peak['median_gflops']:.1f} GFLOP/s; workload P: "
        f"{flops['flops'] / 1e9:.3f} GFLOP per variant", flush=True)
  runner = Runner(out, FLAGS.worker_timeout_s, in_process=cfg["quick"])
  records = collect(cfg, runner)
  if FLAGS.xla_dump:
    records["hlo"] = dump_hlo(cfg, runner)
  versions = benchmarks.package_versions(["jax", "jaxlib", "flax", "optax", "numpy"])
  for rec in records["runs"].values():
    if rec["system"] in PEERS:
      versions.update({k: v for k, v in rec["facts"].items()
                       if k in ("torch", "tensorflow", "keras")})
  result = {"config": cfg, "machine": machine, "versions": versions, "matmul_peak": peak,
            "flops": flops, "data": sizes, "records": records,
            "analysis": analyse(cfg, records, peak, flops), "loadavg_end": benchmarks.loadavg()}
  sections = report(cfg, result)
  benchmarks.write_json(os.path.join(out, "throughput.json"), result)
  benchmarks.write_text(os.path.join(out, "throughput.csv"), _csv(result["analysis"]["rows"]))
  benchmarks.write_text(os.path.join(out, "throughput.md"), benchmarks.sections_markdown(sections))
  print()
  for name, body in sections.items():
    print(f"## {name}\n{body}\n")
  failed = False
  for c in result["analysis"]["targets"]:
    print(f"{_verdict(c['ok'])}: {c['name']}: {c['measured']}")
  for c in result["analysis"]["checks"]:
    if c["ok"] is False:
      failed = True
    print(f"{'SKIP' if c['ok'] is None else 'PASS' if c['ok'] else 'FAIL'}: {c['name']}: "
          f"{c['detail']}")
  hlo = records.get("hlo")
  if hlo and "error" not in hlo:
    print(f"profile hint (N={hlo['n']}, {hlo['module']}): each minibatch step runs "
          f"{hlo['kernels_per_iteration']} kernels ({hlo['ops']}), matmuls "
          f"{', '.join(hlo['matmul_outputs'])}, and copies {hlo['copy_mb_per_iteration']:.1f} MB "
          f"of loop state; the dump is in {hlo['dump_dir']}")
  elif hlo:
    print(f"profile hint failed: {hlo['error']}")
  if FLAGS.fill_doc:
    missing = benchmarks.fill_markers(benchmarks.DOC, sections)
    print(f"filled {benchmarks.DOC}"
          + (f" (no markers for {', '.join(missing)})" if missing else ""))
  print(f"wrote {out}/throughput.json, throughput.csv, throughput.md")
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
