"""A group's chunks: variants per chunk, their layout over the grid, each one's host state."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from lr_jax.engine.limits import _activation_bytes
from lr_jax.engine.placement import _cache_bytes, _device_memory_bytes
from lr_jax.engine.plan import Group
from lr_jax.engine.programs import _init_shape, traced_points
from lr_jax.train import Budget


def default_max_variants(group: Group, trainer, fraction: float = 0.5) -> int:
  """Variants per chunk: what fits in `fraction` of the devices' memory, and on a CPU the cache.

  Per variant: parameters, gradients, best parameters and optimizer state (counted from
  their shapes), plus the activations of a validation pass (`v_max` rows through every layer).
  Accelerators hold a chunk's variants sharded, each its own memory; CPU devices share the
  host's. On a CPU a chunk's training state is also held to an eighth of the largest cache:
  every minibatch step reads and writes all of it, and a step whose state stays in cache runs
  faster. Workload P on a 2-core EPYC with 32 MiB of L3 (`benchmarks/throughput.py`), 256
  learning rates, seconds per variant by variants per chunk: 8: 0.060, 16: 0.050-0.052,
  24: 0.054, 32: 0.057, 64: 0.063, 128: 0.076, all 256 at once: 0.098; this rule allows 21.
  """
  splits = group.splits
  state = _init_shape(group, trainer, traced_points(group, {k: v[:1].astype(np.float32)
                                                          for k, v in group.points.items()}), 1)
  state_bytes = sum(leaf.size * leaf.dtype.itemsize
                    for leaf in jax.tree_util.tree_leaves(state.variants))
  param_bytes = sum(leaf.size * leaf.dtype.itemsize
                    for leaf in jax.tree_util.tree_leaves(state.variants.params))
  activations = _activation_bytes(group.experiment, group.dataset, splits)
  per_variant = state_bytes + param_bytes + activations
  if jax.default_backend() == "cpu":
    by_memory = fraction * _device_memory_bytes() // per_variant
    by_cache = _cache_bytes() // 8 // (state_bytes + param_bytes)
    return max(1, int(min(by_memory, by_cache)))
  return max(1, int(fraction * _device_memory_bytes() // per_variant) * jax.device_count())


def _even_chunk(total: int, most: int) -> int:
  """The chunk size that splits `total` into the fewest chunks of at most `most`, evenly."""
  return -(-total // -(-total // most))


def chunk_layout(num_streams: int, num_points: int, budget: int, ndev: int = 1
                 ) -> tuple[int, int]:
  """A chunk's streams x points under a budget of variants; points a multiple of `ndev` (the
  axis sharded over devices).

  Streams first while all of them fit one chunk: a chunk then holds adjacent learning rates,
  which tend to stop together, so it exits early (the default sweep, 3 seeds x 16 points under
  21: chunks of 3 x 6). When they do not fit, streams first would leave one point per chunk, and
  a stream's points share its minibatches (one wide matmul per layer instead of a batch of
  narrow ones), so a chunk is one stream's points. The 1600-variant headline sweep (25 streams x
  64 points under 21, compacted; workload P's model on digits, 2-core CPU): chunks of 1 x 16
  took 233 s where 13 x 1 took 325 s.
  """
  if num_streams <= budget:
    s_c = num_streams
    h_c = _even_chunk(num_points, max(1, budget // s_c))
  else:
    h_c = _even_chunk(num_points, budget)
    s_c = _even_chunk(num_streams, max(1, budget // h_c))
  return s_c, -(-h_c // ndev) * ndev


def _pad_to(a: np.ndarray, n: int) -> np.ndarray:
  """Pads axis 0 to length n by repeating the last entry: valid variants, dropped later."""
  return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)])


@dataclasses.dataclass(frozen=True)
class _GroupPlan:
  """What `run_group` decides before training: programs, chunks, padding, call lengths."""

  trainer: object
  init: object
  run: object
  mesh: Mesh | None
  ndev: int
  path: str | None               # the group's checkpoint file, or None
  config: dict | None            # what that checkpoint must match
  saved: dict                    # the checkpoint's arrays; empty when starting afresh
  like: object                   # the shapes of a chunk's SweepState
  s_c: int                       # streams per chunk
  h_c: int                       # points per chunk, a multiple of ndev
  seeds: np.ndarray              # [S_pad] int32
  folds: np.ndarray              # [S_pad] int32
  points: dict                   # the traced tree (`traced_points`), leaves [H_pad] float32
  blocks: list[tuple[int, int]]  # each chunk's first stream and first point
  budget: Budget                 # the group's epochs, patience and step cap (traced)
  num_epochs: int                # the configured epochs
  call_epochs: int               # epochs per compiled call
  patience: int                  # early stopping's patience (0: none)
  variant_epoch_flops: float     # one variant's epoch, estimated (`rounds.lane_flops`)
  paid: set[tuple[int, int]]     # population shapes this run has used: their programs are built
  rungs: tuple[int, ...]         # epochs at which halving decides; () without pruning


@dataclasses.dataclass
class _Chunk:
  """One chunk between compiled calls, on the host: what the next call continues from and
  what a checkpoint holds. Every variant's entry is its latest state.
  """

  state: object                   # SweepState (numpy), variants [s_c, h_c, ...]
  history: dict[str, np.ndarray]  # name -> [epochs so far, s_c, h_c]
  pruned: np.ndarray              # [s_c, h_c] bool
  real: np.ndarray                # [s_c, h_c] bool: not padding
  executed: int = 0               # variant-epochs the compiled calls ran for this chunk

  @property
  def epoch(self) -> int:
    return int(self.state.epoch)


def _real(group: Group, plan: _GroupPlan, b: int) -> np.ndarray:
  si, hi = plan.blocks[b]
  real = np.zeros((plan.s_c, plan.h_c), bool)
  real[:len(group.seeds) - si, :len(group.points["learning_rate"]) - hi] = True
  return real
