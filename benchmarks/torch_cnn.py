"""Workload C's PyTorch peers: a worker that trains workload C's CNN on request.

    .venv-peers/bin/python benchmarks/torch_cnn.py DATA.npz [--threads N]

`DATA.npz` holds `x_train` [n, side * side] (float32, each row an image in row-major order),
`y_train` [n] (int), `x_val`, `y_val` and `side`, written by `benchmarks.workload_c` from
lr_jax's split. The images are made NCHW torch tensors once, at start; `--threads` sets torch's
intra-op threads (0: torch's default, one per core). The worker then writes one JSON line,

    {"torch": torch.__version__, "threads": ..., "interop_threads": ..., "side": ...,
     "n_train": ..., "n_val": ...}

and answers each JSON line on stdin with one on stdout, until stdin closes:

    {"system": "torch" | "torchvmap", "lrs": [...], "epochs": 5, "batch_size": 32, "seed": 0}
    -> {"seconds": ..., "val_accuracy": [...], "val_loss": [...]}

(`{"error": traceback}` where a request fails). `seconds` is the wall clock of the training
alone, measured here (models built, trained and validated; no data conversion, no pipe);
`val_accuracy` and `val_loss` are each learning rate's at the last epoch.

Both systems train workload C's CNN (lr_jax's `CNN(hidden=(16, 32))` in torch's layers:
`Conv2d(1, 16, 3, padding=1)`, ReLU, `AvgPool2d(2)`, `Conv2d(16, 32, 3, padding=1)`, ReLU,
`AvgPool2d(2)`, `Flatten`, `Linear(32 * (side // 4)**2, 10)`, torch's default init) with Adam
(eps 1e-8), minibatches of `batch_size` with the last partial batch kept, a new shuffled order
every epoch and validation on the whole validation set after every epoch, under `no_grad`:

- `torch`: the eager loop a practitioner writes, one model and one `torch.optim.Adam(lr)` per
  learning rate, `loss.backward()` per minibatch, the learning rates one after another.
- `torchvmap`: PyTorch's own vectorized ensemble, `torch.func.stack_module_state` of N copies
  of one model + `functional_call` + `torch.func.vmap(torch.func.grad(loss))`, with a
  hand-written Adam (optax's and torch's formula) whose learning rate is a per-model tensor,
  one minibatch order shared by every model (as `benchmarks.peers.train_torch_vmap`).

Every model starts from `torch.manual_seed(seed)` and every minibatch order from a generator
seeded with `seed`, so at N = 1 the two train the same model on the same batches.

Only torch, numpy and the standard library are imported here (not jax, not lr_jax): the
worker runs in the peers' virtual environment (`python3 -m venv .venv-peers &&
.venv-peers/bin/pip install torch==2.13.0 numpy`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.nn import functional as F

NUM_CLASSES = 10
# Each learning rate's validation accuracy and loss at the last epoch.
Outcome = tuple[list[float], list[float]]


def load(path: str) -> dict:
  """`side` and the .npz's arrays as torch tensors, the images NCHW [n, 1, side, side]."""
  with np.load(path) as f:
    side = int(f["side"])
    data = {"side": side}
    for split in ("train", "val"):
      x = np.ascontiguousarray(f[f"x_{split}"], np.float32)
      data[f"x_{split}"] = torch.from_numpy(x.reshape(len(x), 1, side, side))
      data[f"y_{split}"] = torch.from_numpy(f[f"y_{split}"].astype(np.int64))
  return data


