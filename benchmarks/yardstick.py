"""lr_jax against the hand-written JAX sweep, timed side by side in one process.

    python -m benchmarks.yardstick --out runs/benchmarks/yardstick [--fill_doc]

Issue 10's target: on workload P at N = 64, lr_jax (every feature on: early stopping that
tracks best epochs with patience 0, divergence checks, history) costs at most 1.1x per variant
what (f), a minimal `jit(vmap(scan))` sweep of the same arithmetic (`peers.train_jax_sweep`),
costs. `throughput.py` times the systems one after another, minutes apart; on a shared machine
the load changes in between. Here both compile first (untimed), then `--repeats` rounds of one
lr_jax sweep and one (f) sweep, so each round's ratio compares runs seconds apart. Workload
P's `--epochs` and `--batch_size`, `--repeats` and `--out` are the flags of `throughput.py`;
`--quick` runs N = 2, 1 epoch, 2 rounds (a check that the script runs, its numbers mean nothing).

Prints a table, writes the numbers to `<out>/yardstick.json` and, with `--fill_doc`, the table
into `benchmarks/BENCHMARKS.md` (its `yardstick:hand_written` marker).
"""

from __future__ import annotations

import os
import statistics
import time

from absl import app, flags

import benchmarks
# Workload P, and its --out, --quick, --epochs, --batch_size, --repeats and --fill_doc flags.
from benchmarks.throughput import learning_rates, workload_experiment, write_data

flags.DEFINE_integer("n", 64, "Learning rates of each sweep (variants).", lower_bound=1)
FLAGS = flags.FLAGS
FLAGS.set_default("out", "runs/benchmarks/yardstick")
FLAGS.set_default("repeats", 9)

TARGET = 1.1  # lr_jax / (f), per variant, at most.


def measure(n: int, epochs: int, batch_size: int, rounds: int, data_path: str) -> dict:
  """Per-variant seconds of both systems in interleaved rounds, and their ratios."""
  import lr_jax
  from benchmarks import peers
  exp = workload_experiment(epochs, batch_size)
  lrs = learning_rates(n, 1e-3)
  grid = lr_jax.Grid(learning_rates=tuple(lrs), seeds=(0,))
  write_data(data_path)
  data = peers.load_data(data_path)

  def seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

  systems = {"lr_jax": lambda: lr_jax.run_sweep(exp, grid),
             "hand": lambda: peers.train_jax_sweep(data, lrs, epochs=epochs,
                                                    batch_size=batch_size, seed=0)}
  first = {name: seconds(fn) for name, fn in systems.items()}  # Compiles.
  runs = {name: [] for name in systems}  # Seconds per variant.
  for _ in range(rounds):
    for name, fn in systems.items():
      runs[name].append(seconds(fn) / n)
  ratios = [a / b for a, b in zip(runs["lr_jax"], runs["hand"])]
  med = {name: statistics.median(r) for name, r in runs.items()}
  return {"n": n, "epochs": epochs, "batch_size": batch_size, "rounds": rounds,
          "first_call_s": first, "runs_s": runs,
          "median_s": med, "min_s": {name: min(r) for name, r in runs.items()},
          "ratios": ratios, "ratio_of_medians": med["lr_jax"] / med["hand"],
          "median_of_ratios": statistics.median(ratios),
          "ratio_of_mins": min(runs["lr_jax"]) / min(runs["hand"])}


def table(r: dict) -> str:
  fmt = benchmarks.fmt
  rows = [[name, fmt(r["median_s"][key]), fmt(r["min_s"][key]),
           ", ".join(fmt(x) for x in r["runs_s"][key]), fmt(r["first_call_s"][key])]
          for name, key in (("lr_jax, every feature on", "lr_jax"),
                            ("(f) hand-written jit(vmap(scan))", "hand"))]
  text = benchmarks.markdown_table(
      ["system", f"s per variant (median of {r['rounds']})", "min", "rounds",
       "first call s (compiles)"], rows)
  verdict = "met" if r["median_of_ratios"] <= TARGET else "missed"
  text += (f"\n\nWorkload P at N = {r['n']}, {r['epochs']} epochs, batch {r['batch_size']}. "
           f"lr_jax / (f): "
           f"{fmt(r['median_of_ratios'])} (median of the {r['rounds']} per-round ratios), "
           f"{fmt(r['ratio_of_medians'])} by medians, {fmt(r['ratio_of_mins'])} by the best "
           f"runs; target <= {TARGET}: **{verdict}**. Load average (1, 5, 15 min) at start "
           f"{r['load_start']}, at end {r['load_end']}.")
  return text


def main(argv):
  del argv
  # --quick: N = 2, 1 epoch, 2 rounds; throughput.py's --quick programs at N = 2, so that after
  # it in one process (the tests run both so) nothing compiles again.
  n, epochs, rounds = (2, 1, 2) if FLAGS.quick else (FLAGS.n, FLAGS.epochs, FLAGS.repeats)
  if min(epochs, rounds, FLAGS.batch_size) < 1:
    raise app.UsageError(f"--epochs, --repeats and --batch_size must be >= 1 (got {epochs}, "
                         f"{rounds}, {FLAGS.batch_size})")
  os.makedirs(FLAGS.out, exist_ok=True)
  load_start = benchmarks.loadavg()
  result = measure(n, epochs, FLAGS.batch_size, rounds, os.path.join(FLAGS.out, "data.npz"))
  result.update(load_start=load_start, load_end=benchmarks.loadavg(),
                machine=benchmarks.machine_info())
  benchmarks.publish(FLAGS.out, "yardstick", result, {"yardstick:hand_written": table(result)},
                     FLAGS.fill_doc)


if __name__ == "__main__":
  app.run(main)
