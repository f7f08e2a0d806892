"""One round of compiled calls: the survivors regrouped into populations, halving between calls."""

from __future__ import annotations

import dataclasses
import functools
import math
import types

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from lr_jax import stats
from lr_jax.engine.chunks import _Chunk, _GroupPlan
from lr_jax.engine.placement import _put, _put_shape, _to_host
from lr_jax.train import SweepState


def row_widths(h_c: int, ndev: int) -> list[int]:
  """The widths a population's rows may take, widest first: the chunk's `h_c`, and ndev * 2^k
  below it.

  A small fixed set, so a sweep compiles a handful of programs (each reused, also from the
  persistent compilation cache), each a multiple of the device count, which shards it.
  """
  widths, w = [h_c], ndev
  while w < h_c:
    widths.insert(1, w)
    w *= 2
  return widths


STREAM_COST = 0.25
"""A stream's own work in a row (its minibatch gathers, the per-stream parts of the step), in
lanes, shared by the row's points: a lane in rows of `width` costs 1 + STREAM_COST / width
(`lane_cost`). Measured on the 1600-variant sweep's group (`benchmarks/compaction.py`,
population shapes of 16 lanes, parameters as pytrees): a whole chunk's 16-wide rows 1, 2 x 8
0.98, 4 x 4 1.05, 8 x 2 1.08, 16 x 1 (every lane its own stream) 1.25, in time per lane."""


def lane_cost(width: int) -> float:
  """A lane's epoch in rows of `width` points, in lanes (`STREAM_COST`)."""
  return 1.0 + STREAM_COST / width


def variant_epoch_flops(like, splits) -> float:
  """One variant's epoch, estimated from its parameters: 6 FLOPs per parameter and training
  row (forward and both backward products), 2 per validation row. Exact for dense layers; a
  convolution, which reuses its weights at every pixel, costs more than this says."""
  num_params = sum(int(np.prod(leaf.shape[2:]))
                   for leaf in jax.tree_util.tree_leaves(like.variants.params))
  return float(num_params * (6 * splits.train_idx.shape[1] + 2 * splits.val_idx.shape[1]))


def lane_flops(plan: _GroupPlan, epoch: int) -> float:
  """What one lane of a population costs from `epoch` on: a variant's epoch
  (`variant_epoch_flops`) over the epochs ahead, at most twice the patience with early stopping
  (which ends most survivors sooner; a guess, not a bound).

  A lane in rows of `width` costs `lane_cost(width)` of this. Populations are chosen by their
  lanes at this price plus the programs they still need
  (`RunOptions.compile_cost_gflop` each, nothing once this run has built the shape:
  `_GroupPlan.paid`, checkpointed). The rule reads the run's own state and plan alone, never a
  clock or a cache, so a resumed run makes the same calls, and the same sweep always gives the
  same rows.
  """
  ahead = plan.num_epochs - epoch
  if plan.patience > 0:
    ahead = min(ahead, 2 * plan.patience)
  return ahead * plan.variant_epoch_flops


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


@dataclasses.dataclass(frozen=True)
class Population:
  """One compiled call's lanes, [rows, width]: each row one stream's points, drawn from the
  chunks (whose host state every variant keeps between calls).

  Attributes:
    chunk, stream, point: [rows, width] int: where each lane's variant lives: its chunk, and
      its stream and point within the chunk. A padding lane repeats a lane of its row, a
      padding row a real row: they train copies, never written back.
    write: [rows, width] bool: the lanes written back, each live variant once.
  """

  chunk: np.ndarray
  stream: np.ndarray
  point: np.ndarray
  write: np.ndarray

  @property
  def shape(self) -> tuple[int, int]:
    return self.chunk.shape


def _whole(plan: _GroupPlan, b: int, chunk: _Chunk) -> Population:
  """A chunk as it lies: its streams, every point (the live ones written back)."""
  shape = (plan.s_c, plan.h_c)
  return Population(chunk=np.full(shape, b), stream=np.repeat(np.arange(plan.s_c)[:, None],
                                                               plan.h_c, 1),
                    point=np.repeat(np.arange(plan.h_c)[None, :], plan.s_c, 0),
                    write=_live(chunk))


def _streams(plan: _GroupPlan, members: list[tuple[int, _Chunk]]) -> list[list]:
  """The live variants of `members` by stream (in stream order), each stream's as (chunk,
  stream, point) lanes in grid order."""
  by_stream: dict[int, list] = {}
  for b, c in members:
    si, hi = plan.blocks[b]
    for r, col in zip(*np.nonzero(_live(c))):
      by_stream.setdefault(si + int(r), []).append((hi + int(col), b, int(r), int(col)))
  return [[lane[1:] for lane in sorted(by_stream[s])] for s in sorted(by_stream)]


