r"""How cost grows: seconds per variant-epoch and memory against variants, rows, width, depth.

    python -m benchmarks.scaling --out runs/benchmarks/scaling --fill_doc   # ~7 min, 2 cores
    python -m benchmarks.scaling --quick --out /tmp/scaling                 # checks that it runs

Issue 23, item 3. Workload P's model and optimizer (MLP, ReLU, Adam, batch 32, no early
stopping; `benchmarks.throughput`) with `--epochs` epochs, learning rates log-spaced from 1e-4
to 1e-2 (none diverges, so every system trains every variant-epoch it is timed for), and:

  (a) variants  N in --ns on digits, MLP(128). Three systems, interleaved round by round in one
      process per N after an untimed warm-up (compiling) of each: `lr_jax` (its default
      chunks, `lr_jax.engine.default_max_variants`), `hand` (`peers.train_jax_sweep`, the
      hand-written `jit(vmap(scan))`, all N in one program) and, where the engine splits N
      into chunks, `one_chunk` (lr_jax with `RunOptions(max_variants_per_chunk=N)`): what
      chunking costs or saves. The chunk layout the engine chose is recorded at every N.
  (b) rows      training rows in --rows of a synthetic classification set (Gaussian blobs, 64
      features, 10 classes, --val_rows validation rows), lr_jax at N = --fixed_n, MLP(128).
  (c) width     MLP(w) for w in --widths, and depth: MLP(--depth_width x d) for d in --depths,
      on digits, lr_jax at N = --fixed_n.

Every point runs in a fresh process (`throughput.Runner`), so its memory is its own. Memory
is Linux resident memory (RSS), not JAX's: a CPU device reports no memory stats. Two readings:
`peak_rss_mb`, the process's high-water mark (VmHWM: imports, data, compiling, running), and
`run_rss_growth_mb`, a timed run's high-water mark over the RSS just before it (VmHWM reset
through /proc/self/clear_refs): what training N variants needs beyond what the process holds.
The workers run with glibc's mmap threshold fixed at 1 MiB (MALLOC_MMAP_THRESHOLD_), so a
freed large buffer leaves RSS instead of being reused unseen by the next run.

Speed: seconds per variant-epoch = a run's wall time / (N x epochs), the median of --repeats
runs; GFLOP/s from `throughput.flops_per_variant` (6 x MACs per training example, 2 per
validation example) against the float32 matmul peak (`throughput.matmul_peak`) measured in the
same run. Writes `<out>/scaling.json`, `<out>/scaling.md` and the figures
`scaling_variants.png`, `scaling_rows.png`, `scaling_width.png` into --out; --fill_doc pastes
the table into BENCHMARKS.md (marker `scaling`) and copies the JSON and figures beside it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from absl import app, flags

import benchmarks
# Workload P, matmul_peak, Runner, and the flags --out, --quick, --ns ((a)'s variants),
# --epochs, --batch_size, --repeats, --matmul_size, --matmul_reps, --worker, --worker_timeout_s
# and --fill_doc.
from benchmarks.throughput import (Runner, flops_per_variant, matmul_peak, workload_experiment,
                                   write_data)

flags.DEFINE_list("rows", ["100", "300", "1000", "3000", "10000", "30000", "100000"],
                  "(b) training rows of the synthetic data set.")
flags.DEFINE_list("widths", ["16", "32", "64", "128", "256", "512", "1024"],
                  "(c) hidden widths of a one-layer MLP.")
flags.DEFINE_list("depths", ["1", "2", "3", "4"], "(c) hidden layers of --depth_width units.")
flags.DEFINE_integer("depth_width", 128, "(c) width of each hidden layer of the depth series.")
flags.DEFINE_integer("fixed_n", 16, "(b), (c): variants of each point.", lower_bound=1)
flags.DEFINE_integer("val_rows", 1000, "(b) validation rows of the synthetic data set.")
FLAGS = flags.FLAGS
FLAGS.set_default("out", "runs/benchmarks/scaling")
FLAGS.set_default("epochs", 4)
FLAGS.set_default("ns", ["1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024"])

LR_MIN, LR_MAX = 1e-4, 1e-2
FEATURES, CLASSES = 64, 10
FIGURES = ("scaling_variants.png", "scaling_rows.png", "scaling_width.png")
SYSTEMS = {"lr_jax": "lr_jax (default chunks)", "hand": "hand-written jit(vmap(scan))",
           "one_chunk": "lr_jax, all N in one chunk"}
MALLOC_MMAP_THRESHOLD = 1 << 20


# ----------------------------------------------------------------------------- memory


def _status_kb(field: str) -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return float(line.split()[1])
  return float("nan")


_PROCESS_PEAK_KB = [0.0]  # The largest VmHWM read before a reset.


def process_peak_rss_mb() -> float:
  """This process's peak RSS since it started, in MiB, across `reset_peak_rss` calls."""
  return max(_PROCESS_PEAK_KB[0], _status_kb("VmHWM")) / 1024


