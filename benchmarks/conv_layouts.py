r"""N per-variant copies of a small CNN on XLA's CPU backend: which layout trains them fastest.

    python -m benchmarks.conv_layouts [--quick] [--out benchmarks/conv_layouts.json]

The engine trains N variants (e.g. N learning rates) in one program, `jax.vmap` over per-variant
parameters. For an MLP that is N times the work in one program; for a CNN on XLA's CPU backend
it was reported *slower per variant* than one variant alone (2.67 s per variant alone, 3.89 s
per variant at N = 16). This script times, for each of several ways to lay out the N variants,
one SGD training step (softmax cross-entropy, `value_and_grad`, `p - lr * g`, every variant)
of the built-in CNN's shape (`lr_jax.models.builtin.CNN` with `hidden=(16, 32)`: 3x3 SAME conv
16, relu, 2x2 average pool, 3x3 SAME conv 32, relu, 2x2 average pool, flatten, dense 10) on
digits images (8x8x1, and upsampled to 32x32x1), batch 32:

- `naive`: `jax.vmap` over per-variant parameters of a one-variant step written with
  `lax.conv_general_dilated` (NHWC/HWIO): what vmap makes of it (its conv batching rule folds
  the variants into channels with `feature_group_count=N`, the same program as `grouped`).
- `grouped`: the variants stacked into channels by hand; the first conv (shared input) is one
  conv with N*16 output channels, later convs `feature_group_count=N`.
- `patches`: im2col with `lax.conv_general_dilated_patches`, then one matmul per layer with a
  variant axis (`einsum('nbhwk,nkc->nbhwc')`; the shared first layer: one matmul with N*16
  columns).
- `shifts`: im2col from 9 shifted slices of the padded input (pad + slice + concatenate, whose
  gradients are slices and pads: no convolution anywhere), then the same matmuls as `patches`.
- `taps`: no im2col; the sum over the 9 taps of shifted input times that tap's [Cin, Cout]
  weights (9 batched matmuls per layer).
- `flax_shifts`: the built-in CNN as a Flax linen module with `nn.Conv` replaced by
  `ShiftConv` (same params, `shifts`' arithmetic for one variant, `nn.avg_pool`), `jax.vmap`ed
  over per-variant params like `naive`: the drop-in the engine could use (`shift_cnn`).
- `map_shifts`: `flax_shifts`' one-variant step, the variants one after another inside the
  one program (`lax.map(..., batch_size=--map_batch)`): smaller working set than vmap's.
- `loop`: N separate one-variant programs called one after another from Python; N = 1 of it
  ("alone") is the yardstick of every ratio.

Two data cases: `shared` (every variant sees the same minibatch: they share a data stream) and
`own` (each variant its own minibatch, x [N, B, H, W, 1]).

Each timed call is one jitted program running `steps` training steps in a `lax.fori_loop`
(as the engine's scan does; `steps` is a traced argument, chosen so that a call takes about
`--target_ms`), compile excluded, `block_until_ready`. The machine is shared, so each group
(image size, data case, N) times all its layouts *and* the one-variant program in interleaved
rounds (the order rotating each round); a layout's ratio is the median over rounds of
(its ms per variant) / (ms of one variant alone in the same round).

Checks. Once per data case (8x8 and 32x32 shared; --quick: 8x8 shared), every layout's
program, with softplus in place of relu, runs one step at N = 4 and its losses and gradients
(recovered from the update at a learning rate of 1e3) are asserted equal to the `loop`
programs' to 1e-4 relative (per parameter array, max |diff| / max |reference|). In every timed
group, the timed (relu) programs run one step first: losses asserted to 1e-4, gradients to
1e-2 and recorded -- with relu, a few pre-activations within rounding of 0 flip their gradient
between summation orders (~1e-3 relative at 32x32, N = 16; ~1e-6 with softplus).

`--context_check` times naive and shifts as one jitted program per step against inside the
fori_loop: XLA's CPU backend rewrites a convolution into the NHWC/HWIO form its Eigen kernel
takes only in the entry computation (`ConvCanonicalization` walks
`module->entry_computation()`), so inside a while loop (scan, fori_loop) the weight-gradient
convolutions (dim_labels f01b_i01o->01bf) run on the slow generic emitter -- with or without
vmap. `--flags_check` (off with --quick) reruns one group in child processes under several
`XLA_FLAGS` settings (each child compares its layouts side by side, so the ratios stay
meaningful across processes). Prints tables and machine facts; writes the numbers to `--out`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

from absl import app, flags

import benchmarks

flags.DEFINE_bool("quick", False, "A run under a minute: 3 groups, no grouped/patches/taps, 5 "
                  "short rounds, no flags check (its numbers are rough).")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "conv_layouts.json"), "The JSON file to write.")
flags.DEFINE_list("layouts", ["naive", "grouped", "patches", "shifts", "taps", "flax_shifts",
                             "map_shifts", "loop"],
                  "Layouts to time.")
flags.DEFINE_list("sizes", ["8", "32"], "Image sides (8: digits; 32: digits upsampled).")
flags.DEFINE_list("ns", ["1", "4", "16", "64"], "Numbers of variants at 8x8 (own data: N > 1).")
flags.DEFINE_list("ns_32", ["1", "4", "16"], "Numbers of variants at 32x32 (N = 64 there costs "
                  "minutes).")
flags.DEFINE_list("data", ["shared", "own"], "Data cases: shared minibatch, own minibatch.")
flags.DEFINE_list("skip", ["8:own:4:*", "8:own:64:*", "8:shared:64:grouped", "32:own:4:*",
                           "32:shared:4:grouped", "32:shared:16:grouped", "32:own:16:naive",
                           "32:own:16:grouped"],
                  "side:data:N:layout entries left out (layout * = the whole group), to keep "
                  "the default run under 4 minutes: at 32x32 naive and grouped take ~1 s a step "
                  "at N = 4 and 2-10 s at N = 16. vmap turns naive into the same grouped convs, "
                  "so naive stands for both there (timed at 32x32 shared N = 4 and 16).")
flags.DEFINE_integer("map_batch", 1, "map_shifts: variants vmapped together in each of "
                     "lax.map's iterations (1: one at a time).", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "Minibatch size.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Interleaved rounds per group (medians of these).",
                     lower_bound=1)
flags.DEFINE_float("target_ms", 20.0, "About how long one timed call (many steps) takes.")
flags.DEFINE_float("slow_ms", 1000.0, "A layout whose single step takes longer than this is "
                   "timed by 3 one-step calls, not interleaved rounds (it is out of the race).")
flags.DEFINE_bool("flags_check", True, "Also time one group under other XLA_FLAGS settings.")
flags.DEFINE_bool("context_check", True, "Also time naive and shifts as one program per step "
                  "against inside a fori_loop.")
flags.DEFINE_string("child", None, "Internal: run one group, print its JSON, exit.")
FLAGS = flags.FLAGS

HIDDEN = (16, 32)
CLASSES = 10
TOL = 1e-4       # Losses always; gradients in `strict_check` (softplus).
RELU_TOL = 1e-2  # Gradients of the timed (relu) programs: kinks flip a few terms.
VERIFY_LR = 1e3
# XLA_FLAGS settings for --flags_check (the installed jaxlib knows these; an unknown flag aborts).
FLAG_SETTINGS = ["", "--xla_cpu_use_thunk_runtime=false", "--xla_cpu_use_xnnpack=true",
                 "--xla_cpu_use_onednn=true"]


# ---------------------------------------------------------------------------- data and params


def load_images(side: int, n: int, batch: int, seed: int = 0):
  """`n` minibatches of standardized digits [n, B, side, side, 1] (bilinear upsampled) and
  labels [n, B]."""
  import jax
  import numpy as np
  from sklearn.datasets import load_digits
  d = load_digits()
  x = ((d.data - d.data.mean()) / d.data.std()).astype(np.float32).reshape(-1, 8, 8, 1)
  rng = np.random.default_rng(seed)
  idx = np.stack([rng.choice(len(x), size=batch, replace=False) for _ in range(n)])
  xs, ys = x[idx], d.target[idx].astype(np.int32)
  if side != 8:
    xs = np.asarray(jax.image.resize(xs, (n, batch, side, side, 1), "bilinear"))
  return xs, ys


def init_params(key, n: int, side: int):
  """N variants' parameters, stacked on a leading axis, as vmap over Flax params stores them:
  ((w1 [N,3,3,1,16], b1 [N,16]), (w2 [N,3,3,16,32], b2 [N,32]), (wd [N,F,10], bd [N,10]))."""
  import jax
  import jax.numpy as jnp
  params, cin, hw = [], 1, side
  for width in HIDDEN:
    key, k = jax.random.split(key)
    w = jax.random.normal(k, (n, 3, 3, cin, width), jnp.float32) / math.sqrt(9 * cin)
    key, k = jax.random.split(key)
    params.append((w, 0.1 * jax.random.normal(k, (n, width), jnp.float32)))
    cin, hw = width, hw // 2
  features = hw * hw * cin
  key, k = jax.random.split(key)
  wd = jax.random.normal(k, (n, features, CLASSES), jnp.float32) / math.sqrt(features)
  params.append((wd, jnp.zeros((n, CLASSES), jnp.float32)))
  return tuple(params)


def flops_per_variant_step(side: int, batch: int) -> float:
  """Conv + dense FLOPs of one training step of one variant: 2 per MAC, x3 for fwd + bwd."""
  macs, cin, hw = 0, 1, side
  for width in HIDDEN:
    macs += hw * hw * 9 * cin * width
    cin, hw = width, hw // 2
  macs += hw * hw * cin * CLASSES
  return 2.0 * 3.0 * macs * batch


# ----------------------------------------------------------------------------- the layouts

DN = ("NHWC", "HWIO", "NHWC")


def pool(h):
  """2x2 average pooling, stride 2, over the [..., H, W, C] axes (any leading axes)."""
  *lead, hh, ww, c = h.shape
  return h.reshape(*lead, hh // 2, 2, ww // 2, 2, c).mean(axis=(-4, -2))


def xent(logits, y):
  """Mean softmax cross-entropy over the last-but-one (batch) axis."""
  import jax
  import jax.numpy as jnp
  logp = jax.nn.log_softmax(logits)
  y = jnp.broadcast_to(y, logits.shape[:-1])                  # A shared [B] for [N,B,10].
  return -jnp.mean(jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0], axis=-1)


def forward_one(p, x, act):
  """One variant: x [B,H,W,1] -> logits [B,10], with lax.conv_general_dilated."""
  import jax
  from jax import lax
  h = x
  for w, b in p[:-1]:
    h = act(lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=DN) + b)
    h = pool(h)
  wd, bd = p[-1]
  return h.reshape(h.shape[0], -1) @ wd + bd


def im2col_shifts(x):
  """[M,H,W,C] -> [M,H,W,9C], features in (kh, kw, c) order: a 3x3 SAME window per pixel."""
  import jax.numpy as jnp
  _, hh, ww, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([xp[:, i:i + hh, j:j + ww, :] for i in range(3) for j in range(3)],
                         axis=-1)


def im2col_patches(x):
  """[M,H,W,C] -> [M,H,W,9C] with lax.conv_general_dilated_patches: (c, kh, kw) order."""
  from jax import lax
  return lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME", dimension_numbers=DN)


def conv_variants(x, w, b, *, shared: bool, method: str = "shifts"):
  """All N variants' 3x3 SAME convolutions at once, without a grouped convolution.

  Args:
    x: [B,H,W,Cin] when `shared` (one input for every variant), else [N,B,H,W,Cin].
    w: [N,3,3,Cin,Cout] (HWIO per variant, as vmap over Flax `nn.Conv` params stores them).
    b: [N,Cout].
    method: "shifts" (im2col from 9 slices), "patches" (lax.conv_general_dilated_patches) or
      "taps" (sum over the 9 taps of shifted input @ that tap's weights).

  Returns:
    [N,B,H,W,Cout].
  """
  import jax.numpy as jnp
  n, _, _, cin, cout = w.shape
  lead = x.shape[:-3]
  flat = x.reshape((-1,) + x.shape[-3:])                      # [M,H,W,Cin], M = B or N*B.
  hh, ww = flat.shape[1], flat.shape[2]
  if method == "taps":
    xp = jnp.pad(flat, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(lead + (hh + 2, ww + 2, cin))
    out = 0.0
    for i in range(3):
      for j in range(3):
        xs = xp[..., i:i + hh, j:j + ww, :]
        spec = "bhwk,nkc->nbhwc" if shared else "nbhwk,nkc->nbhwc"
        out = out + jnp.einsum(spec, xs, w[:, i, j])
  else:
    if method == "shifts":
      cols, wk = im2col_shifts(flat), w.reshape(n, 9 * cin, cout)
    elif method == "patches":
      cols, wk = im2col_patches(flat), w.transpose(0, 3, 1, 2, 4).reshape(n, 9 * cin, cout)
    else:
      raise ValueError(method)
    cols = cols.reshape(lead + (hh, ww, 9 * cin))
    spec = "bhwk,nkc->nbhwc" if shared else "nbhwk,nkc->nbhwc"
    out = jnp.einsum(spec, cols, wk)
  return out + b[:, None, None, None, :]


def forward_matmul(p, x, act, shared: bool, method: str):
  """N variants through `conv_variants`: x [B,H,W,1] or [N,B,H,W,1] -> logits [N,B,10]."""
  import jax
  import jax.numpy as jnp
  h, first = x, True
  for w, b in p[:-1]:
    h = pool(act(conv_variants(h, w, b, shared=shared and first, method=method)))
    first = False
  wd, bd = p[-1]
  return jnp.einsum("nbf,nfk->nbk", h.reshape(h.shape[:2] + (-1,)), wd) + bd[:, None, :]


def forward_grouped(p, x, act, shared: bool):
  """N variants stacked into channels: [B,H,W,N*C] activations, grouped convs after the first."""
  import jax
  import jax.numpy as jnp
  from jax import lax
  n = p[0][0].shape[0]
  if shared:
    h, groups = x, 1                                           # One conv, N*16 outputs.
  else:
    h = jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (-1,))  # [B,H,W,N*Cin].
    groups = n
  for w, b in p[:-1]:
    _, kh, kw, cin, cout = w.shape
    wg = w.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin, n * cout)  # Out channels (n, c).
    h = lax.conv_general_dilated(h, wg, (1, 1), "SAME", dimension_numbers=DN,
                                 feature_group_count=groups) + b.reshape(-1)
    h = pool(act(h))
    groups = n
  wd, bd = p[-1]
  bsz, hh, ww, _ = h.shape
  h = h.reshape(bsz, hh, ww, n, -1)
  wd = wd.reshape(n, hh, ww, h.shape[-1], CLASSES)
  return jnp.einsum("bhwnc,nhwck->nbk", h, wd) + bd[:, None, :]


@functools.lru_cache(maxsize=None)
def shift_cnn(act_name: str = "relu"):
  """The built-in `CNN` (hidden (16, 32), 10 outputs) with `nn.Conv` swapped for `ShiftConv`.

  The recommended drop-in: `ShiftConv` has `nn.Conv`'s parameters (`kernel` [3,3,Cin,Cout],
  `bias` [Cout], same initializers, same names via `name=f"Conv_{i}"`) but computes the 3x3
  SAME convolution as im2col from 9 shifted slices and one matmul. Written for ONE variant; the
  engine's `jax.vmap` over per-variant params then turns the matmul into one matmul with N*Cout
  columns (shared input) or a batched matmul (per-variant input): no convolution is left for
  vmap to turn into a grouped one, nor for XLA's CPU backend to run on its slow in-loop path.
  """
  import flax.linen as nn
  import jax

  class ShiftConv(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):                                     # [B,H,W,Cin] -> [B,H,W,Cout]
      cin = x.shape[-1]
      kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, cin, self.features))
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
      return im2col_shifts(x) @ kernel.reshape(9 * cin, self.features) + bias

  class CNN(nn.Module):                                        # builtin.CNN, ShiftConv inside.
    hidden: tuple
    num_outputs: int

    @nn.compact
    def __call__(self, x):
      act = getattr(jax.nn, act_name)
      h = x
      for i, width in enumerate(self.hidden):
        h = act(ShiftConv(width, name=f"Conv_{i}")(h))
        if h.shape[1] >= 2 and h.shape[2] >= 2:
          h = nn.avg_pool(h, (2, 2), strides=(2, 2))
      return nn.Dense(self.num_outputs)(h.reshape((h.shape[0], -1)))

  return CNN(HIDDEN, CLASSES)


def as_linen_params(p):
  """The canonical tuple params as the built-in CNN's linen variables (one variant)."""
  tree = {f"Conv_{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(p[:-1])}
  tree["Dense_0"] = {"kernel": p[-1][0], "bias": p[-1][1]}
  return {"params": tree}


@functools.lru_cache(maxsize=None)
def make_program(layout: str, shared: bool, context: str = "loop", act_name: str = "relu"):
  """The jitted training program of `layout` (cached: jit reuses it for equal shapes).

  context "loop": (params, lrs, x, y, steps) -> (params after `steps` SGD steps in a
  `lax.fori_loop`, losses of the last step), as the engine's scan runs steps. context "plain":
  (params, lrs, x, y) -> (params after one step, losses), a program per step (the Flax
  examples' shape). `params` are N variants' stacked params (one variant's, unstacked, for
  `loop`); `lrs` [N]; x, y one minibatch (shared) or N of them.
  """
  import jax
  import jax.numpy as jnp
  act = getattr(jax.nn, act_name)

  def sgd(p, lrs, g):
    return jax.tree.map(lambda a, d: a - lrs.reshape((-1,) + (1,) * (a.ndim - 1)) * d, p, g)

  if layout in ("naive", "loop", "flax_shifts", "map_shifts"):
    if layout in ("flax_shifts", "map_shifts"):
      module = shift_cnn(act_name)
      fwd_one = lambda q, x: module.apply(as_linen_params(q), x)
    else:
      fwd_one = lambda q, x: forward_one(q, x, act)

    def step_one(p, lr, x, y):
      loss, g = jax.value_and_grad(lambda q: xent(fwd_one(q, x), y))(p)
      return jax.tree.map(lambda a, d: a - lr * d, p, g), loss
    if layout == "loop":   # One variant (its params without the leading axis) per program.
      step = step_one
    elif layout == "map_shifts":   # The variants one after another inside the program.
      def step(p, lrs, x, y):
        if shared:
          return jax.lax.map(lambda a: step_one(a[0], a[1], x, y), (p, lrs),
                             batch_size=FLAGS.map_batch)
        return jax.lax.map(lambda a: step_one(*a), (p, lrs, x, y), batch_size=FLAGS.map_batch)
    else:
      step = jax.vmap(step_one, in_axes=(0, 0, None, None) if shared else 0)
  else:
    if layout == "grouped":
      fwd = functools.partial(forward_grouped, shared=shared)
    else:
      fwd = functools.partial(forward_matmul, shared=shared, method=layout)

    def step(p, lrs, x, y):
      def total(q):
        losses = xent(fwd(q, x, act), y)                            # [N]: variants are independent,
        return losses.sum(), losses                            # so d(sum)/d(p_n) = d(loss_n).
      (_, losses), g = jax.value_and_grad(total, has_aux=True)(p)
      return sgd(p, lrs, g), losses

  if context == "plain":
    return jax.jit(step)

  @jax.jit
  def program(p, lrs, x, y, steps):
    loss0 = jnp.zeros(jnp.shape(lrs), jnp.float32)
    return jax.lax.fori_loop(0, steps, lambda _, c: step(c[0], lrs, x, y), (p, loss0))
  return program


class Runner:
  """One layout's program for a group, bound to its inputs: `call(steps)` trains `steps` steps."""

  def __init__(self, layout, params, lrs, xs, ys, shared, context="loop", act="relu"):
    import jax
    self.layout, self.n = layout, lrs.shape[0]
    program = make_program(layout, shared, context, act)
    x_of = (lambda i: xs[0]) if shared else (lambda i: xs[i])
    y_of = (lambda i: ys[0]) if shared else (lambda i: ys[i])
    if layout == "loop":     # N programs' inputs, split apart beforehand (not timed).
      args = [(jax.tree.map(lambda a: a[i], params), lrs[i], x_of(i), y_of(i))
              for i in range(self.n)]
      self.call = lambda steps: [program(*a, steps) for a in args]
    elif context == "plain":  # A Python loop of one-step calls, each feeding the next.
      x, y = (xs[0], ys[0]) if shared else (xs, ys)

      def call(steps):
        p, loss = params, None
        for _ in range(steps):
          p, loss = program(p, lrs, x, y)
        return p, loss
      self.call = call
    else:
      x, y = (xs[0], ys[0]) if shared else (xs, ys)
      self.call = lambda steps: program(params, lrs, x, y, steps)

  def outputs(self, steps):
    """(params [N,...] leaves, losses [N]) after `steps` steps, as numpy."""
    import jax
    import numpy as np
    out = jax.block_until_ready(self.call(steps))
    if self.layout == "loop":
      p = jax.tree.map(lambda *a: np.stack(a), *[o[0] for o in out])
      return p, np.stack([np.asarray(o[1]) for o in out])
    return jax.tree.map(np.asarray, out[0]), np.asarray(out[1])

  def seconds(self, steps):
    import jax
    t0 = time.perf_counter()
    jax.block_until_ready(self.call(steps))
    return time.perf_counter() - t0


def one_step_errors(runners: dict, params) -> dict:
  """Each layout's one-step losses and gradients against `loop`'s: max relative error.

  The runners were built with learning rates VERIFY_LR, so (p0 - p1) / VERIFY_LR recovers each
  gradient (to ~1e-7 relative) from the programs themselves. Per parameter array, and for the
  losses: max |diff| / max |reference|.
  """
  import jax
  import numpy as np
  p0 = jax.tree.map(np.asarray, params)
  grads, losses = {}, {}
  for name, r in runners.items():
    p1, loss = r.outputs(1)
    grads[name] = jax.tree.leaves(jax.tree.map(lambda a, b: (a - b) / VERIFY_LR, p0, p1))
    losses[name] = loss
  rel = lambda a, b: float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))
  return {name: {"loss": rel(losses[name], losses["loop"]),
                 "grads": max(rel(a, b) for a, b in zip(grads[name], grads["loop"]))}
          for name in runners if name != "loop"}


