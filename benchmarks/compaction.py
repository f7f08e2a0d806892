"""Compute follows the survivors: compaction and successive halving, measured side by side.

    python -m benchmarks.compaction --out runs/benchmarks/compaction [--fill_doc]

1. The default sweep (`python -m experiments.lr_sweep` defaults: digits, MLP(128), Adam, 16
   learning rates 1e-5..1 x 3 seeds, up to 100 epochs, patience 5) with compaction where it
   pays for its programs (the default, `RunOptions.compile_cost_gflop`), always where the
   survivors fit a narrower width (`compile_cost_gflop=0`), and off, alternating, `--reps`
   times each after one warm-up run of each (compiling): the variant-epochs its variants
   trained, those its programs executed, and the wall time.
2. A 64-learning-rate sweep (1e-5..1, Adam, 3 seeds, 100 epochs, patience 5) with and without
   `prune="halving"` (rungs 5, 15, 45, eta 3) on each of `--datasets`: wall time, and whether
   the learning rate chosen with pruning is in the unpruned sweep's set of points not
   significantly worse than its best (`stats.compare`).

3. Population shapes: one compiled call of the 1600-variant sweep's group (digits, MLP(128),
   Adam, 5 seeds x 5 folds, calls of 5 epochs, nothing stopping) at each shape a regrouped
   population may take, rows (streams) x width (each row one stream's points, sharing its
   minibatches): variant-epochs per second against the whole chunk's (1 x 16), medians of
   `--reps` interleaved calls after one (compiling) call of each.

Prints a table, writes the numbers to `<out>/compaction.json` and, with `--fill_doc`, the
tables into `benchmarks/BENCHMARKS.md` (its `compaction:*` markers).
"""

from __future__ import annotations

import functools
import os
import statistics
import time

from absl import app, flags

import benchmarks

flags.DEFINE_string("out", "runs/benchmarks/compaction", "Output folder.")
flags.DEFINE_integer("reps", 3, "Timed runs of each setting of the default sweep.")
flags.DEFINE_list("datasets", ["digits", "wine", "breast_cancer"], "Data sets of the halving runs.")
flags.DEFINE_bool("quick", False, "Tiny sizes: checks the script runs, measures nothing. Both "
                  "parts train the same small sweep (4 learning rates x 2 seeds, MLP(8), 6 "
                  "epochs), the halving runs on digits unless --datasets is given, so that "
                  "they reuse the default sweep's programs.")
flags.DEFINE_multi_enum("part", ["default_sweep", "halving", "populations"],
                        ["default_sweep", "halving", "populations"],
                        "The parts to run (repeat the flag for several); --fill_doc fills "
                        "their sections only.")
flags.DEFINE_bool("fill_doc", False, "Fill the compaction sections of BENCHMARKS.md.")
FLAGS = flags.FLAGS


def _sweep(exp, grid, **options):
  """(wall seconds, SweepResult) of one sweep."""
  import lr_jax
  t0 = time.perf_counter()
  result = lr_jax.run_sweep(exp, grid, options=lr_jax.RunOptions(**options))
  return time.perf_counter() - t0, result


def _quick(exp):
  """--quick's experiment and grid, the same in both parts: the default sweep's data set
  (digits) cut to 200 training rows, so that the halving runs on it reuse its programs."""
  import lr_jax
  exp = exp.replace(train__epochs=6, train__patience=1, model__hidden=(8,))
  if exp.data.dataset == lr_jax.Experiment().data.dataset:
    exp = exp.replace(data__train_size=200)
  return exp, lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 3.0, 4), seeds=(0, 1))


SETTINGS = {"on": {}, "always": {"compile_cost_gflop": 0.0}, "off": {"compact": False}}
"""Compaction where it pays (the default), wherever survivors fit, and never."""


