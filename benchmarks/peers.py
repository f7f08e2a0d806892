r"""Workload P written the usual way in other frameworks: the peers lr_jax is measured against.

Each peer trains one learning rate at a time, as its users write it:

- `flax`: the Flax examples' shape (`examples/mnist/train.py`): a jitted
  `train_step(state, x, y)` on a `flax.training.train_state.TrainState`, called per minibatch
  from a Python loop; the host shuffles and slices the batches. The optimizer is
  `optax.inject_hyperparams(optax.adam)` built *once*, and each learning rate is written into
  the optimizer state, so one compiled step serves every learning rate. (A naive
  `optax.adam(lr)`, or a new `inject_hyperparams(...)` per rate, puts a new optimizer object
  in the state's static fields, and every learning rate retraces and recompiles.)
- `torch`: a PyTorch eager loop (`nn.Sequential`, `torch.optim.Adam`, `loss.backward()`),
  by default on one intra-op thread, its fastest setting for matmuls this small.
- `keras`: Keras 3 `model.fit` on the TensorFlow backend, a new model per learning rate.

Three more train all N learning rates at once, the way an expert in each framework vectorizes a
sweep by hand; they are the yardsticks for what lr_jax's own features cost:

- `jaxsweep`: a minimal hand-written JAX sweep, `jax.jit(jax.vmap(train))` over the learning
  rates with epochs and minibatches a `lax.scan`, `optax.inject_hyperparams(optax.adam)`, one
  init and one minibatch order shared by every learning rate, nothing else: no early stopping,
  no divergence checks, no history (each epoch's validation overwrites the last, so it is
  computed, as workload P asks, but only the final one is kept). Its keys are split as
  `flax`'s are, so at N = 1 it trains exactly what `flax` trains.
- `lean`: (l), the leanest version of `jaxsweep`'s arithmetic (issue 23): a plain dict of
  weights and `x @ w` instead of a Flax module, each epoch's order drawn inside the program
  from `fold_in(key, epoch)`, the last partial batch a masked step of the full shape (as
  lr_jax trains it), the variants vmapped in chunks of 16 (`lean_sweep_program`).
- `torchvmap`: PyTorch's own vectorized ensemble, `torch.func.stack_module_state` +
  `functional_call` + `torch.func.vmap(torch.func.grad(...))` over N copies of one model, with
  a hand-written Adam whose learning rate is a per-model tensor (torch's optimizers take one
  float). Its model and minibatch order are seeded as `torch`'s are, so at N = 1 it trains
  what `torch` trains.

All train the same MLP (64-128-10, ReLU) with Adam (eps 1e-8 everywhere) on the same
standardized digits split (written by `benchmarks.throughput` to an .npz), batch 32 with the
last partial batch kept, shuffled every epoch, validation on the whole validation set after
every epoch. Initializers are each framework's default, so accuracies agree to within noise,
not bitwise.

The worker is run in a fresh process per measurement (its peak memory is its own):

    python -m benchmarks.peers --spec=spec.json

`spec.json` holds `system`, `data`, `learning_rates`, `epochs`, `batch_size`, `seed`, `repeats`,
`torch_threads` (0 keeps torch's default) and `result` (the JSON file to write). torch,
torchvmap and keras run from the peers' own virtual environment (`python3 -m venv .venv-peers &&
.venv-peers/bin/pip install -e '.[peers]'`), so the main one stays clean. Only numpy, absl, the
standard library and the peer's framework are imported here; lr_jax is not.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from absl import app, flags

from benchmarks import current_rss_mb, loadavg, package_versions, peak_rss_mb, write_json

# What a learning rate's training run returns: final validation accuracy and loss (last epoch).
Outcome = tuple[float, float]


def load_data(path: str) -> dict[str, np.ndarray]:
  """The standardized split: `x_train` [n, 64] float32, `y_train` [n] int32, `x_val`, `y_val`."""
  with np.load(path) as f:
    return {k: f[k] for k in ("x_train", "y_train", "x_val", "y_val")}


def _num_classes(data: dict[str, np.ndarray]) -> int:
  return int(max(data["y_train"].max(), data["y_val"].max())) + 1


# ----------------------------------------------------------------------------- compile events


def watch_compiles() -> dict[str, float]:
  """Starts summing JAX's compile-time events into the returned dict (live-updated).

  Keys: `trace_s` (Python tracing to a jaxpr), `lower_s` (jaxpr to StableHLO), `compile_s`
  (XLA compile, or loading it from the persistent cache), `cache_hits`, `cache_misses`.
  """
  from jax import monitoring
  events = {"trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0, "cache_hits": 0, "cache_misses": 0}
  durations = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
               "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
               "/jax/core/compile/backend_compile_duration": "compile_s"}
  counts = {"/jax/compilation_cache/cache_hits": "cache_hits",
            "/jax/compilation_cache/cache_misses": "cache_misses"}

  def on_duration(event, duration, **kwargs):
    del kwargs
    if event in durations:
      events[durations[event]] += float(duration)

  def on_event(event, **kwargs):
    del kwargs
    if event in counts:
      events[counts[event]] += 1

  monitoring.register_event_duration_secs_listener(on_duration)
  monitoring.register_event_listener(on_event)
  return events


def enable_jax_cache() -> None:
  """Uses `$JAX_COMPILATION_CACHE_DIR` as a persistent cache for every program, as lr_jax does."""
  import jax
  path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if path:
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# ----------------------------------------------------------------------------- the harness


def measure(run_all: Callable[[], Sequence[Outcome]], repeats: int,
            first: Callable[[], object] | None = None, first_share: float = 1.0) -> dict:
  """Times a first call, then `run_all` (train every variant once) `repeats` times.

  The first call pays each system's one-time costs (tracing, compiling, caches, lazy imports);
  `first_call_overhead_s` is its time minus what the same work costs later.

  Args:
    run_all: trains every variant; returns one outcome per variant.
    repeats: timed calls of `run_all` (at least 1).
    first: the first call; default `run_all`. A system that trains one variant at a time
      passes one variant here, so that a large N is not trained once more only to warm up.
    first_share: the first call's share of `run_all`'s work (1/N for one variant of N).

  Returns:
    A JSON-ready dict: `first_s`, `runs_s`, `median_s`, `min_s`, `max_s`,
    `first_call_overhead_s`, `final_val_accuracy` / `final_val_loss` (per variant, from the
    last run), `rss_before_mb` (after setup, before training) and `peak_rss_mb`.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  rss_before = current_rss_mb()
  t0 = time.perf_counter()
  (first or run_all)()
  first_s = time.perf_counter() - t0
  runs = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    outcomes = list(run_all())
    runs.append(time.perf_counter() - t0)
  median = statistics.median(runs)
  return {
      "first_s": first_s, "first_share": first_share, "runs_s": runs, "median_s": median,
      "min_s": min(runs), "max_s": max(runs),
      "first_call_overhead_s": first_s - first_share * median,
      "final_val_accuracy": [float(a) for a, _ in outcomes],
      "final_val_loss": [float(l) for _, l in outcomes],
      "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
  }