def group_inputs(side: int, n: int, batch: int):
  """A group's minibatches (N of them, or the first one shared), params and learning rates."""
  import jax
  import jax.numpy as jnp
  xs, ys = load_images(side, n, batch)
  params = init_params(jax.random.key(side * 1000 + n), n, side)
  lrs = jnp.asarray([0.01 * 1.3 ** i for i in range(n)], jnp.float32)
  return jnp.asarray(xs), jnp.asarray(ys), params, lrs


def check_runners(layouts, params, xs, ys, shared, act):
  import jax.numpy as jnp
  big = jnp.full((params[0][1].shape[0],), VERIFY_LR, jnp.float32)
  return {name: Runner(name, params, big, xs, ys, shared, act=act)
          for name in list(dict.fromkeys(list(layouts) + ["loop"]))}


def strict_check(side: int, shared: bool, layouts, batch: int, n: int = 4) -> dict:
  """The layouts' math, asserted equal to `loop`'s to TOL: one step at N = `n` with softplus
  in place of relu (relu's kink makes a few pre-activations within rounding of 0 flip their
  gradient between summation orders: ~1e-3 relative at 32x32, N = 16 -- not a layout bug)."""
  xs, ys, params, _ = group_inputs(side, n, batch)
  errors = one_step_errors(check_runners(layouts, params, xs, ys, shared, "softplus"), params)
  for name, e in errors.items():
    err = max(e.values())
    assert err <= TOL, (f"{side}x{side} {'shared' if shared else 'own'} N={n}: layout {name} "
                        f"differs from loop by {err:.2e} relative (> {TOL})")
  return errors