def default_sweep(reps: int, quick: bool) -> dict:
  """The compaction settings on the default sweep: medians of `reps` alternating runs each."""
  import lr_jax
  exp = lr_jax.Experiment()
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-5, 1.0, 16), seeds=(0, 1, 2))
  if quick:
    exp, grid = _quick(exp)
  sweep = functools.partial(_sweep, chunk_epochs=2) if quick else _sweep  # Calls of 2 epochs.
  out = {}
  for options in SETTINGS.values():  # Warm-up: compiles every program of the setting.
    sweep(exp, grid, **options)
  walls = {name: [] for name in SETTINGS}
  for _ in range(reps):
    for name, options in SETTINGS.items():
      wall, result = sweep(exp, grid, **options)
      walls[name].append(wall)
      out[name] = result.timings[0]
  rows = {}
  for name in SETTINGS:
    t = out[name]
    rows[name] = {
        "wall_s": walls[name], "median_wall_s": statistics.median(walls[name]),
        "variant_epochs_trained": t["variant_epochs_trained"],
        "variant_epochs_executed": t["variant_epochs_executed"],
        "executed_per_trained": t["variant_epochs_executed"] / t["variant_epochs_trained"]}
  rows["speedup"] = rows["off"]["median_wall_s"] / rows["on"]["median_wall_s"]
  rows["speedup_always"] = rows["off"]["median_wall_s"] / rows["always"]["median_wall_s"]
  return rows


def halving(dataset: str, quick: bool) -> dict:
  """64 learning rates with and without halving on one data set: time and the chosen LR."""
  import lr_jax
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=dataset))
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-5, 1.0, 64), seeds=(0, 1, 2))
  rungs = (5, 15, 45)
  if quick:
    exp, grid = _quick(exp)
    rungs = (2,)
  sweep = functools.partial(_sweep, chunk_epochs=2) if quick else _sweep  # Calls of 2 epochs.
  row = {}
  for prune in (None, "halving"):  # Warm-up (compiling), then one timed run each.
    sweep(exp, grid, prune=prune, prune_rungs=rungs)
  wall_full, full = sweep(exp, grid)
  wall_pruned, pruned = sweep(exp, grid, prune="halving", prune_rungs=rungs)
  near = sorted(a["learning_rate"] for a in full.aggregates if a["not_worse"])
  chosen = pruned.best[0].get("learning_rate")
  row.update(
      wall_s=wall_full, wall_pruned_s=wall_pruned, speedup=wall_full / wall_pruned,
      best_lr=full.best[0].get("learning_rate"), chosen_lr_pruned=chosen,
      chosen_in_not_worse_set=chosen in near, not_worse_set=near,
      executed=full.timings[0]["variant_epochs_executed"],
      executed_pruned=pruned.timings[0]["variant_epochs_executed"],
      points_pruned=int(sum(a["n_pruned"] > 0 for a in pruned.aggregates)))
  return row


SHAPES = ((1, 16), (2, 8), (4, 4), (8, 2), (16, 1), (1, 8), (1, 4), (1, 2), (1, 1))
"""Population shapes (rows x width) of part 3: a chunk's 16 lanes regrouped, and narrower rows
alone."""


def population_shapes(reps: int, quick: bool) -> dict:
  """Variant-epochs per second of one compiled call at each of `SHAPES`, interleaved."""
  import jax
  import numpy as np

  import lr_jax
  from lr_jax import engine
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(folds=5),
                          train=lr_jax.TrainConfig(epochs=100, patience=0))
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 1e-2, 64), seeds=tuple(range(5)))
  if quick:  # The default sweep's quick group: one program more than part 1's.
    exp, grid = _quick(lr_jax.Experiment())
  group = engine.plan_sweep(exp, grid)[0]
  plan = engine.loop._plan_group(group, 0, lr_jax.RunOptions(chunk_epochs=2 if quick else 5))
  shapes = ((plan.s_c, plan.h_c), (1, 2)) if quick else SHAPES
  data = engine.programs._data_arrays(group)
  params_S = engine.stream_params(group, plan.seeds)

  def call(shape):
    rows, width = shape
    points = jax.tree_util.tree_map(lambda a: a[:width], plan.points)
    state = plan.init(jax.tree_util.tree_map(lambda a: a[:rows], params_S), points,
                      plan.folds[:rows], data)
    per_row = jax.tree_util.tree_map(lambda a: np.repeat(np.asarray(a)[None], rows, 0), points)
    t0 = time.perf_counter()
    out, _ = plan.run(state, per_row, plan.seeds[:rows], plan.folds[:rows], data, plan.budget,
                      num_epochs=plan.call_epochs)
    jax.block_until_ready(out)
    return rows * width * plan.call_epochs / (time.perf_counter() - t0)

  for shape in shapes:  # Compiles.
    call(shape)
  rates = {shape: [] for shape in shapes}
  for _ in range(reps):
    for shape in shapes:
      rates[shape].append(call(shape))
  whole = statistics.median(rates[shapes[0]])
  return {f"{r}x{w}": {"rows": r, "width": w, "rates": rates[(r, w)],
                       "median_rate": statistics.median(rates[(r, w)]),
                       "relative": statistics.median(rates[(r, w)]) / whole}
          for r, w in shapes}


