r"""Steady-state seconds per variant of workload P's vmapped sweep, for A/B runs of two checkouts.

    PYTHONPATH=<checkout> JAX_COMPILATION_CACHE_DIR=/tmp/cache-a \
      python benchmarks/steady_state.py --label=a --n=64 --repeats=7

One untimed sweep (it compiles, or loads the program from the persistent cache), then
--repeats timed ones; prints one JSON line: median and min wall seconds per variant, median
CPU seconds per variant (this process's, all threads), the load average at start and end.
Run it alternately in the two checkouts (A B A B ...), each with its own cache folder, and
compare medians over the runs: on a shared machine a single run says little.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags

# Workload P and its --epochs, --batch_size and --repeats (timed sweeps) flags.
from benchmarks.throughput import learning_rates, workload_experiment

flags.DEFINE_string("label", "", "Name of this checkout in the output line.")
flags.DEFINE_integer("n", 64, "Number of learning rates (variants).", lower_bound=1)
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import numpy as np
  import lr_jax
  from lr_jax import cli
  cli.enable_compilation_cache()
  exp = workload_experiment(FLAGS.epochs, FLAGS.batch_size)
  grid = lr_jax.Grid(learning_rates=tuple(learning_rates(FLAGS.n, 1e-3)), seeds=(0,))
  load_start = os.getloadavg()[0]
  t0 = time.perf_counter()
  lr_jax.run_sweep(exp, grid)
  first_s = time.perf_counter() - t0
  wall, cpu = [], []
  for _ in range(FLAGS.repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    result = lr_jax.run_sweep(exp, grid)
    wall.append((time.perf_counter() - t0) / FLAGS.n)
    cpu.append((time.process_time() - c0) / FLAGS.n)
  print(json.dumps({
      "label": FLAGS.label, "n": FLAGS.n, "median_s_per_variant": statistics.median(wall),
      "min_s_per_variant": min(wall), "cpu_s_per_variant": statistics.median(cpu), "runs": wall,
      "first_s": first_s, "load_start": load_start, "load_end": os.getloadavg()[0],
      "mean_best_val_acc": float(np.nanmean(result.rows["best_val_accuracy"]))}), flush=True)


if __name__ == "__main__":
  app.run(main)