def interleaved(runners: dict, repeats: int, target_ms: float, slow_ms: float):
  """ms per step of each runner: `repeats` rounds, the order rotating each round.

  The programs are compiled already (by the one-step check). Each timed call runs about
  `target_ms` of steps. A runner whose single step takes over `slow_ms` (out of the race by
  far) is timed by its two one-step calls and one round only.
  """
  steps, ms, slow = {}, {name: [] for name in runners}, set()
  for name, r in runners.items():
    warm = [r.seconds(1) * 1e3 for _ in range(2)]
    if min(warm) > slow_ms:
      slow.add(name)
      ms[name].extend(warm)
    steps[name] = max(1, int(target_ms / max(min(warm), 1e-3)))
  order = list(runners)
  for k in range(repeats):
    for name in order[k % len(order):] + order[:k % len(order)]:
      if name in slow and k >= 1:
        continue
      ms[name].append(runners[name].seconds(steps[name]) * 1e3 / steps[name])
  return ms, steps, slow


def measure_group(side: int, shared: bool, n: int, layouts, repeats: int, target_ms: float,
                  slow_ms: float, batch: int, skip=()) -> dict:
  """Times `layouts` at N variants, plus one variant alone, in interleaved rounds.

  First runs each program (relu, as timed) for one step against `loop`: losses must agree to
  TOL; gradients are recorded (relu kinks allow ~1e-3; `strict_check` asserts the math)."""
  import jax
  xs, ys, params, lrs = group_inputs(side, n, batch)
  layouts = [l for l in layouts if l not in skip]
  t0 = time.perf_counter()
  errors = one_step_errors(check_runners(layouts, params, xs, ys, shared, "relu"), params)
  compile_s = time.perf_counter() - t0                  # Compiles every program (and runs it).
  for name, e in errors.items():
    assert e["loss"] <= TOL and e["grads"] <= RELU_TOL, (
        f"{side}x{side} N={n}: layout {name} differs from loop: {e} (> {TOL}, {RELU_TOL})")
  # Timed at ordinary learning rates (the programs take them as arguments: no recompile).
  runners = {name: Runner(name, params, lrs, xs, ys, shared) for name in layouts}
  runners["alone"] = Runner("loop", jax.tree.map(lambda a: a[:1], params), lrs[:1], xs[:1],
                            ys[:1], True)
  ms, steps, slow = interleaved(runners, repeats, target_ms, slow_ms)
  rows = {}
  gflop = flops_per_variant_step(side, batch) / 1e9
  alone = statistics.median(ms["alone"])
  for name in layouts:
    per_variant = [m / n for m in ms[name]]
    if name in slow:   # Its calls were not interleaved with alone's: against alone's median.
      ratios = [pv / alone for pv in per_variant]
    else:
      ratios = [pv / a for pv, a in zip(per_variant, ms["alone"])]
    med = statistics.median(ms[name])
    rows[name] = {"ms_per_step": med, "ms_per_variant": med / n,
                  "ratio_vs_alone": statistics.median(ratios),
                  "gflops": gflop * n / (med / 1e3), "rounds_ms": ms[name],
                  "steps_per_call": steps[name], "slow": name in slow,
                  "relu_one_step_rel_err": errors.get(name, {"loss": 0.0, "grads": 0.0})}
  return {"side": side, "data": "shared" if shared else "own", "n": n, "alone_ms": alone,
          "alone_rounds_ms": ms["alone"], "alone_gflops": gflop / (alone / 1e3),
          "compile_and_check_s": compile_s, "layouts": rows, "skipped": sorted(skip)}