def cnn(side: int) -> nn.Sequential:
  """Workload C's CNN: 3x3 SAME convs 16 and 32, each then relu and a 2x2 average pool; dense."""
  return nn.Sequential(
      nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
      nn.Flatten(), nn.Linear(32 * (side // 4)**2, NUM_CLASSES))


def train_torch(data, lrs: Sequence[float], *, epochs: int, batch_size: int,
                seed: int) -> Outcome:
  """The learning rates one after another, each a PyTorch eager loop of its own model."""
  x, y, x_val, y_val = data["x_train"], data["y_train"], data["x_val"], data["y_val"]
  n, accuracies, losses = len(x), [], []
  for lr in lrs:
    torch.manual_seed(seed)
    model = cnn(data["side"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
      model.train()
      perm = torch.randperm(n, generator=order)
      for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
      model.eval()
      with torch.no_grad():
        logits = model(x_val)
        val_loss = float(F.cross_entropy(logits, y_val))
        val_accuracy = float((logits.argmax(-1) == y_val).float().mean())
    accuracies.append(val_accuracy)
    losses.append(val_loss)
  return accuracies, losses


def train_torch_vmap(data, lrs: Sequence[float], *, epochs: int, batch_size: int,
                     seed: int) -> Outcome:
  """Every learning rate at once, one `torch.func` ensemble of N copies of one model."""
  # Seeded as `train_torch`'s models are, then copied: every learning rate starts from it.
  torch.manual_seed(seed)
  return ensemble(cnn(data["side"]), data["x_train"], data["y_train"], data["x_val"],
                  data["y_val"], lrs, epochs=epochs, batch_size=batch_size, seed=seed)


def ensemble(base: nn.Module, x, y, x_val, y_val, lrs: Sequence[float], *, epochs: int,
             batch_size: int, seed: int) -> Outcome:
  """PyTorch's vectorized ensemble of `base`: N copies (`stack_module_state`),
  `functional_call` + `vmap(grad(loss))`, Adam as optax and `torch.optim` write it with a
  learning rate per model, one minibatch order (a generator seeded with `seed`) shared by all.
  Also `benchmarks.peers`' MLP `torchvmap`."""
  params, buffers = stack_module_state([copy.deepcopy(base) for _ in lrs])
  # Plain tensors: torch.func differentiates them, and the in-place updates need no autograd.
  params = {k: v.detach() for k, v in params.items()}
  skeleton = copy.deepcopy(base).to("meta")

  def loss_fn(p, b, x_B, y_B):
    return F.cross_entropy(functional_call(skeleton, (p, b), (x_B,)), y_B)

  grads_fn = vmap(grad(loss_fn), in_dims=(0, 0, None, None))
  logits_fn = vmap(lambda p, b, x_B: functional_call(skeleton, (p, b), (x_B,)),
                   in_dims=(0, 0, None))
  # A learning rate per model, shaped to broadcast over each parameter.
  lr = {k: torch.tensor(lrs, dtype=v.dtype).view(-1, *[1] * (v.dim() - 1))
        for k, v in params.items()}
  m = {k: torch.zeros_like(v) for k, v in params.items()}
  v2 = {k: torch.zeros_like(v) for k, v in params.items()}
  b1, b2, eps = 0.9, 0.999, 1e-8
  order = torch.Generator().manual_seed(seed)
  n, t = len(x), 0
  for _ in range(epochs):
    perm = torch.randperm(n, generator=order)
    for start in range(0, n, batch_size):
      idx = perm[start:start + batch_size]
      grads = grads_fn(params, buffers, x[idx], y[idx])
      t += 1
      bc1, bc2 = 1 - b1**t, 1 - b2**t
      for k, p in params.items():
        g = grads[k]
        m[k].mul_(b1).add_(g, alpha=1 - b1)
        v2[k].mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v2[k] / bc2).sqrt_().add_(eps)
        p.sub_(lr[k] * (m[k] / bc1) / denom)
    with torch.no_grad():
      logits = logits_fn(params, buffers, x_val)  # [N, V, C]
      val_loss = F.cross_entropy(logits.permute(0, 2, 1), y_val.expand(len(logits), -1),
                                 reduction="none").mean(-1)
      val_accuracy = (logits.argmax(-1) == y_val).float().mean(-1)
  return [float(a) for a in val_accuracy], [float(l) for l in val_loss]


SYSTEMS = {"torch": train_torch, "torchvmap": train_torch_vmap}


def answer(data, request: dict) -> dict:
  """One request's training, timed here."""
  train = SYSTEMS[request["system"]]
  t0 = time.perf_counter()
  accuracies, losses = train(data, [float(lr) for lr in request["lrs"]],
                             epochs=request["epochs"], batch_size=request["batch_size"],
                             seed=request.get("seed", 0))
  return {"seconds": time.perf_counter() - t0, "val_accuracy": accuracies, "val_loss": losses}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("data", help="the .npz of workload C's arrays")
  parser.add_argument("--threads", type=int, default=1,
                      help="torch's intra-op threads (0: torch's default)")
  args = parser.parse_args()
  # The protocol owns stdout; anything else printed goes to stderr.
  out, sys.stdout = sys.stdout, sys.stderr
  if args.threads:
    torch.set_num_threads(args.threads)
  data = load(args.data)

  def reply(record: dict) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()

  reply({"torch": torch.__version__, "threads": torch.get_num_threads(),
         "interop_threads": torch.get_num_interop_threads(), "side": data["side"],
         "n_train": len(data["x_train"]), "n_val": len(data["x_val"])})
  for line in sys.stdin:
    if not line.strip():
      continue
    try:
      reply(answer(data, json.loads(line)))
    except Exception:  # The parent reports it; the worker stays up for the next request.
      reply({"error": traceback.format_exc()})


if __name__ == "__main__":
  main()
