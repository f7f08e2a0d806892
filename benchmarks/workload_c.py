"""Workload C (issue 27): a vmapped CNN on images, lr_jax against hand-written JAX and PyTorch.

    python -m benchmarks.workload_c [--quick] [--fill_doc] [--notorch]

lr_jax's built-in CNN (`ModelConfig(name="cnn", hidden=(16, 32))`: 3x3 SAME conv 16, relu, 2x2
average pool, 3x3 SAME conv 32, relu, 2x2 average pool, dense 10; each conv the `Conv3x3` of
nine shifted slices and one matmul) on scikit-learn's digits images (pixels / 16, 1437 training
and 360 validation images, lr_jax's stratified split, no standardization) at 8x8 and upsampled
to 32x32 (`np.kron`, each pixel a 4x4 block). Adam, batch 32 (the last partial batch kept),
`--epochs` epochs (32x32: `--epochs_32`), validation on the whole validation set after every
epoch, no early stopping; N learning rates (`--ns`, 32x32: `--ns_32`), log-spaced from 1e-4 to
1e-1 (N = 1: 1e-3), one seed.

Systems, each warm (compiled or warmed up by a first, untimed call; then every call timed in
full, results fetched to the host: the JAX ones by this process's wall clock, the torch ones by
their worker's, below):

- lr_jax: `lr_jax.run_sweep(Experiment(data=DataConfig(dataset=Dataset.from_arrays(...)),
  model=ModelConfig(name="cnn", ...)), Grid(learning_rates=..., seeds=(0,)))`, every feature
  on (divergence checks, best-epoch tracking, history; `patience=0`: no early stopping).
- peer: `jax.jit(jax.vmap(train))` over the learning rates, epochs and minibatches a
  `lax.scan`, the same Flax `CNN` module (so the same shifted-slices arithmetic), optax's Adam
  (`inject_hyperparams`, the learning rate a vmapped array), one init and one minibatch order
  shared by every variant, the initial parameters donated, validation every epoch with the last
  one kept. Nothing else. Compiled ahead of time, so its `memory_analysis()` is read for free.
- torch: the PyTorch eager loop a practitioner writes, one model per learning rate
  (`nn.Sequential` of `Conv2d(1, 16, 3, padding=1)`, ReLU, `AvgPool2d(2)`, `Conv2d(16, 32, 3,
  padding=1)`, ReLU, `AvgPool2d(2)`, `Flatten`, `Linear(32 * (side // 4)**2, 10)`: the same
  network in torch's layers, NCHW, torch's default init), `torch.optim.Adam(lr, eps=1e-8)`,
  `loss.backward()` per minibatch, its own shuffled order per epoch, validation under
  `no_grad`; the N learning rates one after another.
- torchvmap: PyTorch's own vectorized ensemble of the same network, `torch.func` (which does
  vmap `conv2d`, `avg_pool2d` and their gradients): `stack_module_state` of N copies +
  `functional_call` + `vmap(grad(loss))`, a hand-written Adam (optax's and torch's formula, eps
  1e-8) whose learning rate is a per-model tensor, one minibatch order shared by every model
  (as `benchmarks.peers`' MLP `torchvmap`). Seeded as torch is, so at N = 1 it trains what
  torch trains.

The torch peers train on the peer's arrays (lr_jax's split), written once per image size to
`<out>/digits<side>.npz`, by `benchmarks/torch_cnn.py` in the peers' virtual environment
(`--peers_venv`, default `.venv-peers`: `python3 -m venv .venv-peers && .venv-peers/bin/pip
install torch==2.13.0 numpy`; torch is no dependency of lr_jax): one persistent worker process
per image size, asked over a pipe (a JSON line per call) and timing the training itself, so a
call costs no process start nor the pipe. The first call of each (system, N) warms it up,
untimed. Without that interpreter, or with `--notorch`, one line says so and the torch systems
are left out. Intra-op threads: `--torch_threads` at 8x8 (default 1) and `--torch_threads_32`
at 32x32 (default 0: torch's own, one per core), each size's faster setting on the 2-core
development machine (torch 2.13.0, 1 epoch, N = 1, quiet machine): at 8x8 torch took 0.075 s
with one thread and 0.083 s with two, at 32x32 0.36 s with one and 0.25 s with two. (With two
threads, OpenMP's, a call made while another process held a core took up to 5x its neighbours.)
XLA, for lr_jax and the peer, uses every core.

Each group (image size, N) compiles lr_jax and the peer and warms up the torch systems, then
runs `--repeats` rounds; a round times one lr_jax sweep, one peer sweep, one torch and one
torchvmap sweep and (N > 1) lr_jax and the peer at N = 1 ("alone": what vmapping buys each
per variant), the order rotating, so that every ratio
compares runs seconds apart on a shared machine. Ratios are medians of the per-round ratios.
Then, at 8x8 and `--pretrained_n`, a pretrained start (the CNN's init from another key,
`lr_jax.models.pretrained(model, params, head="last")`) swept with `backbone_lr_scale` 0
(frozen backbone: a linear probe) against 1 (full fine-tuning), in interleaved rounds too.
FLOPs are counted from the matmuls (6 x MACs per training example, 2 per validation example)
and compared with a float32 matmul's rate measured in the same run (`throughput.matmul_peak`);
the torch systems are credited with the same FLOPs.

Prints the tables (the torch peers in a second table of the per-variant section, with torch's
version and threads as its worker reported them; the JSON's `torch` holds those facts, each
group's `ratio_to_torch`); writes the numbers to `<out>/workload_c.json` and the tables to
`<out>/workload_c.md`; with `--fill_doc` pastes the tables into `benchmarks/BENCHMARKS.md`
(markers `workload_c:per_variant` and `workload_c:frozen`) and copies the JSON to
`benchmarks/workload_c.json`. `--quick` (8x8 only, N = 1 and 2, 1 epoch, 2 rounds) checks that
the script runs; its numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import time
from typing import NamedTuple

from absl import app, flags

import benchmarks
# Its --out, --quick, --ns, --epochs, --batch_size, --repeats, --matmul_size, --matmul_reps,
# --peers_venv, --torch_threads (here: at 8x8) and --fill_doc flags, the matmul peak and workload
# P's grid of learning rates.
from benchmarks.throughput import learning_rates, matmul_peak

flags.DEFINE_list("ns_32", ["1", "16"], "Numbers of learning rates at 32x32.")
flags.DEFINE_integer("epochs_32", 1, "Epochs at 32x32 (each costs ~16x an 8x8 epoch).",
                     lower_bound=1)
flags.DEFINE_integer("pretrained_n", 16, "Learning rates of the frozen-vs-full comparison "
                     "(0: skip it).", lower_bound=0)
flags.DEFINE_integer("peer_chunk", 16, "Where N exceeds it, the peer also runs this many variants "
                     "at a time (lax.map); the faster form is the peer (0: all at once only).",
                     lower_bound=0)
flags.DEFINE_bool("torch", True, "Also measure the PyTorch peers (torch, torchvmap) in "
                  "--peers_venv's interpreter (--notorch: skip them).")
flags.DEFINE_integer("torch_threads_32", 0, "PyTorch intra-op threads at 32x32 (0: torch's "
                     "default, one per core; --torch_threads sets 8x8's).", lower_bound=0)
FLAGS = flags.FLAGS
FLAGS.set_default("out", "runs/benchmarks/workload_c")
FLAGS.set_default("ns", ["1", "16", "64"])  # At 8x8.
FLAGS.set_default("epochs", 5)
FLAGS.set_default("repeats", 3)
FLAGS.set_default("matmul_reps", 5)

HIDDEN = (16, 32)
NUM_CLASSES = 10
TARGET_RATIO = 1.1  # lr_jax / peer per variant, at most.
TARGET_ALONE = 0.5  # lr_jax per variant at N = 16 / lr_jax at N = 1, at most.
JSON_NAME = "workload_c.json"
TORCH_SYSTEMS = ("torch", "torchvmap")
TORCH_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_cnn.py")
TORCH_HINT = ("PyTorch peers skipped: {python} is missing or cannot import torch (python3 -m "
              "venv .venv-peers && .venv-peers/bin/pip install torch==2.13.0 numpy)")


# ----------------------------------------------------------------------------- data and counts


def images(side: int):
  """Digits images [1797, side, side, 1] (pixels / 16; 32x32 by np.kron of 4x4 blocks), labels."""
  import numpy as np
  from sklearn.datasets import load_digits
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)
  if side != 8:
    if side % 8:
      raise ValueError(f"side must be a multiple of 8, got {side}")
    x = np.kron(x, np.ones((1, side // 8, side // 8), np.float32))
  return x[..., None], digits.target.astype(np.int32)


def macs_per_example(side: int, hidden=HIDDEN) -> int:
  """Multiply-adds of one forward pass: each 3x3 conv (then a 2x2 pool), the dense head."""
  macs, cin, h = 0, 1, side
  for width in hidden:
    macs += h * h * 9 * cin * width
    cin = width
    if h >= 2:
      h //= 2
  return macs + h * h * cin * NUM_CLASSES


def flops_per_variant(side: int, n_train: int, n_val: int, epochs: int) -> float:
  """6 x MACs per training example (forward, both backward matmuls) + 2 per validation one."""
  macs = macs_per_example(side)
  return float(epochs * (6 * macs * n_train + 2 * macs * n_val))


# ----------------------------------------------------------------------------- the systems


class Workload:
  """One image size: lr_jax's experiment and data split, and the peer's arrays on the device."""

  def __init__(self, side: int, epochs: int, batch_size: int):
    import jax
    import lr_jax
    self.side, self.epochs, self.batch_size = side, epochs, batch_size
    x, y = images(side)
    dataset = lr_jax.Dataset.from_arrays(x, y, name=f"digits{side}")
    data = lr_jax.DataConfig(dataset=dataset, standardize=False)
    self.exp = lr_jax.Experiment(
        data=data, model=lr_jax.ModelConfig(name="cnn", hidden=HIDDEN),
        optim=lr_jax.OptimConfig(name="adam"),
        train=lr_jax.TrainConfig(epochs=epochs, batch_size=batch_size, patience=0))
    # The peer trains on lr_jax's split of the same rows (no standardization in either).
    splits = lr_jax.make_splits(lr_jax.load_dataset(data), data)
    train = splits.train_idx[0][splits.train_mask[0]]
    val = splits.val_idx[0][splits.val_mask[0]]
    flat = dataset.x.reshape(len(dataset.x), -1)
    self.n_train, self.n_val = len(train), len(val)
    self.arrays = tuple(jax.device_put(a) for a in (flat[train], dataset.y[train].astype("int32"),
                                                      flat[val], dataset.y[val].astype("int32")))
    self.flops = flops_per_variant(side, self.n_train, self.n_val, epochs)

  def save(self, path: str) -> str:
    """The peer's arrays (and `side`) as an .npz, the torch worker's data; returns `path`."""
    import jax
    import numpy as np
    x_train, y_train, x_val, y_val = jax.device_get(self.arrays)
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, side=self.side)
    return path

  def lr_jax_sweep(self, lrs):
    import lr_jax
    grid = lr_jax.Grid(learning_rates=tuple(lrs), seeds=(0,))
    return lambda: lr_jax.run_sweep(self.exp, grid)

  def peer_sweep(self, lrs, chunk: int = 0, frozen: bool = False):
    """The compiled peer for these learning rates, its memory analysis and a call."""
    import jax
    import jax.numpy as jnp
    init, sweep = _peer_program(self.side, self.n_train, self.epochs, self.batch_size, chunk,
                                frozen)
    lrs_N = jnp.asarray(lrs, jnp.float32)
    params_N, perms = init(jax.random.PRNGKey(0), len(lrs))
    compiled = sweep.lower(lrs_N, params_N, *self.arrays, perms).compile()
    mem = compiled.memory_analysis()
    memory = None
    if mem is not None:
      memory = {k: getattr(mem, k, None) for k in (
          "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
          "alias_size_in_bytes", "generated_code_size_in_bytes")}

    def call():
      params_N, perms = init(jax.random.PRNGKey(0), len(lrs))
      _, acc_N, loss_N = compiled(lrs_N, params_N, *self.arrays, perms)
      return jax.device_get((acc_N, loss_N))

    return call, memory


@functools.lru_cache(maxsize=None)
def _peer_program(side: int, n_train: int, epochs: int, batch_size: int, chunk: int = 0,
                  frozen: bool = False):
  """The jitted `init` and `sweep` of the hand-written CNN sweep
  (`peers.hand_sweep_program`), built once per shape.

  `chunk` > 0: `lax.map(..., batch_size=chunk)` over the variants (each chunk vmapped, trained
  through every epoch, then the next), a working set that stays in cache at large N.
  `frozen`: the convolutions' parameters enter the loss through `stop_gradient` (a linear
  probe: XLA drops the backbone's backward pass; Adam still holds moments for every leaf).
  """
  import jax
  from jax import lax
  from benchmarks import peers
  from lr_jax.models.builtin import CNN

  def prepare(params):
    return {k: v if k.startswith("Dense") else jax.tree.map(lax.stop_gradient, v)
            for k, v in params.items()}

  return peers.hand_sweep_program(CNN(HIDDEN, NUM_CLASSES, (side, side, 1)), side * side,
                                  n_train, epochs, batch_size,
                                  prepare=prepare if frozen else None, chunk=chunk)


class TorchRun(NamedTuple):
  """One call of the torch worker: its training's seconds (timed there), the last epoch's
  validation accuracy and loss per learning rate."""
  seconds: float
  val_accuracy: list[float]
  val_loss: list[float]


class TorchWorker:
  """`benchmarks/torch_cnn.py` in the peers' interpreter, serving one image size's .npz.

  A persistent process (so every call costs no process start) answering one JSON line per
  request; `facts` is its first line (torch's version and thread counts). Closed by closing its
  stdin.
  """

  def __init__(self, python: str, data: str, threads: int):
    self.proc = subprocess.Popen([python, TORCH_WORKER, data, f"--threads={threads}"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.facts = self._read()

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the torch worker exited (status {self.proc.wait()}); see its stderr")
    reply = json.loads(line)
    if "error" in reply:
      raise RuntimeError(f"the torch worker failed:\n{reply['error']}")
    return reply

  def __call__(self, system: str, lrs, epochs: int, batch_size: int, seed: int = 0) -> TorchRun:
    self.proc.stdin.write(json.dumps({"system": system, "lrs": list(lrs), "epochs": epochs,
                                      "batch_size": batch_size, "seed": seed}) + "\n")
    self.proc.stdin.flush()
    reply = self._read()
    return TorchRun(reply["seconds"], reply["val_accuracy"], reply["val_loss"])

  def __enter__(self) -> TorchWorker:
    return self

  def __exit__(self, *exc) -> None:
    self.proc.stdin.close()  # The worker finishes its request, if any, and exits.
    try:
      self.proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self.proc.stdout.close()


def _torch_python(venv: str) -> str | None:
  """The peers' interpreter if it imports torch; else None, and one line says how to get it."""
  python = benchmarks.python_of_venv(venv)
  if os.path.exists(python) and subprocess.run([python, "-c", "import torch"],
                                               capture_output=True, timeout=300).returncode == 0:
    return python
  print(TORCH_HINT.format(python=python), flush=True)
  return None


# ----------------------------------------------------------------------------- measurement


def _seconds(fn):
  t0 = time.perf_counter()
  out = fn()
  return time.perf_counter() - t0, out


def _rounds(systems: dict, rounds: int) -> dict[str, list[float]]:
  """Seconds of each system's call in `rounds` rounds, the order rotating each round.

  A call that returns a `TorchRun` counts the seconds the torch worker measured (its training
  alone, not the pipe); any other, this process's wall clock.
  """
  names = list(systems)
  runs = {name: [] for name in names}
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      seconds, out = _seconds(systems[name])
      runs[name].append(out.seconds if isinstance(out, TorchRun) else seconds)
  return runs


def _mean_small_lr(lrs, accuracies) -> float:
  """Mean final validation accuracy over the learning rates <= 1e-2 (the larger may diverge)."""
  vals = [a for lr, a in zip(lrs, accuracies) if lr <= 1e-2 and math.isfinite(a)]
  return sum(vals) / len(vals) if vals else math.nan


def _final_accuracy(result) -> list[float]:
  import numpy as np
  acc = np.asarray(result.history["val_accuracy"], float)
  return [float(row[np.isfinite(row)][-1]) if np.isfinite(row).any() else math.nan
          for row in acc]


def measure_group(w: Workload, n: int, rounds: int, alone, chunk: int,
                  torch_worker: TorchWorker | None = None) -> dict:
  """lr_jax, the peer (and the torch peers) at N learning rates (and lr_jax alone, N = 1),
  interleaved.

  Where N > `chunk`, the peer runs in two forms, all N vmapped at once and `chunk` at a time;
  the faster (lower median) is the peer of the ratios, both are recorded. Each torch system's
  first call warms it up, untimed, and gives its accuracies.
  """
  lrs = learning_rates(n, 1e-3)
  first, memory, accuracy, systems = {}, {}, {}, {}
  first["lr_jax"], result = _seconds(w.lr_jax_sweep(lrs))
  systems["lr_jax"] = w.lr_jax_sweep(lrs)
  forms = {"peer": 0, **({"peer_chunked": chunk} if chunk and n > chunk else {})}
  for name, c in forms.items():
    t0 = time.perf_counter()
    systems[name], memory[name] = w.peer_sweep(lrs, c)
    accuracy[name] = [float(a) for a in systems[name]()[0]]
    first[name] = time.perf_counter() - t0
  torch_names = TORCH_SYSTEMS if torch_worker else ()
  for name in torch_names:
    systems[name] = functools.partial(torch_worker, name, lrs, w.epochs, w.batch_size)
    warm = systems[name]()
    first[name], accuracy[name] = warm.seconds, warm.val_accuracy
  if n > 1:
    # Each system at N = 1 in the same rounds: how much vmapping buys it per variant.
    systems["alone"] = alone
    systems["peer_alone"], _ = w.peer_sweep(learning_rates(1, 1e-3))
    systems["peer_alone"]()  # Compiled (cached after its own group), untimed.
  runs = _rounds(systems, rounds)
  per_variant = {name: [t / (1 if name.endswith("alone") else n) for t in ts]
                 for name, ts in runs.items()}
  med = {name: statistics.median(v) for name, v in per_variant.items()}
  best = min(forms, key=lambda name: med[name])
  ratios = [a / b for a, b in zip(per_variant["lr_jax"], per_variant[best])]
  mib = {name: None if not m else sum(m[k] or 0 for k in (
      "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")) / n / 2**20
         for name, m in memory.items()}
  row = {"side": w.side, "n": n, "epochs": w.epochs, "learning_rates": lrs,
         "peer_forms": {name: (f"{c} at a time (lax.map)" if c else "all at once")
                        for name, c in forms.items()},
         "best_peer": best, "first_call_s": first, "runs_s": runs,
         "s_per_variant": per_variant, "median_s_per_variant": med,
         "ratio_to_peer_per_round": ratios, "ratio_to_peer": statistics.median(ratios),
         "lr_jax_timings": result.timings, "flops_per_variant": w.flops,
         "gflops": {name: w.flops / med[name] / 1e9
                    for name in ("lr_jax", *forms, *torch_names)},
         "peer_memory_analysis": memory, "peer_memory_per_variant_mib": mib,
         "final_val_accuracy": {"lr_jax": _final_accuracy(result), **accuracy}}
  if torch_names:
    row["ratio_to_torch_per_round"] = {
        name: [a / b for a, b in zip(per_variant["lr_jax"], per_variant[name])]
        for name in torch_names}
    row["ratio_to_torch"] = {name: statistics.median(v)
                             for name, v in row["ratio_to_torch_per_round"].items()}
  if n > 1:
    row["alone_ratio_per_round"] = [a / b for a, b in zip(per_variant["lr_jax"],
                                                          per_variant["alone"])]
    row["vs_alone"] = statistics.median(row["alone_ratio_per_round"])
    row["peer_alone_ratio_per_round"] = [a / b for a, b in zip(per_variant[best],
                                                               per_variant["peer_alone"])]
    row["peer_vs_alone"] = statistics.median(row["peer_alone_ratio_per_round"])
  else:
    row["vs_alone"] = row["peer_vs_alone"] = 1.0
  return row


def measure_frozen(w: Workload, n: int, rounds: int) -> dict:
  """A pretrained start swept with backbone_lr_scale 0 (frozen) against 1 (full), interleaved."""
  import dataclasses

  import jax
  import numpy as np
  import lr_jax
  from lr_jax import models
  model = lr_jax.build_model(w.exp.model, NUM_CLASSES, (w.side, w.side, 1))
  source = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(123)))
  start = models.pretrained(model, source, head="last")
  exp = dataclasses.replace(w.exp, model=lr_jax.ModelConfig())  # A given model: the default.
  lrs = learning_rates(n, 1e-3)

  def sweep(scale):
    grid = lr_jax.Grid(learning_rates=tuple(lrs), seeds=(0,),
                       hparams=(("backbone_lr_scale", (scale,)),))
    return lambda: lr_jax.run_sweep(exp, grid, model=start)

  systems = {"frozen": sweep(0.0), "full": sweep(1.0)}
  first = {name: _seconds(fn)[0] for name, fn in systems.items()}
  # The peer, from its own init: what skipping the backbone's backward pass saves at all.
  for name, frozen in (("peer_frozen", True), ("peer_full", False)):
    t0 = time.perf_counter()
    systems[name] = w.peer_sweep(lrs, frozen=frozen)[0]
    systems[name]()
    first[name] = time.perf_counter() - t0
  runs = _rounds(systems, rounds)
  ratios = [a / b for a, b in zip(runs["frozen"], runs["full"])]
  peer_ratios = [a / b for a, b in zip(runs["peer_frozen"], runs["peer_full"])]
  return {"side": w.side, "n": n, "epochs": w.epochs, "first_call_s": first, "runs_s": runs,
          "median_s_per_variant": {k: statistics.median(v) / n for k, v in runs.items()},
          "ratio_per_round": ratios, "ratio": statistics.median(ratios),
          "peer_ratio_per_round": peer_ratios, "peer_ratio": statistics.median(peer_ratios)}