def context_check(cases, layouts, repeats: int, target_ms: float, slow_ms: float,
                  batch: int) -> list[dict]:
  """The same layouts' steps as one program per step ("plain") and inside a fori_loop."""
  out = []
  for side, n in cases:
    xs, ys, params, lrs = group_inputs(side, n, batch)
    runners = {}
    for name in layouts:
      for context in ("plain", "loop"):
        runners[f"{name}/{context}"] = Runner(name, params, lrs, xs, ys, True, context)
    ms, _, _ = interleaved(runners, repeats, target_ms, slow_ms)
    out.append({"side": side, "n": n,
                "ms_per_step": {k: statistics.median(v) for k, v in ms.items()},
                "rounds_ms": ms})
  return out


# ------------------------------------------------------------------------------ reporting


def machine_facts() -> dict:
  import jax
  import jaxlib
  info = benchmarks.machine_info()
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
    model = re.search(r"model name\s*:\s*(.*)", text)
    info["cpu_model"] = model.group(1).strip() if model else "?"
    flags_line = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    cpu_flags = flags_line.group(1).split() if flags_line else []
    info["avx512"] = sorted(f for f in cpu_flags if f.startswith("avx512"))
    info["amx"] = sorted(f for f in cpu_flags if f.startswith("amx"))
  except OSError:
    pass
  info.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
              xla_flags=os.environ.get("XLA_FLAGS", ""), devices=str(jax.devices()))
  return info


