"""One round of compiled calls: each chunk's survivors, compacted or halved between calls."""

from __future__ import annotations

import functools
import math
import types

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from lr_jax import stats
from lr_jax.engine.chunks import _Chunk, _GroupPlan
from lr_jax.engine.placement import _put, _to_host
from lr_jax.train import SweepState


def compaction_ladder(full: int, ndev: int) -> list[int]:
  """Narrower widths a chunk of `full` variants may continue at: ndev * 2^k, at most full / 2.

  A small fixed set, so a sweep compiles a handful of programs (each reused, also from the
  persistent compilation cache), each a multiple of the device count, which shards it. At most
  half the chunk: a compacted variant trains on its own minibatches, not its stream's shared
  ones, and costs more per epoch (digits, MLP(128): ~1.2x, 48 variants either way), so a
  narrower program pays only once it is much narrower.
  """
  widths, w = [], ndev
  while 2 * w <= full:
    widths.append(w)
    w *= 2
  return widths


COMPACTED_LANE_COST = 1.2
"""A compacted lane's epoch relative to a chunk lane's: each survivor is its own stream, with
its own minibatch gathers and batched rather than shared-input matmuls (digits, MLP(128), 48
variants either way)."""


def variant_epoch_flops(like, splits) -> float:
  """One variant's epoch, estimated from its parameters: 6 FLOPs per parameter and training
  row (forward and both backward products), 2 per validation row. Exact for dense layers; a
  convolution, which reuses its weights at every pixel, costs more than this says."""
  num_params = sum(int(np.prod(leaf.shape[2:]))
                   for leaf in jax.tree_util.tree_leaves(like.variants.params))
  return float(num_params * (6 * splits.train_idx.shape[1] + 2 * splits.val_idx.shape[1]))


def saving_flops(plan: _GroupPlan, lanes: int, width: int, epoch: int) -> float:
  """Training FLOPs saved by continuing at `width` compacted lanes instead of `lanes` lanes
  at `epoch`: the lanes saved (a compacted one costs `COMPACTED_LANE_COST`) over the epochs
  ahead, at most twice the patience with early stopping (which ends most survivors sooner; a
  guess, not a bound), times a variant's epoch (`variant_epoch_flops`).

  A compacted call is used only where this is at least the cost of its program
  (`RunOptions.compile_cost_gflop`), nothing once this run has used that width (`_GroupPlan.paid`,
  checkpointed): the rule depends on the run's own state and plan alone, never on a clock or a
  cache, so a resumed run makes the same calls, and the same sweep always gives the same rows.
  """
  ahead = plan.num_epochs - epoch
  if plan.patience > 0:
    ahead = min(ahead, 2 * plan.patience)
  return max(0.0, lanes - COMPACTED_LANE_COST * width) * ahead * plan.variant_epoch_flops


# ----- The survivors: the one place that decides what a compiled call continues. The loop and
# ----- a resumed run both call it on the chunk's host state, so they continue alike, bit for bit.


def _live(chunk: _Chunk) -> np.ndarray:
  """[s_c, h_c] bool: the variants still training (not stopped, diverged, pruned or padding)."""
  v = chunk.state.variants
  return chunk.real & ~v.stopped & ~v.diverged & ~chunk.pruned


def _halving(chunk: _Chunk, eta: float, folds_S: np.ndarray) -> np.ndarray:
  """Successive halving at a rung: the chunk's `pruned` mask after this rung.

  The grid points still in play (none of their variants pruned) are ranked by their mean
  best monitored value over the chunk's streams (a point with a diverged run ranks last); the
  best ceil(n / eta) continue. Another point stops (its live variants flagged `pruned`)
  unless it is not significantly worse than the best by `stats.compare`, the paired test
  that also gives a sweep's not-worse set (here over the monitored value, without per-row
  outcomes: the fold is the unit, `folds_S` [S] each stream's fold).
  """
  v = chunk.state.variants
  real_points = chunk.real.any(axis=0)
  in_play = np.flatnonzero(real_points & ~chunk.pruned.any(axis=0))
  if len(in_play) <= 1:
    return chunk.pruned
  streams = chunk.real[:, in_play[0]]
  # best_score is lower-is-better (-accuracy or loss); inf until a variant has a best epoch.
  score_SxP = np.where(v.diverged, np.inf, v.best_score)[streams][:, in_play].astype(np.float64)
  mean_P = score_SxP.mean(axis=0)
  order = np.argsort(mean_P, kind="stable")
  keep = np.zeros(len(in_play), bool)
  keep[order[:max(1, math.ceil(len(in_play) / eta))]] = True
  finite = np.flatnonzero(np.isfinite(score_SxP).all(axis=0))
  if order[0] in finite:  # Not significantly worse than the best: kept, whatever its rank.
    protected = stats.compare(stats.streams_runs(score_SxP[:, finite], folds_S[streams]),
                              higher_is_better=False, with_p_best=False).not_worse
    keep[finite[protected]] = True
  cut = np.zeros(chunk.pruned.shape[1], bool)
  cut[in_play[~keep]] = True
  return chunk.pruned | (_live(chunk) & cut[None, :])