def tables(results: dict) -> dict[str, str]:
  """The Markdown sections of the parts run: the default sweep, halving per data set, the
  population shapes."""
  fmt = benchmarks.fmt
  sections = {}
  if "default_sweep" in results:
    sections["compaction:default_sweep"] = _default_table(results)
  if "halving" in results:
    sections["compaction:halving"] = benchmarks.markdown_table(
        ["data set", "wall s", "wall s, halving", "speed-up", "variant-epochs executed",
         "executed, halving", "points pruned", "best lr", "lr chosen with halving",
         "in the not-worse set"],
        [[name, fmt(r["wall_s"]), fmt(r["wall_pruned_s"]), fmt(r["speedup"]), r["executed"],
          r["executed_pruned"], r["points_pruned"], fmt(r["best_lr"]),
          fmt(r["chosen_lr_pruned"]), "yes" if r["chosen_in_not_worse_set"] else "no"]
         for name, r in results["halving"].items()])
  if "populations" in results:
    sections["compaction:populations"] = benchmarks.markdown_table(
        ["population (rows x width)", "lanes", "variant-epochs / s (median)",
         f"relative to the whole chunk ({next(iter(results['populations']))})",
         "calls (variant-epochs / s)"],
        [[name, r["rows"] * r["width"], fmt(r["median_rate"]), fmt(r["relative"]),
          ", ".join(fmt(x) for x in r["rates"])] for name, r in results["populations"].items()]
    ) + (f"\n\nLoad average (1, 5, 15 min) at start {results['load_start']}, at end "
         f"{results['load_end']}.")
  return sections


def _default_table(results: dict) -> str:
  d = results["default_sweep"]
  fmt = benchmarks.fmt
  default = benchmarks.markdown_table(
      ["compaction", "variant-epochs trained", "executed", "executed / trained",
       f"wall s (median of {len(d['on']['wall_s'])})", "runs (s)"],
      [[k, d[k]["variant_epochs_trained"], d[k]["variant_epochs_executed"],
        fmt(d[k]["executed_per_trained"]), fmt(d[k]["median_wall_s"]),
        ", ".join(fmt(w) for w in d[k]["wall_s"])] for k in SETTINGS])
  default += (f"\n\nSpeed-up with compaction where it pays (the default): {fmt(d['speedup'])}x; "
              f"wherever survivors fit: {fmt(d['speedup_always'])}x. Load average (1, 5, 15 min) "
              f"at start {results['load_start']}, at end {results['load_end']}.")
  return default


def main(argv):
  del argv
  results = {"load_start": benchmarks.loadavg(), "machine": benchmarks.machine_info()}
  t0 = time.perf_counter()
  if "default_sweep" in FLAGS.part:
    results["default_sweep"] = default_sweep(FLAGS.reps, FLAGS.quick)
  if "halving" in FLAGS.part:
    datasets = ["digits"] if FLAGS.quick and not FLAGS["datasets"].present else FLAGS.datasets
    results["halving"] = {name: halving(name, FLAGS.quick) for name in datasets}
  if "populations" in FLAGS.part:
    results["populations"] = population_shapes(max(FLAGS.reps, 5), FLAGS.quick)
  results["load_end"] = benchmarks.loadavg()
  results["total_s"] = time.perf_counter() - t0
  os.makedirs(FLAGS.out, exist_ok=True)
  benchmarks.publish(FLAGS.out, "compaction", results, tables(results), FLAGS.fill_doc)


if __name__ == "__main__":
  app.run(main)