def table(groups) -> str:
  fmt = benchmarks.fmt
  rows = []
  for g in groups:
    rows.append(["alone (1 variant)", f"{g['side']}x{g['side']}", g["data"], g["n"],
                 fmt(g["alone_ms"]), fmt(g["alone_ms"]), "1", fmt(g["alone_gflops"])])
    best = min(g["layouts"], key=lambda k: g["layouts"][k]["ms_per_step"])
    for name, r in g["layouts"].items():
      mark = " **best**" if name == best else ""
      rows.append([name + mark + (" (slow: 3 calls)" if r["slow"] else ""),
                   f"{g['side']}x{g['side']}", g["data"], g["n"], fmt(r["ms_per_step"]),
                   fmt(r["ms_per_variant"]), fmt(r["ratio_vs_alone"]), fmt(r["gflops"])])
    for name in g["skipped"]:
      rows.append([name + " (skipped)", f"{g['side']}x{g['side']}", g["data"], g["n"]] +
                  ["-"] * 4)
  return benchmarks.markdown_table(
      ["layout", "image", "data", "N", "ms per step (median)", "ms per variant",
       "per variant / alone", "GFLOP/s"], rows)


def best_summary(groups) -> list[str]:
  """Per group: the fastest layout, its per-variant cost against one variant alone (lax.conv,
  same rounds) and against the same layout at N = 1 (another group: other rounds)."""
  lines = []
  at_one = {(g["side"], name): r["ms_per_variant"] for g in groups if g["n"] == 1
            for name, r in g["layouts"].items()}
  for g in groups:
    lay = g["layouts"]
    ranked = sorted(lay, key=lambda k: lay[k]["ms_per_step"])
    best = ranked[0]
    naive = lay.get("naive", {}).get("ratio_vs_alone")
    own1 = at_one.get((g["side"], best))
    lines.append(f"{g['side']:2d}x{g['side']:<2d} {g['data']:6s} N={g['n']:<3d} best {best:11s} "
                 f"per variant {lay[best]['ratio_vs_alone']:.3g}x alone "
                 f"({1 / lay[best]['ratio_vs_alone']:.3g}x faster), " +
                 (f"{lay[best]['ms_per_variant'] / own1:.3g}x its own N=1; " if own1 else "") +
                 f"next {ranked[1] if len(ranked) > 1 else '-'}; naive " +
                 (f"{naive:.3g}x alone" if naive is not None else "-"))
  return lines