# ----------------------------------------------------------------------------- flax


def _flax_mlp(hidden: int, num_classes: int):
  """The peers' MLP as a linen module: Dense(hidden), ReLU, Dense(num_classes)."""
  import flax.linen as nn

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(hidden)(x))
      return nn.Dense(num_classes)(x)

  return MLP()


@functools.lru_cache(maxsize=None)
def _flax_program(num_features: int, hidden: int, num_classes: int):
  """The model and the jitted steps, built once per process so every learning rate shares them."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax.training import train_state

  model = _flax_mlp(hidden, num_classes)
  # One optimizer object for the whole process: TrainState keeps `tx` as a static field, so a
  # new one per learning rate would be a new jit cache key, i.e. a recompile per rate.
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3, eps=1e-8)
  traces = {"train_step": 0, "eval_step": 0}

  @jax.jit
  def train_step(state, x, y):
    traces["train_step"] += 1

    def loss_fn(params):
      logits = state.apply_fn({"params": params}, x)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state, loss, jnp.mean(jnp.argmax(logits, -1) == y)

  @jax.jit
  def eval_step(params, x, y):
    traces["eval_step"] += 1
    logits = model.apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)

  def create_state(key, learning_rate: float):
    params = model.init(key, jnp.ones((1, num_features), jnp.float32))["params"]
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    hyper = dict(state.opt_state.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))

  return create_state, train_step, eval_step, traces


def train_flax(data, learning_rate: float, *, epochs: int, batch_size: int, seed: int) -> Outcome:
  """One learning rate, Flax-example style; returns the last epoch's validation accuracy, loss."""
  import jax
  x, y = data["x_train"], data["y_train"]
  create_state, train_step, eval_step, _ = _flax_program(x.shape[1], 128, 10)
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  state = create_state(init_key, learning_rate)
  n = len(x)
  for _ in range(epochs):
    key, perm_key = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(perm_key, n))
    epoch_loss, epoch_accuracy = [], []
    # Unlike the MNIST example, the last partial batch is kept (as lr_jax and Keras do), so
    # every system does the same work; it is a second shape, compiled once.
    for start in range(0, n, batch_size):
      idx = perm[start:start + batch_size]
      state, loss, accuracy = train_step(state, x[idx], y[idx])
      epoch_loss.append(loss)
      epoch_accuracy.append(accuracy)
    # The example logs the epoch's mean training metrics: one host sync per epoch.
    jax.device_get((epoch_loss, epoch_accuracy))
    val_loss, val_accuracy = eval_step(state.params, data["x_val"], data["y_val"])
    val_loss, val_accuracy = float(val_loss), float(val_accuracy)
  return val_accuracy, val_loss