def reset_peak_rss() -> bool:
  """Resets this process's VmHWM to its current RSS (Linux >= 4.0); False where refused."""
  _PROCESS_PEAK_KB[0] = max(_PROCESS_PEAK_KB[0], _status_kb("VmHWM"))
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def timed_with_memory(fn: Callable[[], object]) -> tuple[float, float]:
  """(wall seconds, MiB of peak RSS over the RSS before) of one call of `fn`."""
  reset = reset_peak_rss()
  before = benchmarks.current_rss_mb()
  t0 = time.perf_counter()
  fn()
  wall = time.perf_counter() - t0
  growth = _status_kb("VmHWM") / 1024 - before if reset else float("nan")
  return wall, growth


# ----------------------------------------------------------------------------- data


def blobs(rows: int, val_rows: int, seed: int = 0):
  """Gaussian blobs: `x` [rows, 64] float32, `y` [rows] int32, and a validation split.

  Ten class centers drawn from N(0, 0.25 I), each row its center plus N(0, I) noise: a
  problem an MLP learns part of in a few epochs, whatever the rows.
  """
  import numpy as np
  rng = np.random.default_rng(seed)
  centers = rng.normal(0.0, 0.5, (CLASSES, FEATURES)).astype(np.float32)

  def split(n):
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    y[:CLASSES] = np.arange(CLASSES)  # Every class in every split, however few the rows.
    return centers[y] + rng.normal(0.0, 1.0, (n, FEATURES)).astype(np.float32), y

  (x, y), (x_val, y_val) = split(rows), split(val_rows)
  return x, y, x_val, y_val


# ----------------------------------------------------------------------------- the worker


def _experiment(spec: dict):
  """The point's lr_jax `Experiment` and its sizes for `flops_per_variant`."""
  import lr_jax
  exp = workload_experiment(spec["epochs"], spec["batch_size"])
  exp = exp.replace(model__hidden=tuple(spec["hidden"]))
  if spec["rows"] is None:
    return exp, spec["digits"]
  x, y, x_val, y_val = blobs(spec["rows"], spec["val_rows"])
  dataset = lr_jax.Dataset.from_arrays(x, y, x_val, y_val, name=f"blobs{spec['rows']}")
  sizes = {"n_train": spec["rows"], "n_val": spec["val_rows"], "features": FEATURES,
           "classes": CLASSES}
  return exp.replace(data__dataset=dataset), sizes


def learning_rates(n: int) -> list[float]:
  """1e-3 alone for N = 1, else N log-spaced from LR_MIN to LR_MAX (none diverges)."""
  from lr_jax import log_spaced
  return [1e-3] if n == 1 else [float(x) for x in log_spaced(LR_MIN, LR_MAX, n)]


def engine_layout(exp, grid, options) -> dict:
  """The chunks the engine plans for this sweep: streams x points per chunk, and how many.

  Read from the engine's own plan (`lr_jax.engine.loop._plan_group`, which applies
  `default_max_variants` or `RunOptions.max_variants_per_chunk`), so it is the layout that runs.
  """
  from lr_jax import engine
  from lr_jax.engine import loop
  group = engine.plan_sweep(exp, grid)[0]
  plan = loop._plan_group(group, 0, options)  # pylint: disable=protected-access
  return {"streams": plan.s_c, "points": plan.h_c, "chunk": plan.s_c * plan.h_c,
          "chunks": len(plan.blocks)}


