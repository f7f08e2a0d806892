r"""One command to verify lr_jax on whatever accelerator JAX sees (GPU, TPU, or the CPU).

    python -m benchmarks.device_check --out runs/device_check

1. Correctness: every variant of a vmapped sweep equals the same variant trained alone
   (1e-5 relative, at stable learning rates), on this device.
2. Speed: workload P (digits, MLP 64-128-10, Adam, batch 32, 20 epochs) at N = 1 and 64
   variants: seconds per variant (median of 3 runs) and the vmap speed-up.

Prints a short table and writes device_check.json. Takes a few minutes.
"""

import json
import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags

import lr_jax
from lr_jax import cli, engine
from lr_jax.io import atomic_write

flags.DEFINE_string("out", "runs/device_check", "Output folder.")
flags.DEFINE_integer("repeats", 3, "Timed runs per size.")
flags.DEFINE_bool("quick", False, "Tiny sizes, to check that the script works.")
FLAGS = flags.FLAGS


def check_equivalence(quick: bool) -> float:
  """Largest relative difference, vmapped vs alone, over the sweep's histories."""
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(64,)),
      train=lr_jax.TrainConfig(epochs=2 if quick else 5, patience=0))
  lrs = (1e-3, 1e-2) if quick else (1e-4, 1e-3, 3e-3, 1e-2)
  many = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=lrs, seeds=(0, 1)))
  worst = 0.0
  for i in range(many.num_variants):
    alone = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(float(many.rows["learning_rate"][i]),),
                                              seeds=(int(many.rows["seed"][i]),)))
    for k in ("train_loss", "val_loss"):
      a, b = many.history[k][i], alone.history[k][0]
      worst = max(worst, float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12))))
  return worst


def time_workload(n: int, epochs: int, repeats: int) -> dict:
  exp = lr_jax.Experiment(
      model=lr_jax.ModelConfig(hidden=(128,)),
      train=lr_jax.TrainConfig(epochs=epochs, patience=0))
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 1e-1, n), seeds=(0,))
  group = engine.plan_sweep(exp, grid)[0]
  options = engine.RunOptions(chunk_epochs=0)  # All epochs in one call: no host loop timed.
  t0 = time.perf_counter()
  out = engine.run_group(group, options=options)
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = engine.run_group(group, options=options)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  return {"n": n, "first_s": first, "median_s": med, "per_variant_s": med / n,
          "min_s": min(times), "max_s": max(times),
          "best_val_accuracy_max": float(np.nanmax(out.variants.best_val_accuracy))}


def main(argv):
  del argv

  def body():
    cli.enable_compilation_cache()
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} x{jax.device_count()}")
    worst = check_equivalence(FLAGS.quick)
    ok = worst <= 1e-5
    print(f"vmapped vs alone: max relative difference {worst:.2e} -> {'PASS' if ok else 'FAIL'}")
    epochs = 2 if FLAGS.quick else 20
    sizes = (1, 4) if FLAGS.quick else (1, 64)
    rows = [time_workload(n, epochs, FLAGS.repeats) for n in sizes]
    print(f"{'N':>4} {'s/variant':>10} {'min-max (s)':>16} {'first call (s)':>15} {'best acc':>9}")
    for r in rows:
      print(f"{r['n']:>4} {r['per_variant_s']:>10.4f} {r['min_s']:>7.3f}-{r['max_s']:<8.3f} "
            f"{r['first_s']:>15.2f} {r['best_val_accuracy_max']:>9.3f}")
    speedup = rows[0]["per_variant_s"] / rows[-1]["per_variant_s"]
    print(f"vmap speed-up per variant at N={sizes[-1]}: {speedup:.1f}x")
    os.makedirs(FLAGS.out, exist_ok=True)
    atomic_write(os.path.join(FLAGS.out, "device_check.json"), json.dumps({
        "device": f"{device.platform} {device.device_kind}", "devices": jax.device_count(),
        "max_relative_difference": worst, "equivalence_ok": ok, "workload": rows,
        "speedup": speedup, "jax": jax.__version__}, indent=2).encode())
    if not ok:
      raise SystemExit(1)

  cli.run_main(body)


if __name__ == "__main__":
  app.run(main)