# ----------------------------------------------------------------------------- report


def tables(r: dict) -> dict[str, str]:
  fmt, peak = benchmarks.fmt, r["matmul_peak"]["median_gflops"]
  rows = []
  for g in r["groups"]:
    med, best = g["median_s_per_variant"], g["best_peer"]
    acc = {name: _mean_small_lr(g["learning_rates"], g["final_val_accuracy"][name])
           for name in ("lr_jax", best)}
    rows.append([f"{g['side']}x{g['side']}", g["n"], g["epochs"], fmt(med["lr_jax"]),
                 fmt(med[best]), g["peer_forms"][best], fmt(g["ratio_to_peer"]),
                 f"{fmt(g['vs_alone'])} / {fmt(g['peer_vs_alone'])}" if g["n"] > 1 else "1",
                 f"{fmt(g['gflops']['lr_jax'])} / {fmt(g['gflops'][best])}",
                 f"{fmt(100 * g['gflops']['lr_jax'] / peak)} / "
                 f"{fmt(100 * g['gflops'][best] / peak)}",
                 fmt(g["peer_memory_per_variant_mib"][best]),
                 f"{fmt(acc['lr_jax'])} / {fmt(acc[best])}"])
  text = benchmarks.markdown_table(
      ["image", "N", "epochs", "lr_jax s / variant", "peer s / variant", "peer form",
       "lr_jax / peer", "at N / alone lr_jax / peer", "GFLOP/s lr_jax / peer",
       "% matmul peak lr_jax / peer", "peer MiB / variant", "val acc lr_jax / peer"], rows)
  others = [f"{g['side']}x{g['side']} N = {g['n']}: " + ", ".join(
      f"{g['peer_forms'][name]} {fmt(g['median_s_per_variant'][name])} s" for name in
      g["peer_forms"]) for g in r["groups"] if len(g["peer_forms"]) > 1]
  verdicts = []
  for g in r["groups"]:
    if g["n"] > 1:
      verdicts.append(f"{g['side']}x{g['side']} N = {g['n']}: lr_jax / peer "
                      f"{fmt(g['ratio_to_peer'])} (target <= {TARGET_RATIO}: "
                      f"**{'met' if g['ratio_to_peer'] <= TARGET_RATIO else 'missed'}**)")
      if g["n"] == 16:
        verdicts[-1] += (f", per variant vs alone {fmt(g['vs_alone'])} (target <= "
                         f"{TARGET_ALONE}: "
                         f"**{'met' if g['vs_alone'] <= TARGET_ALONE else 'missed'}**; "
                         f"the peer's own: {fmt(g['peer_vs_alone'])})")
  text += (f"\n\nMedians of {r['repeats']} interleaved rounds. Peer per variant in each form: "
           + "; ".join(others or ["one form only"]) + ". Float32 matmul peak "
           f"{peak:.1f} GFLOP/s (jnp.dot {r['matmul_peak']['size']}^2, median of "
           f"{r['matmul_peak']['reps']}). FLOPs per variant: {fmt(r['flops']['8'], 4)} at 8x8 "
           f"({r['epochs']} epoch{'s' * (r['epochs'] != 1)})" +
           (f", {fmt(r['flops']['32'], 4)} at 32x32 ({r['epochs_32']} epoch"
            f"{'s' * (r['epochs_32'] != 1)})" if "32" in r["flops"] else "") +
           ". " + "; ".join(verdicts) + f". Load average (1, 5, 15 min) at start "
           f"{r['load_start']}, at end {r['load_end']}; {r['machine'].get('model_name', '?')}, "
           f"{r['machine'].get('cpu_count')} cores; commit {r['machine'].get('commit')}; "
           f"{r['wall_s']:.0f} s in all.")
  text += "\n\n" + _torch_table(r)
  sections = {"workload_c:per_variant": text}
  f = r.get("frozen")
  if f:
    med = f["median_s_per_variant"]
    rows = [[label, fmt(med[key]), ", ".join(fmt(x) for x in f["runs_s"][key]),
             fmt(f["first_call_s"][key])] for label, key in (
                 ("lr_jax, backbone_lr_scale 0.0 (frozen: linear probe)", "frozen"),
                 ("lr_jax, backbone_lr_scale 1.0 (full fine-tuning)", "full"),
                 ("peer, convs through stop_gradient (frozen)", "peer_frozen"),
                 ("peer, full", "peer_full"))]
    body = benchmarks.markdown_table(
        ["system", "s / variant (median)", "rounds (s per sweep)", "first call s"], rows)
    body += (f"\n\n{f['side']}x{f['side']}, N = {f['n']}, {f['epochs']} epoch"
             f"{'s' * (f['epochs'] != 1)}, medians of the {len(f['ratio_per_round'])} "
             f"per-round ratios. lr_jax frozen / full: **{fmt(f['ratio'])}**; peer frozen / "
             f"full: **{fmt(f['peer_ratio'])}**.")
    sections["workload_c:frozen"] = body
  return sections