def run_worker(spec: dict) -> dict:
  """One point: warm up each system, then `repeats` interleaved timed rounds.

  Args:
    spec: `n`, `hidden`, `rows` (None: digits), `val_rows`, `epochs`, `batch_size`,
      `repeats`, `systems` (keys of SYSTEMS), `data` (digits .npz for `hand`), `digits`
      (digits' sizes).

  Returns:
    Per system: `runs_s`, `median_s`, `s_per_variant_epoch`, `run_rss_growth_mb`,
    `warmup_s`; the engine's `layout` per lr_jax system; `process_peak_rss_mb`.
  """
  import lr_jax
  from benchmarks import peers
  n, epochs = spec["n"], spec["epochs"]
  exp, sizes = _experiment(spec)
  lrs = learning_rates(n)
  grid = lr_jax.Grid(learning_rates=tuple(lrs), seeds=(0,))
  options = {"lr_jax": lr_jax.RunOptions(),
             "one_chunk": lr_jax.RunOptions(max_variants_per_chunk=n)}
  executed = {}

  def sweep(name):
    def run():
      result = lr_jax.run_sweep(exp, grid, options=options[name])
      executed[name] = result.timings[0]["variant_epochs_executed"]
    return run

  fns = {name: sweep(name) for name in spec["systems"] if name in options}
  if "hand" in spec["systems"]:
    data = peers.load_data(spec["data"])
    fns["hand"] = lambda: peers.train_jax_sweep(data, lrs, epochs=epochs,
                                                batch_size=spec["batch_size"], seed=0)
  record = {"n": n, "hidden": list(spec["hidden"]), "rows": spec["rows"], "sizes": sizes,
            "learning_rates": [lrs[0], lrs[-1]], "systems": {}}
  for name, fn in fns.items():  # Untimed: compiles.
    wall, growth = timed_with_memory(fn)
    record["systems"][name] = {"warmup_s": wall, "warmup_rss_growth_mb": growth, "runs_s": [],
                               "rss_growth_mb": []}
    if name in options:
      record["systems"][name]["layout"] = engine_layout(exp, grid, options[name])
  for _ in range(spec["repeats"]):
    for name, fn in fns.items():
      wall, growth = timed_with_memory(fn)
      record["systems"][name]["runs_s"].append(wall)
      record["systems"][name]["rss_growth_mb"].append(growth)
  for name, rec in record["systems"].items():
    rec["median_s"] = statistics.median(rec["runs_s"])
    rec["s_per_variant_epoch"] = rec["median_s"] / (n * epochs)
    rec["run_rss_growth_mb"] = max(rec["rss_growth_mb"])
    if name in executed:  # Lanes x epochs: N x epochs, plus any padding of the last chunk.
      rec["variant_epochs_executed"] = executed[name]
  record["process_peak_rss_mb"] = process_peak_rss_mb()
  return record


# ----------------------------------------------------------------------------- the parent


def points(cfg: dict) -> list[dict]:
  """Every point of the three series, in the order they run: its `series`, `x` and the
  worker's settings (`run_worker`'s spec, less the data)."""
  base = {"epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "repeats": cfg["repeats"],
          "val_rows": cfg["val_rows"], "rows": None, "hidden": [128]}
  out = [{"series": "variants", "x": n, **base, "n": n, "systems": ["lr_jax", "hand"]}
         for n in cfg["ns"]]
  out += [{"series": "rows", "x": r, **base, "n": cfg["fixed_n"], "rows": r,
           "systems": ["lr_jax"]} for r in cfg["rows"]]
  out += [{"series": "width", "x": w, **base, "n": cfg["fixed_n"], "hidden": [w],
           "systems": ["lr_jax"]} for w in cfg["widths"]]
  out += [{"series": "depth", "x": d, **base, "n": cfg["fixed_n"],
           "hidden": [cfg["depth_width"]] * d, "systems": ["lr_jax"]} for d in cfg["depths"]]
  return out


def _needs_one_chunk(spec: dict) -> bool:
  """Whether the engine splits this (a) point into chunks (then `one_chunk` is measured too)."""
  import lr_jax
  exp, _ = _experiment(spec)
  grid = lr_jax.Grid(learning_rates=tuple(learning_rates(spec["n"])), seeds=(0,))
  return engine_layout(exp, grid, lr_jax.RunOptions())["chunks"] > 1