# ----------------------------------------------------------------------------- torch


def train_torch(data, learning_rate: float, *, epochs: int, batch_size: int, seed: int) -> Outcome:
  """One learning rate, a PyTorch eager loop; returns the last epoch's validation accuracy, loss."""
  import torch
  from torch import nn
  from torch.nn import functional as F
  torch.manual_seed(seed)
  x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]).long()
  x_val, y_val = torch.from_numpy(data["x_val"]), torch.from_numpy(data["y_val"]).long()
  model = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, 10))
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-8)
  order = torch.Generator().manual_seed(seed)
  n = len(x)
  for _ in range(epochs):
    model.train()
    perm = torch.randperm(n, generator=order)
    running = 0.0  # The usual running loss: `.item()` syncs every step, as such loops do.
    for start in range(0, n, batch_size):
      idx = perm[start:start + batch_size]
      optimizer.zero_grad(set_to_none=True)
      loss = F.cross_entropy(model(x[idx]), y[idx])
      loss.backward()
      optimizer.step()
      running += loss.item() * len(idx)
    model.eval()
    with torch.no_grad():
      logits = model(x_val)
      val_loss = float(F.cross_entropy(logits, y_val))
      val_accuracy = float((logits.argmax(-1) == y_val).float().mean())
  return val_accuracy, val_loss


# ----------------------------------------------------------------------------- jaxsweep