def _torch_table(r: dict) -> str:
  """The PyTorch peers against lr_jax, group by group (or why they were not run)."""
  fmt, peak = benchmarks.fmt, r["matmul_peak"]["median_gflops"]
  groups = [g for g in r["groups"] if "ratio_to_torch" in g]
  if not groups:
    return f"PyTorch peers (torch, torchvmap) not run: {r['torch']['skipped']}."
  names = ("lr_jax", *TORCH_SYSTEMS)
  rows = []
  for g in groups:
    med = g["median_s_per_variant"]
    acc = [_mean_small_lr(g["learning_rates"], g["final_val_accuracy"][name]) for name in names]
    rows.append([f"{g['side']}x{g['side']}", g["n"], g["epochs"],
                 *(fmt(med[name]) for name in names),
                 *(fmt(g["ratio_to_torch"][name]) for name in TORCH_SYSTEMS),
                 " / ".join(fmt(g["gflops"][name]) for name in names),
                 " / ".join(fmt(100 * g["gflops"][name] / peak) for name in names),
                 " / ".join(fmt(a) for a in acc)])
  text = benchmarks.markdown_table(
      ["image", "N", "epochs", "lr_jax s / variant", "torch s / variant",
       "torchvmap s / variant", "lr_jax / torch", "lr_jax / torchvmap",
       "GFLOP/s lr_jax / torch / torchvmap", "% matmul peak lr_jax / torch / torchvmap",
       "val acc lr_jax / torch / torchvmap"], rows)
  workers = "; ".join(f"{side}x{side}: {f['threads']} intra-op thread"
                      f"{'s' * (f['threads'] != 1)} ({f['interop_threads']} inter-op)"
                      for side, f in r["torch"]["workers"].items())
  return text + (f"\n\nPyTorch {r['torch']['version']}, in the same interleaved rounds "
                 f"(its seconds timed in its worker, training only); {workers}. torch: an eager "
                 "loop per learning rate; torchvmap: a torch.func vmap(grad) ensemble of all "
                 "N. Ratios are medians of the per-round ratios; val acc as above.")