def _call(plan: _GroupPlan, chunk: _Chunk, b: int, data) -> None:
  """Runs one compiled call of `plan.call_epochs` epochs on a whole chunk, in place.

  Only the variants that went in live are written back; the others keep their state and NaN
  history.
  """
  mesh, s_c, h_c = plan.mesh, plan.s_c, plan.h_c
  si, hi = plan.blocks[b]
  live_before = _live(chunk)
  num_epochs = plan.call_epochs
  v = chunk.state.variants
  # A pruned variant is frozen as a stopped one is; its own `stopped` stays False.
  device_state = chunk.state._replace(variants=v._replace(stopped=v.stopped | chunk.pruned))
  state = jax.tree_util.tree_map(
      lambda a: _put(a, mesh, P(None, "points") if a.ndim >= 2 else P()), device_state)
  out_state, hist = plan.run(
      state, jax.tree_util.tree_map(lambda a: _put(a[hi:hi + h_c], mesh, P("points")), plan.points),
      _put(plan.seeds[si:si + s_c], mesh, P()), _put(plan.folds[si:si + s_c], mesh, P()), data,
      plan.budget, num_epochs=num_epochs)
  out_state, hist = _to_host((out_state, hist))
  new_epoch = int(out_state.epoch)
  mask = lambda a: live_before.reshape(live_before.shape + (1,) * (a.ndim - 2))
  variants = jax.tree_util.tree_map(lambda new, old: np.where(mask(new), new, old),
                                    out_state.variants, chunk.state.variants)
  chunk.executed += s_c * h_c * (new_epoch - chunk.epoch)
  chunk.state = SweepState(epoch=np.asarray(new_epoch, np.int32), variants=variants)
  chunk.history = {k: np.concatenate([chunk.history[k], getattr(hist, k)])
                   for k in plan.trainer.history_fields}


def _call_flat(plan: _GroupPlan, members: list[tuple[int, _Chunk]], width: int, data) -> None:
  """Runs one compiled call on the live variants of `members` (chunks at one epoch), gathered
  into one population of `width` lanes, each its own one-point stream; scatters them back.

  Members from several chunks share the call: once few variants survive, the chunks continue
  as one narrow program rather than one call each (lockstep).
  """
  mesh, s_c, h_c = plan.mesh, plan.s_c, plan.h_c
  plan.paid.add(width)
  num_epochs = plan.call_epochs
  flat = lambda a: a.reshape((s_c * h_c,) + a.shape[2:])
  parts = [(b, c, np.flatnonzero(_live(c).reshape(-1))) for b, c in members]
  owner = np.concatenate([np.full(len(idx), j) for j, (_, _, idx) in enumerate(parts)])
  lane_idx = np.concatenate([idx for _, _, idx in parts])
  n = len(lane_idx)
  pad = lambda a: np.concatenate([a, np.repeat(a[-1:], width - n, axis=0)])  # Copies, dropped.
  gathered = jax.tree_util.tree_map(
      lambda *leaves: pad(np.concatenate([flat(leaf)[idx] for leaf, (_, _, idx) in
                                          zip(leaves, parts)])).reshape(
                                              (width, 1, 1) + leaves[0].shape[2:]),
      *[c.state.variants for _, c, _ in parts])
  first_stream = np.array([plan.blocks[b][0] for b, _, _ in parts])[owner] + lane_idx // h_c
  first_point = np.array([plan.blocks[b][1] for b, _, _ in parts])[owner] + lane_idx % h_c
  put = lambda a: _put(np.ascontiguousarray(a), mesh, P("points"))
  epochs = np.array([c.epoch for _, c, _ in parts], np.int32)[owner]
  state = SweepState(epoch=put(pad(epochs)), variants=jax.tree_util.tree_map(put, gathered))
  out_state, hist = plan.run_compacted(
      state, jax.tree_util.tree_map(lambda a: put(pad(a[first_point]).reshape(width, 1)),
                                    plan.points),
      put(pad(plan.seeds[first_stream]).reshape(width, 1)),
      put(pad(plan.folds[first_stream]).reshape(width, 1)), data, plan.budget,
      num_epochs=num_epochs)
  out_state, hist = _to_host((out_state, hist))
  for j, (b, chunk, idx) in enumerate(parts):
    lanes = np.flatnonzero(owner == j)

    def scatter(new, old):
      out = flat(old).copy()
      out[idx] = new[lanes, 0, 0]
      return out.reshape(old.shape)

    variants = jax.tree_util.tree_map(scatter, out_state.variants, chunk.state.variants)
    hist_ExSxH = {}
    for k in plan.trainer.history_fields:
      h = np.full((num_epochs, s_c * h_c), np.nan, np.float32)
      h[:, idx] = getattr(hist, k)[:, lanes, 0, 0]
      hist_ExSxH[k] = h.reshape(num_epochs, s_c, h_c)
    # The lanes of a vmapped population run every epoch of the call (its skip is per lane);
    # the padding lanes are the first member's bill.
    chunk.executed += (len(lanes) + (width - n if j == 0 else 0)) * num_epochs
    chunk.state = SweepState(epoch=np.asarray(out_state.epoch[lanes].max(), np.int32),
                             variants=variants)
    chunk.history = {k: np.concatenate([chunk.history[k], hist_ExSxH[k]])
                     for k in plan.trainer.history_fields}