def hand_sweep_program(model, num_features: int, n_train: int, epochs: int, batch_size: int,
                       *, prepare=None, chunk: int = 0):
  """The jitted `init` and `sweep` of a hand-written `jit(vmap(scan))` sweep of a Flax model.

  Adam per learning rate (`inject_hyperparams`), one shared init and minibatch order,
  minibatches of `batch_size` with the last partial batch kept, validation every epoch.

  Args:
    model: a linen module taking flat [B, num_features] rows.
    num_features, n_train, epochs, batch_size: the shapes and the schedule.
    prepare: params -> params inside the loss (e.g. `stop_gradient` on a frozen part); None:
      the params as they are.
    chunk: > 0: `lax.map(..., batch_size=chunk)` over the variants (each chunk vmapped,
      trained through every epoch, then the next); 0: every variant in one vmap.

  Returns:
    `init(key, n)` -> (params_N, perms_ExN) and `sweep(lrs_N, params_N, x_train, y_train,
    x_val, y_val, perms_ExN)` -> (params, val_accuracy_N, val_loss_N) of the last epoch.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from jax import lax

  num_full, tail = divmod(n_train, batch_size)

  def loss_fn(params, x_BxD, y_B):
    if prepare is not None:
      params = prepare(params)
    logits_BxC = model.apply({"params": params}, x_BxD)
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y_B).mean()

  def train_one(lr, params, x_train_NxD, y_train_N, x_val_VxD, y_val_V, perms_ExN):
    """One learning rate's epochs; under `vmap` only `lr` and `params` carry the variant axis."""
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr, eps=1e-8)

    def step(carry, batch):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, *batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    def epoch(carry, perm_N):
      params, opt_state, _, _ = carry
      # The gathers read only unbatched operands, so vmap leaves them shared by every variant.
      x_NxD, y_N = x_train_NxD[perm_N], y_train_N[perm_N]
      full = num_full * batch_size
      batches = (x_NxD[:full].reshape(num_full, batch_size, -1),
                 y_N[:full].reshape(num_full, batch_size))
      state, _ = lax.scan(step, (params, opt_state), batches)
      if tail:  # The last partial batch is kept, as every system here does: a second shape.
        state, _ = step(state, (x_NxD[full:], y_N[full:]))
      params, opt_state = state
      logits_VxC = model.apply({"params": params}, x_val_VxD)
      val_loss = optax.softmax_cross_entropy_with_integer_labels(logits_VxC, y_val_V).mean()
      val_accuracy = jnp.mean(jnp.argmax(logits_VxC, -1) == y_val_V)
      return (params, opt_state, val_accuracy, val_loss), None

    zero = jnp.zeros((), jnp.float32)
    (params, _, val_accuracy, val_loss), _ = lax.scan(
        epoch, (params, tx.init(params), zero, zero), perms_ExN)
    return params, val_accuracy, val_loss

  @functools.partial(jax.jit, static_argnums=1)
  def init(key, n):
    """The shared init, one copy per variant, and every epoch's minibatch order (as `flax`)."""
    key, init_key = jax.random.split(key)
    params = model.init(init_key, jnp.ones((1, num_features), jnp.float32))["params"]
    perms = []
    for _ in range(epochs):
      key, perm_key = jax.random.split(key)
      perms.append(jax.random.permutation(perm_key, n_train))
    params_N = jax.tree.map(lambda p: jnp.broadcast_to(p, (n, *p.shape)), params)
    return params_N, jnp.stack(perms)

  # The initial parameters are donated: the trained ones are written into their buffers.
  @functools.partial(jax.jit, donate_argnums=1)
  def sweep(lrs_N, params_N, x_train, y_train, x_val, y_val, perms_ExN):
    if chunk:  # `chunk` variants vmapped at a time, the chunks one after another.
      return lax.map(lambda a: train_one(*a, x_train, y_train, x_val, y_val, perms_ExN),
                     (lrs_N, params_N), batch_size=chunk)
    return jax.vmap(train_one, in_axes=(0, 0, None, None, None, None, None))(
        lrs_N, params_N, x_train, y_train, x_val, y_val, perms_ExN)

  return init, sweep


@functools.lru_cache(maxsize=None)
def _jax_sweep_program(n_train: int, num_features: int, hidden: int, num_classes: int,
                       epochs: int, batch_size: int):
  """The hand-written JAX sweep of workload P's MLP (`hand_sweep_program`), built once per
  shape."""
  return hand_sweep_program(_flax_mlp(hidden, num_classes), num_features, n_train, epochs,
                            batch_size)


def train_jax_sweep(data, learning_rates: Sequence[float], *, epochs: int, batch_size: int,
                    seed: int) -> list[Outcome]:
  """Every learning rate in one `jit(vmap(scan))` program; the last epoch's accuracy and loss."""
  import jax
  import jax.numpy as jnp
  arrays = _device_arrays(data)
  init, sweep = _jax_sweep_program(len(data["x_train"]), data["x_train"].shape[1], 128,
                                   _num_classes(data), epochs, batch_size)
  params_N, perms = init(jax.random.PRNGKey(seed), len(learning_rates))
  _, accuracy_N, loss_N = sweep(jnp.asarray(learning_rates, jnp.float32), params_N,
                                *arrays, perms)
  accuracy_N, loss_N = jax.device_get((accuracy_N, loss_N))
  return [(float(a), float(l)) for a, l in zip(accuracy_N, loss_N)]


_DEVICE_ARRAYS: list = []


def _device_arrays(data) -> tuple:
  """The data on the device once per process: a sweep does not copy it in every call."""
  import jax
  if not _DEVICE_ARRAYS or _DEVICE_ARRAYS[0] is not data:
    _DEVICE_ARRAYS[:] = [data, tuple(jax.device_put(data[k])
                                     for k in ("x_train", "y_train", "x_val", "y_val"))]
  return _DEVICE_ARRAYS[1]


