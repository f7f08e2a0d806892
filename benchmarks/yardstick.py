"""lr_jax against the hand-written JAX sweeps, timed side by side in one process.

    python -m benchmarks.yardstick --out runs/benchmarks/yardstick [--fill_doc]

Issue 10's target: on workload P at N = 64, lr_jax (every feature on: early stopping that
tracks best epochs with patience 0, divergence checks, history) costs at most 1.1x per variant
what a minimal `jit(vmap(scan))` sweep of the same arithmetic costs. Two such sweeps run here:
(f), `peers.train_jax_sweep` (a Flax module, permutations drawn outside the program, the last
partial batch a second step shape), and (l), `peers.train_lean_sweep`, the leanest one issue 23
asked for (a dict of weights and `x @ w`, permutations drawn in the program, the last partial
batch a masked step, as lr_jax trains it). The target is judged against (l). `throughput.py`
times the systems one after another, minutes apart; on a shared machine the load changes in
between. Here all three compile first (untimed), then `--repeats` rounds of one lr_jax sweep,
one (f) sweep and one (l) sweep, so each round's ratios compare runs seconds apart. Workload
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

TARGET = 1.1  # lr_jax / (l), per variant, at most.
# The hand-written peers, each with its name in the table; the target is judged against JUDGE.
PEERS = {"hand": "(f) hand-written jit(vmap(scan))",
         "lean": "(l) leanest hand-written jit(vmap(scan))"}
JUDGE = "lean"


def measure(n: int, epochs: int, batch_size: int, rounds: int, data_path: str) -> dict:
  """Per-variant seconds of lr_jax and the peers in interleaved rounds, and lr_jax's ratios to
  each peer (`vs[peer]`)."""
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
                                                    batch_size=batch_size, seed=0),
             "lean": lambda: peers.train_lean_sweep(data, lrs, epochs=epochs,
                                                    batch_size=batch_size, seed=0)}
  first = {name: seconds(fn) for name, fn in systems.items()}  # Compiles.
  runs = {name: [] for name in systems}  # Seconds per variant.
  for _ in range(rounds):
    for name, fn in systems.items():
      runs[name].append(seconds(fn) / n)
  med = {name: statistics.median(r) for name, r in runs.items()}

  def versus(peer):
    ratios = [a / b for a, b in zip(runs["lr_jax"], runs[peer])]
    return {"ratios": ratios, "median_of_ratios": statistics.median(ratios),
            "ratio_of_medians": med["lr_jax"] / med[peer],
            "ratio_of_mins": min(runs["lr_jax"]) / min(runs[peer])}

  return {"n": n, "epochs": epochs, "batch_size": batch_size, "rounds": rounds,
          "first_call_s": first, "runs_s": runs,
          "median_s": med, "min_s": {name: min(r) for name, r in runs.items()},
          "vs": {peer: versus(peer) for peer in PEERS}, "judged_against": JUDGE,
          "target": TARGET}


def table(r: dict) -> str:
  fmt = benchmarks.fmt
  rows = [[name, fmt(r["median_s"][key]), fmt(r["min_s"][key]),
           ", ".join(fmt(x) for x in r["runs_s"][key]), fmt(r["first_call_s"][key])]
          for name, key in (("lr_jax, every feature on", "lr_jax"),
                            *((label, peer) for peer, label in PEERS.items()))]
  text = benchmarks.markdown_table(
      ["system", f"s per variant (median of {r['rounds']})", "min", "rounds",
       "first call s (compiles)"], rows)
  judged = r["vs"][JUDGE]
  verdict = "met" if judged["median_of_ratios"] <= TARGET else "missed"

  def ratios(peer):
    v = r["vs"][peer]
    return (f"lr_jax / {PEERS[peer].split()[0]}: {fmt(v['median_of_ratios'])} (median of the "
            f"{r['rounds']} per-round ratios), {fmt(v['ratio_of_medians'])} by medians, "
            f"{fmt(v['ratio_of_mins'])} by the best runs")

  text += (f"\n\nWorkload P at N = {r['n']}, {r['epochs']} epochs, batch {r['batch_size']}. "
           f"{ratios(JUDGE)}; target <= {TARGET} (against {PEERS[JUDGE].split()[0]}): "
           f"**{verdict}**. "
           + "".join(f"{ratios(peer)}. " for peer in PEERS if peer != JUDGE)
           + f"Load average (1, 5, 15 min) at start {r['load_start']}, at end "
           f"{r['load_end']}.")
  return text


def main(argv):
  del argv
  # --quick: N = 2, 1 epoch, 2 rounds; throughput.py's --quick programs at N = 2, so that after
  # it in one process (the tests run both so) only (l)'s program compiles again.
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