def _commit() -> str:
  """The checkout's commit, "+dirty" where lr_jax/ differs from it (what was measured)."""
  try:
    run = lambda *a: subprocess.run(["git", *a], cwd=benchmarks.ROOT, capture_output=True,
                                    text=True, timeout=10).stdout.strip()
    return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain",
                                                                  "lr_jax") else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def main(argv):
  del argv
  quick = FLAGS.quick
  ns = [1, 2] if quick else [int(n) for n in FLAGS.ns]
  ns_32 = [] if quick else [int(n) for n in FLAGS.ns_32]
  epochs, epochs_32 = (1, 1) if quick else (FLAGS.epochs, FLAGS.epochs_32)
  rounds = 2 if quick else FLAGS.repeats
  pretrained_n = min(FLAGS.pretrained_n, 2) if quick else FLAGS.pretrained_n
  if min(epochs, rounds, FLAGS.batch_size) < 1:
    raise app.UsageError("--epochs, --repeats and --batch_size must be >= 1")
  os.makedirs(FLAGS.out, exist_ok=True)
  t_start, load_start = time.perf_counter(), benchmarks.loadavg()
  peak = matmul_peak(512 if quick else FLAGS.matmul_size, 2 if quick else FLAGS.matmul_reps)
  print(f"float32 matmul peak: {peak['median_gflops']:.1f} GFLOP/s", flush=True)
  torch_python = _torch_python(FLAGS.peers_venv) if FLAGS.torch else None
  torch_facts = ({"workers": {}} if torch_python else
                 {"skipped": "--notorch" if not FLAGS.torch else "no torch in --peers_venv"})
  groups, flops, frozen = [], {}, None
  for side, sizes, ep, threads in ((8, ns, epochs, FLAGS.torch_threads),
                                   (32, ns_32, epochs_32, FLAGS.torch_threads_32)):
    if not sizes:
      continue
    w = Workload(side, ep, FLAGS.batch_size)
    flops[str(side)] = w.flops
    alone = w.lr_jax_sweep(learning_rates(1, 1e-3))
    alone()  # Compiled once; "alone" runs in every round of N > 1.
    worker = contextlib.nullcontext()
    if torch_python:
      worker = TorchWorker(torch_python, w.save(os.path.join(FLAGS.out, f"digits{side}.npz")),
                           threads)
      torch_facts["version"] = worker.facts["torch"]
      torch_facts["workers"][str(side)] = worker.facts
    with worker as torch_worker:
      for n in sizes:
        t0 = time.perf_counter()
        groups.append(measure_group(w, n, rounds, alone, FLAGS.peer_chunk, torch_worker))
        g = groups[-1]
        med = g["median_s_per_variant"]
        print(f"{side}x{side} N={n}: lr_jax {med['lr_jax']:.4g} s/variant, "
              f"peer {med[g['best_peer']]:.4g} ({g['best_peer']}), "
              + "".join(f"{name} {med[name]:.4g}, " for name in TORCH_SYSTEMS if name in med)
              + f"ratio {g['ratio_to_peer']:.3g}, "
              f"vs alone {g['vs_alone']:.3g} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if side == 8 and pretrained_n:
      frozen = measure_frozen(w, pretrained_n, rounds)
      print(f"frozen / full at N={pretrained_n}: {frozen['ratio']:.3g}", flush=True)
  import jax
  machine = benchmarks.machine_info()
  machine.update(benchmarks.package_versions(["jax", "jaxlib", "flax", "optax", "numpy"]))
  machine["commit"] = _commit()
  result = {"mode": "quick" if quick else "default", "epochs": epochs, "epochs_32": epochs_32,
            "batch_size": FLAGS.batch_size, "hidden": list(HIDDEN), "repeats": rounds,
            "matmul_peak": peak, "flops": flops, "groups": groups, "frozen": frozen,
            "torch": torch_facts,
            "machine": machine, "devices": [str(d) for d in jax.devices()],
            "load_start": load_start, "load_end": benchmarks.loadavg(),
            "wall_s": time.perf_counter() - t_start}
  benchmarks.publish(FLAGS.out, "workload_c", result, tables(result), FLAGS.fill_doc)
  if FLAGS.fill_doc:
    shutil.copyfile(os.path.join(FLAGS.out, JSON_NAME),
                    os.path.join(os.path.dirname(benchmarks.DOC), JSON_NAME))


if __name__ == "__main__":
  app.run(main)