def _round(plan: _GroupPlan, chunks: dict[int, _Chunk], data, compact: bool,
           compile_cost: float) -> None:
  """One compiled call's worth of epochs for every unfinished chunk, in place.

  The populations are decided from the run's own state alone (`_populations`), so a resumed
  run, which has nothing else, makes exactly the same calls.
  """
  members = [(b, c) for b, c in chunks.items() if not _done(plan, c)]
  for group, width in _populations(plan, members, compact, compile_cost):
    if width is None:
      (b, c), = group
      _call(plan, c, b, data)
    else:
      _call_flat(plan, group, width, data)


def _populations(plan: _GroupPlan, members: list[tuple[int, _Chunk]], compact: bool,
                 compile_cost: float) -> list[tuple[list[tuple[int, _Chunk]], int | None]]:
  """This round's calls: the chunks each continues and its width (None: one whole chunk).

  All survivors together where they fit one narrower width that saves what it still costs to
  build (`saving_flops`, `_cost`); else each chunk alone, at its smallest fitting width where
  the chunks taking that width together save its cost over their alternative, and otherwise at
  the smallest width this run has already built that fits (padding, where that is cheaper than
  a new program), or whole.
  """
  if not compact:
    return [([m], None) for m in members]
  lanes = plan.s_c * plan.h_c
  if len(members) > 1:
    # Survivors of several chunks: up to a whole chunk's width, which replaces two calls or more.
    n = sum(int(_live(c).sum()) for _, c in members)
    epoch = members[0][1].epoch  # Lockstep: every unfinished chunk is at this epoch.
    net = {w: saving_flops(plan, len(members) * lanes, w, epoch) - _cost(plan, w, compile_cost)
           for w in compaction_ladder(2 * lanes, plan.ndev) if w >= n}
    best = max(net, key=lambda w: (net[w], -w), default=None)
    if best is not None and net[best] >= 0:
      return [(members, best)]
  smallest, built = {}, {}
  for b, c in members:
    fits = [w for w in compaction_ladder(lanes, plan.ndev) if w >= int(_live(c).sum())]
    if fits:
      smallest[b] = fits[0]
      built[b] = next((w for w in fits if w in plan.paid), None)

  def alternative(b, c) -> float:  # What the chunk saves without a new program.
    return 0.0 if built[b] is None else saving_flops(plan, lanes, built[b], c.epoch)

  # The chunks continuing at one new width share its program: together they must pay for it.
  new = {w for w in set(smallest.values()) - plan.paid
         if sum(saving_flops(plan, lanes, w, c.epoch) - alternative(b, c)
                for b, c in members if smallest.get(b) == w) >= compile_cost}
  calls = []
  for b, c in members:
    width = None
    if b in smallest and (smallest[b] in plan.paid or smallest[b] in new):
      width = smallest[b]
    elif b in built and built[b] is not None and alternative(b, c) > 0:
      width = built[b]
    calls.append(([(b, c)], width))
  return calls


def _cost(plan: _GroupPlan, width: int, compile_cost: float) -> float:
  """What continuing at `width` still costs to build: nothing once this run has used it."""
  return 0.0 if width in plan.paid else compile_cost


def _done(plan: _GroupPlan, chunk: _Chunk) -> bool:
  return chunk.epoch >= plan.num_epochs or not _live(chunk).any()


def _tile(plan: _GroupPlan, chunks: dict[int, _Chunk], get) -> np.ndarray:
  """[S_pad, H_pad]: a per-variant array of every chunk, placed as the chunks tile the grid."""
  first = get(next(iter(chunks.values())))
  out = np.zeros((len(plan.seeds), len(plan.points["optim"]["learning_rate"])), first.dtype)
  for b, c in chunks.items():
    si, hi = plan.blocks[b]
    out[si:si + plan.s_c, hi:hi + plan.h_c] = get(c)
  return out


def _prune_all(plan: _GroupPlan, chunks: dict[int, _Chunk], eta: float) -> None:
  """Successive halving over the whole group at a rung: every grid point ranked over every
  stream, whichever chunk holds it; the chunks' `pruned` masks updated in place."""
  tile = functools.partial(_tile, plan, chunks)
  view = types.SimpleNamespace(
      state=types.SimpleNamespace(variants=types.SimpleNamespace(
          best_score=tile(lambda c: c.state.variants.best_score),
          diverged=tile(lambda c: c.state.variants.diverged),
          stopped=tile(lambda c: c.state.variants.stopped))),
      real=tile(lambda c: c.real), pruned=tile(lambda c: c.pruned))
  pruned = _halving(view, eta, np.asarray(plan.folds))
  for b, c in chunks.items():
    si, hi = plan.blocks[b]
    c.pruned = pruned[si:si + plan.s_c, hi:hi + plan.h_c]