def collect(cfg: dict, runner: Runner, digits: dict, data_path: str) -> list[dict]:
  """Runs every point (a fresh process each, in-process for --quick); returns the records."""
  records = []
  os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MALLOC_MMAP_THRESHOLD)  # The workers inherit it.
  for spec in points(cfg):
    spec = dict(spec, data=data_path, digits=digits)
    if spec["series"] == "variants" and _needs_one_chunk(spec):
      spec["systems"] = spec["systems"] + ["one_chunk"]
    name = f"{spec['series']}-{spec['x']}"
    print(f"{name}: N={spec['n']}, hidden={tuple(spec['hidden'])}, "
          f"rows={spec['rows'] or digits['n_train']}, {', '.join(spec['systems'])} ...",
          flush=True)
    t0 = time.perf_counter()
    if runner.in_process:
      rec = run_worker(spec)
    else:
      spec_path = os.path.join(runner.out, "specs", name + ".json")
      result = os.path.join(runner.out, "specs", name + ".result.json")
      benchmarks.write_json(spec_path, dict(spec, result=result))
      rec = runner.spawn(name, [sys.executable, "-m", "benchmarks.scaling",
                                f"--worker={spec_path}"], None, result)
    if "error" in rec:
      raise RuntimeError(rec["error"])
    rec.update(series=spec["series"], x=spec["x"], wall_s=time.perf_counter() - t0,
               loadavg=benchmarks.loadavg())
    for name_, sys_rec in rec["systems"].items():
      print(f"  {name_}: {sys_rec['s_per_variant_epoch'] * 1e3:.3f} ms per variant-epoch"
            + (f", chunks of {sys_rec['layout']['chunk']} x {sys_rec['layout']['chunks']}"
               if "layout" in sys_rec else ""), flush=True)
    records.append(rec)
  return records


def analyse(records: Sequence[dict], peak: dict, epochs: int) -> list[dict]:
  """One row per point and system: s per variant-epoch, GFLOP/s, % of peak, memory, chunks."""
  rows = []
  for rec in records:
    per_epoch = flops_per_variant(rec["sizes"], rec["hidden"], epochs)["flops"] / epochs
    for name, s in rec["systems"].items():
      gflops = per_epoch / s["s_per_variant_epoch"] / 1e9
      layout = s.get("layout")
      rows.append({
          "series": rec["series"], "x": rec["x"], "system": name, "n": rec["n"],
          "hidden": rec["hidden"], "rows": rec["sizes"]["n_train"],
          "s_per_variant_epoch": s["s_per_variant_epoch"],
          "min_s_per_variant_epoch": min(s["runs_s"]) / (rec["n"] * epochs),
          "max_s_per_variant_epoch": max(s["runs_s"]) / (rec["n"] * epochs),
          "gflop_per_variant_epoch": per_epoch / 1e9, "gflops": gflops,
          "pct_of_matmul_peak": 100 * gflops / peak["median_gflops"],
          "chunk": layout["chunk"] if layout else rec["n"],
          "chunks": layout["chunks"] if layout else 1,
          "run_rss_growth_mb": s["run_rss_growth_mb"],
          "process_peak_rss_mb": rec["process_peak_rss_mb"], "warmup_s": s["warmup_s"]})
  return rows


def ratios(rows: Sequence[dict]) -> list[dict]:
  """Per N of (a): lr_jax / hand and lr_jax / one chunk, per variant-epoch (same process)."""
  by = {(r["x"], r["system"]): r for r in rows if r["series"] == "variants"}
  out = []
  for (n, system), r in sorted(by.items()):
    if system != "lr_jax":
      continue
    row = {"n": n, "lr_jax_over_hand": r["s_per_variant_epoch"]
           / by[n, "hand"]["s_per_variant_epoch"] if (n, "hand") in by else None}
    if (n, "one_chunk") in by:
      row["lr_jax_over_one_chunk"] = (r["s_per_variant_epoch"]
                                      / by[n, "one_chunk"]["s_per_variant_epoch"])
    out.append(row)
  return out