def _rows(streams: list[list], width: int) -> list[list]:
  """The streams' lanes (`_streams`) in rows of at most `width`, each row one stream's: a
  stream's points stay together, sharing its minibatches."""
  return [lanes[k:k + width] for lanes in streams for k in range(0, len(lanes), width)]


def _packed(rows: list[list], height: int, width: int) -> Population:
  """Rows (at most `height`, each at most `width` lanes of (chunk, stream, point)) as one
  population of [height, width], padded with copies."""
  lanes = np.zeros((height, width, 3), int)
  write = np.zeros((height, width), bool)
  for i in range(height):
    row = rows[min(i, len(rows) - 1)]
    lanes[i] = [row[min(j, len(row) - 1)] for j in range(width)]
    write[i, :len(row)] = i < len(rows)
  return Population(chunk=lanes[..., 0], stream=lanes[..., 1], point=lanes[..., 2], write=write)


def _round(plan: _GroupPlan, chunks: dict[int, _Chunk], data, compact: bool,
           compile_cost: float) -> None:
  """One compiled call's worth of epochs for every unfinished chunk, in place.

  The populations are decided from the run's own state alone (`_populations`), so a resumed
  run, which has nothing else, makes exactly the same calls. Every chunk gets this round's
  history rows (NaN where a variant did not train) and the epoch its variants reached.
  """
  members = [(b, c) for b, c in chunks.items() if not _done(plan, c)]
  epoch = members[0][1].epoch  # Lockstep: every unfinished chunk is at this epoch.
  assert all(c.epoch == epoch for _, c in members), [c.epoch for _, c in members]
  stop = _stop(plan, epoch, compact)
  shape = (plan.call_epochs, plan.s_c, plan.h_c)
  history = {b: {k: np.full(shape, np.nan, np.float32) for k in plan.trainer.history_fields}
             for b, _ in members}
  reached = {b: epoch for b, _ in members}
  for population in _populations(plan, members, compact, compile_cost):
    _call(plan, population, chunks, data, history, reached, stop)
  for b, c in members:  # A chunk still training reached `stop`; one that did not is done.
    c.state = c.state._replace(epoch=np.asarray(reached[b], np.int32))
    c.history = {k: np.concatenate([c.history[k], history[b][k][:stop - epoch]])
                 for k in plan.trainer.history_fields}