def context_table(rows) -> str:
  fmt = benchmarks.fmt
  body = []
  for r in rows:
    m = r["ms_per_step"]
    for name in sorted({k.split("/")[0] for k in m}):
      plain, loop = m[f"{name}/plain"], m[f"{name}/loop"]
      body.append([f"{r['side']}x{r['side']}", r["n"], name, fmt(plain), fmt(loop),
                   fmt(loop / plain)])
  return benchmarks.markdown_table(
      ["image", "N", "layout", "ms per step, a program per step", "ms per step, in fori_loop",
       "loop / plain"], body)


def run_child(spec: dict) -> dict:
  return measure_group(spec["side"], spec["data"] == "shared", spec["n"], spec["layouts"],
                       spec["repeats"], spec["target_ms"], spec["slow_ms"], spec["batch"])


def flags_check(spec: dict, settings) -> list[dict]:
  """One group under each XLA_FLAGS setting, each in a fresh process (within each, the
  layouts and one variant alone are interleaved, so its ratios hold under any load)."""
  out = []
  for setting in settings:
    env = dict(os.environ, XLA_FLAGS=setting)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.conv_layouts",
                           "--child", json.dumps(spec)], env=env, capture_output=True, text=True,
                          cwd=benchmarks.ROOT, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
      out.append({"xla_flags": setting, "error": proc.stderr.strip().splitlines()[-1:]})
      continue
    res = json.loads(lines[-1])
    warn = [l.strip() for l in proc.stderr.splitlines() if "no longer supported" in l]
    out.append({"xla_flags": setting, "wall_s": time.perf_counter() - t0, "warnings": warn,
                "alone_ms": res["alone_ms"],
                "layouts": {k: {"ms_per_step": v["ms_per_step"],
                                "ratio_vs_alone": v["ratio_vs_alone"]}
                            for k, v in res["layouts"].items()}})
  return out