# ----------------------------------------------------------------------------- lean

# Variants vmapped at a time: `lax.map(..., batch_size=LEAN_CHUNK)` over the learning rates.
LEAN_CHUNK = 16


@functools.lru_cache(maxsize=None)
def lean_sweep_program(num_features: int, hidden: int, num_classes: int, n_train: int,
                       epochs: int, batch_size: int):
  """The leanest hand-written `jit(vmap(scan))` sweep of workload P's arithmetic, (l).

  The issue-23 peer (an expert's afternoon): a plain dict of weights `{w1, b1, w2, b2}` and
  `relu(x @ w1 + b1) @ w2 + b2`, no Flax module; one init shared by every variant (Flax
  Dense's defaults: lecun_normal kernels, zero biases); each epoch's order drawn inside the
  program, `jax.random.permutation(fold_in(order_key, epoch))`; Adam as
  `optax.inject_hyperparams(optax.adam)(learning_rate=lr, eps=1e-8)` with `lr` a vmapped
  array; epochs and minibatches a `lax.scan`; validation accuracy and loss every epoch, the
  last kept; the initial parameters donated. The data is unbatched (shared by the variants).

  Every training row trains every epoch, as in lr_jax (`train/streams.py`): the epoch's
  order is padded to `ceil(n / B)` batches of B with weight-0 rows, and the loss is the
  weighted mean over a batch's real rows, so the last partial batch is one masked step of the
  same shape inside the scan.

  Micro-variants tried (workload P, N = 64, 20 epochs, this repository's shared 2-core
  AVX-512 machine; s per variant, medians of interleaved rounds, (f) = `train_jax_sweep` in the
  same rounds). On a quiet machine (load ~1.7; 7 rounds) they all ran within noise of each
  other and of (f): this one without chunking 0.0233, gathers per step (`x[idx_B]` in the step
  instead of `x[perm]` once an epoch) 0.0240, the vmap inside the epoch scan (a `scan` over
  epochs of vmapped steps) 0.0231, XLA copy insertion with region analysis 0.0231, those three
  together 0.0228, (f) 0.0233. The tail as a second step shape after the scan instead of the
  masked batch: 0.0230 against 0.0230 (5 rounds, both with region analysis). Under load (25
  rounds of 5 epochs, load 4-5; per-round ratios to (f), median): unchunked 1.04, gathers per
  step 1.00, vmap inside 1.01, tail as second shape 1.035, region analysis 1.00, chunks of 16
  variants 0.92, chunks of 16 with region analysis 0.94 (chunks of 8 / 32: 1.02 / 1.01 where
  16 gave 1.03, 11 rounds under load: 16 gave 0.93). Kept: the simplest form (vmap outside
  the epoch scan, gathers once an epoch, the masked tail, no compiler options) with the
  variants in `lax.map` chunks of `LEAN_CHUNK` = 16, as lr_jax chunks workload P.

  Returns:
    `init(key, n)` -> params_N (the shared init, one copy per variant) and
    `sweep(order_key, lrs_N, params_N, x_train, y_train, x_val, y_val)` -> (params_N,
    val_accuracy_N, val_loss_N) of the last epoch; params_N is donated.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from jax import lax

  steps = -(-n_train // batch_size)
  pad = steps * batch_size - n_train
  # Weight 1 for the real rows, 0 for the padding that fills the last batch (as lr_jax).
  w_MxB = np.concatenate([np.ones(n_train, np.float32), np.zeros(pad, np.float32)]
                         ).reshape(steps, batch_size)

  def forward(p, x_BxD):
    return jnp.maximum(x_BxD @ p["w1"] + p["b1"], 0.0) @ p["w2"] + p["b2"]

  def loss_fn(p, x_BxD, y_B, w_B):
    loss_B = optax.softmax_cross_entropy_with_integer_labels(forward(p, x_BxD), y_B)
    return jnp.sum(loss_B * w_B) / jnp.sum(w_B)

  def train_one(order_key, lr, p, x_train_NxD, y_train_N, x_val_VxD, y_val_V):
    """One learning rate's epochs; under `vmap` only `lr` and `p` carry the variant axis."""
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr, eps=1e-8)

    def step(carry, batch):
      p, opt_state = carry
      grads = jax.grad(loss_fn)(p, *batch)
      updates, opt_state = tx.update(grads, opt_state, p)
      return (optax.apply_updates(p, updates), opt_state), None

    def epoch(carry, e):
      p, opt_state, _, _ = carry
      # Unbatched operands only: vmap leaves the order and the gathers shared by the variants.
      perm = jax.random.permutation(jax.random.fold_in(order_key, e), n_train)
      idx_MxB = jnp.pad(perm, (0, pad)).reshape(steps, batch_size)
      (p, opt_state), _ = lax.scan(step, (p, opt_state),
                                   (x_train_NxD[idx_MxB], y_train_N[idx_MxB], w_MxB))
      logits_VxC = forward(p, x_val_VxD)
      val_accuracy = jnp.mean(jnp.argmax(logits_VxC, -1) == y_val_V)
      val_loss = optax.softmax_cross_entropy_with_integer_labels(logits_VxC, y_val_V).mean()
      return (p, opt_state, val_accuracy, val_loss), None

    zero = jnp.zeros((), jnp.float32)
    (p, _, val_accuracy, val_loss), _ = lax.scan(epoch, (p, tx.init(p), zero, zero),
                                                 jnp.arange(epochs))
    return p, val_accuracy, val_loss

  @functools.partial(jax.jit, static_argnums=1)
  def init(key, n):
    w1_key, w2_key = jax.random.split(key)
    kernel = jax.nn.initializers.lecun_normal()
    p = {"w1": kernel(w1_key, (num_features, hidden), jnp.float32),
         "b1": jnp.zeros((hidden,), jnp.float32),
         "w2": kernel(w2_key, (hidden, num_classes), jnp.float32),
         "b2": jnp.zeros((num_classes,), jnp.float32)}
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), p)

  @functools.partial(jax.jit, donate_argnums=2)
  def sweep(order_key, lrs_N, params_N, x_train, y_train, x_val, y_val):
    # lax.map vmaps `train_one` over chunks of LEAN_CHUNK variants, one chunk after another.
    return lax.map(lambda a: train_one(order_key, *a, x_train, y_train, x_val, y_val),
                   (lrs_N, params_N), batch_size=min(LEAN_CHUNK, lrs_N.shape[0]))

  return init, sweep