def table(result: dict) -> str:
  """The Markdown section: the machine, then one row per point and system."""
  fmt = benchmarks.fmt
  machine, peak = result["machine"], result["matmul_peak"]
  noise = ("**Quick mode: tiny grid, 1 epoch, 1 repeat, one process; these numbers only show "
           "that the script runs.**\n\n" if result["config"]["quick"] else "")
  head = (f"Machine: {machine.get('model_name', '?')}, {machine['cpu_count']} cores, "
          f"{machine.get('memory_gib', '?')} GiB, L3 {machine.get('l3_cache', '?')}; CPU flags "
          f"{' '.join(result['cpu_flags'])}; float32 matmul peak (jnp.dot {peak['size']}², "
          f"median of {peak['reps']}) **{peak['median_gflops']:.1f} GFLOP/s** (best "
          f"{peak['best_gflops']:.1f}); jax {result['versions']['jax']}. Load average at start "
          f"{result['loadavg_start']}, at end {result['loadavg_end']}. {result['config']['epochs']}"
          f" epochs, median of {result['config']['repeats']} runs after a warm-up, batch "
          f"{result['config']['batch_size']}.\n\n")
  series = {"variants": "(a) N", "rows": "(b) rows", "width": "(c) width", "depth": "(c) depth"}
  body = [[series[r["series"]], r["x"], SYSTEMS[r["system"]], r["n"],
           "-".join(str(h) for h in r["hidden"]), r["rows"],
           f"{r['chunk']} × {r['chunks']}", fmt(r["s_per_variant_epoch"] * 1e3),
           f"{fmt(r['min_s_per_variant_epoch'] * 1e3)}–{fmt(r['max_s_per_variant_epoch'] * 1e3)}",
           fmt(r["gflops"]), fmt(r["pct_of_matmul_peak"]), fmt(r["run_rss_growth_mb"], 4),
           fmt(r["process_peak_rss_mb"], 4)] for r in result["rows"]]
  text = noise + head + benchmarks.markdown_table(
      ["series", "x", "system", "N", "hidden", "training rows", "variants per chunk × chunks",
       "ms / variant-epoch", "min–max", "GFLOP/s", "% matmul peak", "run RSS growth (MiB)",
       "process peak RSS (MiB)"], body)
  rat = [[r["n"], fmt(r["lr_jax_over_hand"]), fmt(r.get("lr_jax_over_one_chunk"))]
         for r in result["ratios"]]
  text += "\n\n" + benchmarks.markdown_table(
      ["(a) N", "lr_jax / hand-written", "lr_jax (chunked) / one chunk"], rat)
  return text


def figures(result: dict, out: str) -> list[str]:
  """The three figures: each a panel of ms per variant-epoch, of GFLOP/s with the matmul peak
  as a line, and of memory, against the series' x."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker  # pylint: disable=unused-import
  peak = result["matmul_peak"]["median_gflops"]
  rows = result["rows"]
  styles = {"lr_jax": ("C0", "o-"), "hand": ("C1", "s--"), "one_chunk": ("C2", "^:")}
  paths = []

  def draw(axes, series, xlabel):
    for system, (color, style) in styles.items():
      rs = sorted((r for r in rows if r["series"] == series and r["system"] == system),
                  key=lambda r: r["x"])
      if not rs:
        continue
      x = [r["x"] for r in rs]
      label = SYSTEMS[system]
      axes[0].plot(x, [r["s_per_variant_epoch"] * 1e3 for r in rs], style, color=color,
                   label=label)
      axes[1].plot(x, [r["gflops"] for r in rs], style, color=color, label=label)
      axes[2].plot(x, [r["run_rss_growth_mb"] for r in rs], style, color=color,
                   label=f"{label}: run growth")
      if system == "lr_jax":
        for r in rs:  # The engine's chunks where it splits the variants: "chunk×chunks".
          if r["chunks"] > 1:
            axes[0].annotate(f"{r['chunk']}×{r['chunks']}",
                             (r["x"], r["s_per_variant_epoch"] * 1e3), textcoords="offset points",
                             xytext=(0, -11), fontsize=6, ha="center", color=color)
        axes[2].plot(x, [r["process_peak_rss_mb"] for r in rs], "k.-", alpha=0.4,
                     label="process peak (all systems)")
        if series == "variants":
          chunked = [r for r in rs if r["chunks"] > 1]
          if chunked:
            for ax in axes:
              ax.axvline(chunked[0]["x"], color="grey", lw=0.8, ls="--")
            axes[0].annotate(f"chunking starts\n(chunks of {chunked[0]['chunk']})",
                             (chunked[0]["x"], axes[0].get_ylim()[1]), fontsize=7,
                             va="top", ha="right")
    axes[1].axhline(peak, color="red", lw=1, label=f"float32 matmul peak {peak:.0f} GFLOP/s")
    titles = ("ms per variant-epoch (median)", "GFLOP/s achieved", "RSS (MiB)")
    for ax, title in zip(axes, titles):
      ax.set_xscale("log" if series != "depth" else "linear")
      ax.set_title(title, fontsize=9)
      ax.set_xlabel(xlabel)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6)
    for ax in axes[:2]:
      ax.set_yscale("log")
      ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
      ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
      ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes:
      if series == "depth":
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
      ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())

  layouts = {"scaling_variants.png": [("variants", "variants N (digits, MLP 64-128-10)")],
             "scaling_rows.png": [("rows", f"training rows (blobs, N={result['config']['fixed_n']}"
                                           ", MLP 64-128-10)")],
             "scaling_width.png": [("width", f"hidden width (digits, N="
                                             f"{result['config']['fixed_n']}, one layer)"),
                                   ("depth", f"hidden layers of {result['config']['depth_width']}"
                                             " (digits)")]}
  for name, panels in layouts.items():
    fig, grid = plt.subplots(len(panels), 3, figsize=(13, 3.8 * len(panels)), squeeze=False)
    for axes, (series, xlabel) in zip(grid, panels):
      draw(axes, series, xlabel)
    fig.suptitle(f"How cost grows: {name[8:-4]} ({result['machine'].get('model_name', '?')}, "
                 f"{result['machine']['cpu_count']} cores)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  return paths


def cpu_flags() -> list[str]:
  """The SIMD and matrix flags of /proc/cpuinfo (avx*, fma, amx*), sorted."""
  try:
    with open("/proc/cpuinfo") as f:
      line = next(l for l in f if l.startswith("flags"))
  except (OSError, StopIteration):
    return []
  return sorted(f for f in line.split(":", 1)[1].split()
                if f.startswith(("avx", "amx")) or f == "fma")


def _ints(values: Sequence[str]) -> list[int]:
  return [int(v) for v in values]


def config_from_flags() -> dict:
  """The run's settings; --quick replaces the grid with a tiny one."""
  cfg = {"quick": FLAGS.quick, "ns": _ints(FLAGS.ns), "rows": _ints(FLAGS.rows),
         "widths": _ints(FLAGS.widths), "depths": _ints(FLAGS.depths),
         "depth_width": FLAGS.depth_width, "fixed_n": FLAGS.fixed_n, "val_rows": FLAGS.val_rows,
         "epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size, "repeats": FLAGS.repeats,
         "matmul_size": FLAGS.matmul_size, "matmul_reps": FLAGS.matmul_reps}
  if FLAGS.quick:
    cfg.update(ns=[1, 2], rows=[100, 200], widths=[8, 16], depths=[1, 2], depth_width=8,
               fixed_n=2, val_rows=50, epochs=1, repeats=1, matmul_size=256, matmul_reps=3)
  if min(cfg["epochs"], cfg["repeats"], cfg["batch_size"], *cfg["ns"], *cfg["rows"],
         *cfg["widths"], *cfg["depths"]) < 1:
    raise app.UsageError("--epochs, --repeats, --batch_size, --ns, --rows, --widths and "
                         "--depths must all be >= 1")
  if min(cfg["rows"] + [cfg["val_rows"]]) < CLASSES:
    raise app.UsageError(f"--rows and --val_rows must be >= {CLASSES} (every class in a split)")
  return cfg