def flags_table(rows, spec) -> str:
  fmt = benchmarks.fmt
  layouts = spec["layouts"]
  body = []
  for r in rows:
    name = (r["xla_flags"] or "(none)") + (" (warns: no longer supported)"
                                           if r.get("warnings") else "")
    if "error" in r:
      body.append([name, "error: " + " ".join(r["error"])] + [""] * (2 * len(layouts)))
      continue
    body.append([name, fmt(r["alone_ms"])] +
                [fmt(r["layouts"][k]["ms_per_step"]) for k in layouts] +
                [fmt(r["layouts"][k]["ratio_vs_alone"]) for k in layouts])
  return benchmarks.markdown_table(
      ["XLA_FLAGS", "alone ms"] + [f"{k} ms" for k in layouts] +
      [f"{k} per variant / alone" for k in layouts], body)


def main(argv):
  del argv
  if FLAGS.child:
    print(json.dumps(run_child(json.loads(FLAGS.child))))
    return
  t_start = time.perf_counter()
  layouts = [l.strip() for l in FLAGS.layouts]
  if FLAGS.quick and not FLAGS["layouts"].present:   # The contenders and the yardsticks only.
    layouts = [l for l in layouts if l not in ("grouped", "patches", "taps")]
  skip = {tuple(e.split(":")) for e in FLAGS.skip if e}
  if FLAGS.quick:   # 8x8 shared and own N = 16; 32x32 shared N = 4.
    plan = [(8, "shared", 16), (8, "own", 16), (32, "shared", 4)]
    repeats, target = 5, 8.0
  else:
    plan = [(side, data, n) for side in (int(s) for s in FLAGS.sizes) for data in FLAGS.data
            for n in (int(s) for s in (FLAGS.ns if side == 8 else FLAGS.ns_32))
            if not (data == "own" and n == 1) and (str(side), data, str(n), "*") not in skip]
    repeats, target = FLAGS.repeats, FLAGS.target_ms
  facts = machine_facts()
  print("machine:", json.dumps({k: facts.get(k) for k in (
      "cpu_model", "cpu_count", "avx512", "amx", "jax", "jaxlib", "xla_flags", "loadavg")}),
      flush=True)
  strict = {}
  # The layouts' math, once per data case at 8x8 and at 32x32 shared (--quick: 8x8 shared);
  # the image size changes no code path.
  checks = [(8, "shared")] if FLAGS.quick else [(8, "shared"), (8, "own"), (32, "shared")]
  for side, data in [c for c in checks if c[1] in FLAGS.data]:
    errs = strict_check(side, data == "shared", layouts, FLAGS.batch_size)
    strict[f"{side}x{side} {data}"] = errs
    print(f"  strict check {side}x{side} {data} N=4 (softplus): max rel err " +
          ", ".join(f"{k} {max(v.values()):.1e}" for k, v in errs.items()) +
          f"  [{time.perf_counter() - t_start:.0f} s]", flush=True)
  groups = []
  for side, data, n in plan:
    left_out = [l for l in layouts if (str(side), data, str(n), l) in skip]
    g = measure_group(side, data == "shared", n, layouts, repeats, target, FLAGS.slow_ms,
                      FLAGS.batch_size, skip=left_out)
    groups.append(g)
    print(f"  {side}x{side} {data} N={n}: alone {g['alone_ms']:.3g} ms; " +
          ", ".join(f"{k} {v['ms_per_step']:.3g} ms ({v['ratio_vs_alone']:.2g}x)"
                    for k, v in g["layouts"].items()) +
          f"  [{time.perf_counter() - t_start:.0f} s]", flush=True)
  result = {"mode": "quick" if FLAGS.quick else "default", "batch_size": FLAGS.batch_size,
            "hidden": HIDDEN, "repeats": repeats, "target_ms": target, "machine": facts,
            "load_start": facts.get("loadavg"), "strict_check": strict, "groups": groups}
  ctext = ftext = None
  if FLAGS.context_check:
    cases = [(8, 16)] if FLAGS.quick else [(8, 1), (8, 16), (32, 1)]
    crow = context_check(cases, [l for l in ("naive", "shifts") if l in layouts], repeats,
                         target, FLAGS.slow_ms, FLAGS.batch_size)
    result["context_check"] = crow
    ctext = context_table(crow)
    print(f"  context check done [{time.perf_counter() - t_start:.0f} s]", flush=True)
  if FLAGS.flags_check and not FLAGS.quick:
    spec = {"side": 8, "data": "shared", "n": 16, "repeats": 5, "target_ms": 20.0,
            "slow_ms": FLAGS.slow_ms, "batch": FLAGS.batch_size,
            "layouts": [l for l in ("naive", "shifts") if l in layouts]}
    rows = flags_check(spec, FLAG_SETTINGS)
    result["flags_check"] = {"spec": spec, "rows": rows}
    ftext = flags_table(rows, spec)
  result.update(load_end=benchmarks.loadavg(), wall_s=time.perf_counter() - t_start)
  benchmarks.write_json(FLAGS.out, result)
  print()
  print(f"Mode: {result['mode']}; batch {FLAGS.batch_size}; CNN {HIDDEN} (3x3 SAME, relu, 2x2 "
        f"avg pool) + dense {CLASSES}; one SGD step per variant, steps run in a fori_loop; "
        f"medians of {repeats} interleaved rounds; 'per variant / alone' is the median of "
        f"per-round ratios to one variant's program (lax.conv) timed in the same rounds.")
  print(table(groups))
  print()
  print("\n".join(best_summary(groups)))
  if ctext:
    print("\nThe same step as one jitted program per step vs inside a fori_loop (shared data):")
    print(ctext)
  if ftext:
    print(f"\nXLA_FLAGS check ({spec['side']}x{spec['side']}, {spec['data']}, N={spec['n']}, "
          "in a fori_loop; each row its own process):")
    print(ftext)
  print(f"\nmachine: {facts.get('cpu_model')}, {facts.get('cpu_count')} CPUs, avx512: "
        f"{' '.join(facts.get('avx512', [])) or 'none'}, jax {facts['jax']}, jaxlib "
        f"{facts['jaxlib']}, XLA_FLAGS={facts['xla_flags']!r}; load {result['load_start']} -> "
        f"{result['load_end']}; wall {result['wall_s']:.0f} s. Wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