def lean_keys(seed: int):
  """(init_key, order_key) of `train_lean_sweep` at `seed`."""
  import jax
  return tuple(jax.random.split(jax.random.PRNGKey(seed)))


def train_lean_sweep(data, learning_rates: Sequence[float], *, epochs: int, batch_size: int,
                     seed: int) -> list[Outcome]:
  """Every learning rate in the lean program (`lean_sweep_program`); the last epoch's accuracy
  and loss per learning rate."""
  import jax
  import jax.numpy as jnp
  arrays = _device_arrays(data)
  init, sweep = lean_sweep_program(data["x_train"].shape[1], 128, _num_classes(data),
                                   len(data["x_train"]), epochs, batch_size)
  init_key, order_key = lean_keys(seed)
  _, accuracy_N, loss_N = sweep(order_key, jnp.asarray(learning_rates, jnp.float32),
                                init(init_key, len(learning_rates)), *arrays)
  accuracy_N, loss_N = jax.device_get((accuracy_N, loss_N))
  return [(float(a), float(l)) for a, l in zip(accuracy_N, loss_N)]


# ----------------------------------------------------------------------------- torchvmap


def train_torch_vmap(data, learning_rates: Sequence[float], *, epochs: int, batch_size: int,
                     seed: int) -> list[Outcome]:
  """Every learning rate as one `torch.func` ensemble; the last epoch's accuracy and loss."""
  import torch
  from torch import nn

  from benchmarks.torch_cnn import ensemble
  torch.manual_seed(seed)
  x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"]).long()
  x_val, y_val = torch.from_numpy(data["x_val"]), torch.from_numpy(data["y_val"]).long()
  # Seeded as `train_torch`'s model is, then copied: every learning rate starts from it.
  base = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, _num_classes(data)))
  accuracies, losses = ensemble(base, x, y, x_val, y_val, learning_rates, epochs=epochs,
                                batch_size=batch_size, seed=seed)
  return list(zip(accuracies, losses))