def _stop(plan: _GroupPlan, epoch: int, compact: bool) -> int:
  """The epoch this round's calls end at: the next multiple of the call's length (so every
  rung, a multiple of it, ends one), or, compacting, 1 for the first: the variants that
  diverge mostly do so in their first epoch, and regrouping without them costs no program.

  The call's length is static; an earlier end is the budget's (`Budget.epochs`, traced), so it
  compiles nothing: the call's remaining epochs are skipped.
  """
  if compact and epoch == 0:
    return 1
  return min(plan.num_epochs, (epoch // plan.call_epochs + 1) * plan.call_epochs)


def _call(plan: _GroupPlan, pop: Population, chunks: dict[int, _Chunk], data,
          history: dict, reached: dict, stop: int) -> None:
  """Runs one compiled call on a population until epoch `stop` (at most `plan.call_epochs`
  epochs), and writes its live lanes back into their chunks' state, this round's `history`
  and the epoch each `reached`.

  A pruned variant is frozen as a stopped one is (its own `stopped` stays False); a population
  of a whole chunk passes it as it lies.
  """
  mesh = plan.mesh
  rows, width = pop.shape
  plan.paid.add(pop.shape)
  members = sorted({int(b) for b in np.unique(pop.chunk)})
  frozen = {b: chunks[b].state.variants._replace(
      stopped=chunks[b].state.variants.stopped | chunks[b].pruned) for b in members}
  whole = (len(members) == 1 and pop.shape == (plan.s_c, plan.h_c)
           and (pop.stream == np.arange(plan.s_c)[:, None]).all()
           and (pop.point == np.arange(plan.h_c)[None, :]).all())
  at = {b: pop.chunk == b for b in members}

  def gather(*leaves):
    if whole:
      return leaves[0]
    out = np.empty((rows, width) + leaves[0].shape[2:], leaves[0].dtype)
    for b, leaf in zip(members, leaves):
      out[at[b]] = leaf[pop.stream[at[b]], pop.point[at[b]]]
    return out

  variants = jax.tree_util.tree_map(gather, *[frozen[b] for b in members])
  origin = np.asarray(plan.blocks)[pop.chunk]  # [rows, width, 2]: each chunk's first stream, point
  epoch = chunks[members[0]].epoch
  budget = plan.budget
  if stop < plan.num_epochs:
    budget = budget._replace(epochs=_put(np.asarray(stop, np.int32), mesh, P()))
  out_state, hist = plan.run(
      *_arguments(plan, variants, origin[:, 0, 0] + pop.stream[:, 0], origin[..., 1] + pop.point,
                  epoch, lambda a, spec: _put(np.ascontiguousarray(a), mesh, spec)),
      data, budget, num_epochs=plan.call_epochs)
  out_state, hist = _to_host((out_state, hist))
  ran = int(out_state.epoch) - epoch
  for b in members:
    chunk, here = chunks[b], at[b]
    lanes = here & pop.write
    r, c = pop.stream[lanes], pop.point[lanes]

    def scatter(new, old):
      out = old.copy()
      out[r, c] = new[lanes]
      return out

    chunk.state = chunk.state._replace(variants=jax.tree_util.tree_map(
        scatter, out_state.variants, chunk.state.variants))
    for k in plan.trainer.history_fields:
      history[b][k][:, r, c] = getattr(hist, k)[:, lanes]
    # The lanes run every epoch of the call (its skip is the whole population's); padding
    # lanes are the bill of the chunk whose variant they copy.
    chunk.executed += int(here.sum()) * ran
    reached[b] = max(reached[b], epoch + ran)


def _arguments(plan: _GroupPlan, variants, stream_S: np.ndarray, point_SxH: np.ndarray,
               epoch: int, place) -> tuple:
  """A call's state, points, seeds and folds (`Trainer.run`'s arguments before the data), each
  array placed by `place(host_array, spec)`: on the devices for a call, or as its shape for a
  program built ahead (`whole_call`), so both are the same signature.

  Args:
    variants: the population's `VariantState`, leaves [rows, width, ...].
    stream_S: [rows] each row's stream; point_SxH: [rows, width] each lane's grid point.
  """
  variant_spec = lambda a: P(None, "points") if len(a.shape) >= 2 else P()
  state = SweepState(epoch=np.asarray(epoch, np.int32),
                     variants=jax.tree_util.tree_map(lambda a: place(a, variant_spec(a)), variants))
  points = jax.tree_util.tree_map(lambda a: place(a[point_SxH], P(None, "points")), plan.points)
  return state, points, place(plan.seeds[stream_S], P()), place(plan.folds[stream_S], P())


def whole_call(plan: _GroupPlan, data) -> tuple[tuple, dict]:
  """The arguments of a whole chunk's call (`plan.run`'s, as shapes), the program every run
  builds first: `plan.run.lower(*args, **kwargs).compile()` builds it ahead, in a background
  thread, and the call finds it in JAX's caches (the same signature: `_arguments`)."""
  stream_S = np.arange(plan.s_c)
  point_SxH = np.broadcast_to(np.arange(plan.h_c), (plan.s_c, plan.h_c))
  args = _arguments(plan, plan.like.variants, stream_S, point_SxH, 0,
                    lambda a, spec: _put_shape(a, plan.mesh, spec))
  return (*args, data, plan.budget), {"num_epochs": plan.call_epochs}


def _populations(plan: _GroupPlan, members: list[tuple[int, _Chunk]], compact: bool,
                 compile_cost: float) -> list[Population]:
  """This round's calls: the cheapest way to continue every live variant of `members`.

  Each chunk whole (`_whole`, the program every run builds), or the live variants regrouped
  (`_streams`, `_rows`: each stream's points together, at a width of `row_widths`) into populations of at
  most a chunk's lanes; the last one's rows as a smaller population where that is cheaper.
  Each way costs its lanes (`lane_flops` × `lane_cost` of its rows' width each) and the
  programs it would newly build (`compile_cost` each); ties keep the chunks whole, then the
  wider rows.
  """
  whole = [_whole(plan, b, c) for b, c in members]
  if not compact:
    return whole
  per_lane = lane_flops(plan, members[0][1].epoch)
  lanes = plan.s_c * plan.h_c
  best_cost, best = len(whole) * lanes * lane_cost(plan.h_c) * per_lane, whole
  streams = _streams(plan, members)
  for width in row_widths(plan.h_c, plan.ndev):
    rows = _rows(streams, width)
    height = max(1, lanes // width)
    full, tail = divmod(len(rows), height)
    heights = {height} | {h for h, w in plan.paid if w == width and tail <= h < height}
    heights |= {2 ** k for k in range(height.bit_length()) if tail <= 2 ** k < height}
    for tail_height in sorted(heights, reverse=True) if tail else [0]:
      shapes = {(height, width)} if full else set()
      if tail:
        shapes.add((tail_height, width))
      cost = ((full * height + tail_height) * width * lane_cost(width) * per_lane
              + sum(_cost(plan, shape, compile_cost) for shape in shapes))
      if cost < best_cost:
        best_cost = cost
        best = [_packed(rows[k:k + height], height, width) for k in range(0, full * height, height)]
        if tail:
          best.append(_packed(rows[full * height:], tail_height, width))
  return best


def _cost(plan: _GroupPlan, shape: tuple[int, int], compile_cost: float) -> float:
  """What a population of `shape` still costs to build: nothing for a whole chunk's, or once
  this run has used it."""
  return 0.0 if shape == (plan.s_c, plan.h_c) or shape in plan.paid else compile_cost


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