def main(argv):
  if benchmarks.run_as_worker(argv, FLAGS.worker, run_worker):
    return
  cfg = config_from_flags()
  out = FLAGS.out
  os.makedirs(out, exist_ok=True)
  load_start = benchmarks.loadavg()
  machine = benchmarks.machine_info()
  print(f"machine: {machine.get('model_name', '?')}, {machine['cpu_count']} cores, load average "
        f"{load_start}", flush=True)
  data_path = os.path.join(out, "data.npz")
  digits = write_data(data_path)
  peak = matmul_peak(cfg["matmul_size"], cfg["matmul_reps"])
  print(f"float32 matmul peak: {peak['median_gflops']:.1f} GFLOP/s", flush=True)
  runner = Runner(out, FLAGS.worker_timeout_s, in_process=cfg["quick"])
  t0 = time.perf_counter()
  records = collect(cfg, runner, digits, data_path)
  rows = analyse(records, peak, cfg["epochs"])
  result = {"config": cfg, "machine": machine, "cpu_flags": cpu_flags(),
            "versions": benchmarks.package_versions(["jax", "jaxlib", "flax", "optax", "numpy"]),
            "matmul_peak": peak, "digits": digits, "records": records, "rows": rows,
            "ratios": ratios(rows), "loadavg_start": load_start,
            "loadavg_end": benchmarks.loadavg(), "wall_s": time.perf_counter() - t0,
            "memory": "Linux RSS (VmHWM), not JAX memory stats (None on a CPU device)"}
  paths = figures(result, out)
  benchmarks.publish(out, "scaling", result, {"scaling": table(result)}, FLAGS.fill_doc)
  if FLAGS.fill_doc:  # The committed copies: the figures and the numbers beside the document.
    for path in [*paths, os.path.join(out, "scaling.json")]:
      shutil.copyfile(path, os.path.join(os.path.dirname(benchmarks.DOC), os.path.basename(path)))
  print(f"wrote {out}/scaling.json, scaling.md, {', '.join(FIGURES)}")


if __name__ == "__main__":
  app.run(main)