# ----------------------------------------------------------------------------- keras


def _keras():
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras
  return keras


def train_keras(data, learning_rate: float, *, epochs: int, batch_size: int, seed: int) -> Outcome:
  """One learning rate, Keras 3 `fit`; returns the last epoch's validation accuracy, loss."""
  keras = _keras()
  # Keras' advice for a loop that builds models: start each from a clean global state.
  keras.backend.clear_session()
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((data["x_train"].shape[1],)),
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(10),
  ])
  model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  history = model.fit(data["x_train"], data["y_train"], batch_size=batch_size, epochs=epochs,
                      validation_data=(data["x_val"], data["y_val"]), shuffle=True, verbose=0)
  _KERAS_FACTS["jit_compile"] = bool(getattr(model, "jit_compile", False))
  return float(history.history["val_accuracy"][-1]), float(history.history["val_loss"][-1])


_KERAS_FACTS: dict[str, object] = {}

SYSTEMS: dict[str, Callable[..., Outcome]] = {
    "flax": train_flax, "torch": train_torch, "keras": train_keras}
# These train every learning rate in one call: (data, learning_rates, ...) -> [Outcome].
BATCHED: dict[str, Callable[..., list[Outcome]]] = {
    "jaxsweep": train_jax_sweep, "lean": train_lean_sweep, "torchvmap": train_torch_vmap}


def _facts(system: str) -> dict:
  """Versions and thread counts of the framework that ran (for the benchmark's record)."""
  if system == "flax":
    import jax
    facts = package_versions(["jax", "jaxlib", "flax", "optax"])
    facts["backend"] = jax.default_backend()
    facts["traces"] = dict(_flax_program(64, 128, 10)[3])
    return facts
  if system in ("jaxsweep", "lean"):
    import jax
    return dict(package_versions(["jax", "jaxlib", "flax", "optax"]), backend=jax.default_backend())
  if system in ("torch", "torchvmap"):
    import torch
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads()}
  keras = _keras()
  import tensorflow as tf
  return {"keras": keras.__version__, "tensorflow": tf.__version__,
          "backend": keras.backend.backend(),
          "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
          **_KERAS_FACTS}


def run_spec(spec: dict) -> dict:
  """Runs one measurement described by `spec` (see the module docstring); returns its record."""
  start_load = loadavg()
  system = spec["system"]
  events = None
  if system in ("flax", "jaxsweep", "lean"):
    enable_jax_cache()
    events = watch_compiles()
  elif system in ("torch", "torchvmap"):
    import torch  # Imported before timing.
    if spec.get("torch_threads"):
      # For 32x64 @ 64x128 matmuls OpenMP threads cost more than they give: on the 2-core
      # development machine, 20 epochs took 1.0 s with one thread and 4.0 s with torch's
      # default of two (and up to 50 s with two on a busy machine). torchvmap is pinned alike,
      # so the two torch peers differ only in how they vectorize.
      torch.set_num_threads(spec["torch_threads"])
  else:
    _keras()
  data = load_data(spec["data"])
  lrs = [float(lr) for lr in spec["learning_rates"]]
  kwargs = dict(epochs=spec["epochs"], batch_size=spec["batch_size"], seed=spec.get("seed", 0))
  if system in BATCHED:
    # All N at once, first call included: it compiles (or warms up) the N-wide program.
    run_all = functools.partial(BATCHED[system], data, lrs, **kwargs)
    record = measure(run_all, spec.get("repeats", 3))
  else:
    run_one = functools.partial(SYSTEMS[system], data, **kwargs)
    record = measure(lambda: [run_one(lr) for lr in lrs], spec.get("repeats", 3),
                     first=lambda: run_one(lrs[0]), first_share=1 / len(lrs))
  record.update(system=system, n=len(lrs), learning_rates=lrs, facts=_facts(system),
                loadavg_start=start_load, loadavg_end=loadavg())
  if events is not None:
    record["compile_events"] = dict(events)
  return record


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  with open(FLAGS.spec) as f:
    spec = json.load(f)
  write_json(spec["result"], run_spec(spec))


if __name__ == "__main__":
  flags.DEFINE_string("spec", None, "JSON file describing the measurement.", required=True)
  FLAGS = flags.FLAGS
  app.run(main)
