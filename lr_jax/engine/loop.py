"""Running one compile group (`run_group`): plan its chunks, run them in rounds, assemble."""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from lr_jax import checkpoint
from lr_jax.engine.checkpoints import _load_chunk, _save_chunks, group_config
from lr_jax.engine.chunks import (_Chunk, _GroupPlan, _pad_to, _real, chunk_layout,
                                  default_max_variants)
from lr_jax.engine.clock import Ahead, _CompileClock
from lr_jax.engine.options import RunOptions
from lr_jax.engine.placement import _mesh, _put, _put_shape, _to_host
from lr_jax.engine.plan import Group
from lr_jax.engine.programs import (_compile_key, _compiled, _data_arrays, _init_fn,
                                    _init_shape, stream_params, traced_points)
from lr_jax.engine.rounds import (_done, _live, _prune_all, _round, variant_epoch_flops,
                                  whole_call)
from lr_jax.errors import ConfigError
from lr_jax.train import Budget, final_params


class _Progress:
  """Progress of a group on the log (every `log_every_s`) and, on a terminal, as a bar."""

  def __init__(self, name: str, total_epochs: int, options: RunOptions):
    self.name, self.total, self.options = name, total_epochs, options
    self.bar = options.progress_bar if options.progress_bar is not None else sys.stderr.isatty()
    self.t0 = self.last = time.perf_counter()

  def update(self, done_epochs: int, active: int, variants: int, final: bool) -> None:
    now = time.perf_counter()
    rate = done_epochs / max(now - self.t0, 1e-9)
    eta = (self.total - done_epochs) / rate if rate > 0 else math.inf
    if self.bar:
      width = 30
      filled = int(width * done_epochs / max(self.total, 1))
      sys.stderr.write(f"\r{self.name} [{'#' * filled}{'.' * (width - filled)}] "
                       f"{done_epochs}/{self.total} epochs, {active} active, ETA {eta:.0f}s ")
      if final:
        sys.stderr.write("\n")
      sys.stderr.flush()
    if final or now - self.last >= self.options.log_every_s:
      logging.info("%s: epoch %d/%d, %d/%d variants active, %.1f epochs/s (x%d variants), ETA %.0fs",
                   self.name, done_epochs, self.total, active, variants, rate, variants,
                   0.0 if final else eta)
      self.last = now


class GroupOutput(NamedTuple):
  """What `run_group` returns: one compile group's final state and history, on the host.

  Attributes:
    variants: the final `VariantState`, numpy leaves [S, H, ...]; `params` are the final
      parameters (the best epoch's with `restore_best`), `best_params` the best epoch's.
    params: the final parameters, leaves [S*H, ...], stream-major (row order).
    history: metric name -> [S, H, E], NaN where a variant was not training.
    pruned: [S, H] bool, stopped by successive halving (`RunOptions.prune`).
    steps_per_epoch: optimizer updates per epoch.
    compile_s: seconds the group waited for its programs: its thread's tracing, lowering and
      compiling (or loading from the persistent compilation cache), from JAX's compile
      events, and its wait for the programs built ahead (`RunOptions.build_ahead`), apart
      from running them: the compile on the critical path; 0.0 when every program came from
      this process's cache.
    run_s: seconds of the whole group, compile_s included.
    epochs_executed: most epochs any chunk ran.
    variant_epochs_trained: epochs the variants trained, summed over the variants.
    variant_epochs_executed: epochs the compiled calls ran, summed over their lanes (padding,
      and stopped variants still in a population, included): what the compute paid for.
    programs_compiled: XLA programs the group compiled or loaded from the persistent cache,
      those built ahead included; 0 when it reused this process's (nothing compiled).
    programs_from_disk: of those, the ones loaded from the persistent compilation cache.
  """

  variants: object
  params: object
  history: dict[str, np.ndarray]
  pruned: np.ndarray
  steps_per_epoch: int
  compile_s: float | None
  run_s: float
  epochs_executed: int
  variant_epochs_trained: int
  variant_epochs_executed: int
  programs_compiled: int = 0
  programs_from_disk: int = 0


def _plan_group(group: Group, index: int, options: RunOptions) -> _GroupPlan:
  """Programs, chunks, padding and call lengths of a group; reads its checkpoint if resuming."""
  key = _compile_key(group)
  trainer, init, run = _compiled(*key)
  num_streams, num_points = len(group.seeds), len(group.points["learning_rate"])
  mesh = _mesh()
  ndev = mesh.size if mesh is not None else 1
  path = (os.path.join(options.checkpoint_dir, f"group{index}.npz")
          if options.checkpoint_dir else None)
  config = group_config(group) if path else None
  if config is not None and options.prune:  # Pruning changes results: a resume must match it.
    config["prune"] = {"rule": options.prune, "rungs": list(options.prune_rungs),
                       "eta": options.prune_eta}
  saved = (checkpoint.load(path, config) if (path and options.resume) else None) or {}

  budget = options.max_variants_per_chunk or default_max_variants(group, trainer)
  s_c, h_c = chunk_layout(num_streams, num_points, budget, ndev)
  if "layout" in saved:  # The checkpoint's state is in its chunks: keep them.
    planned = (s_c, h_c)
    s_c, h_c = (int(n) for n in saved["layout"])
    if h_c % ndev:
      raise ConfigError(f"checkpoint {path} holds chunks of {h_c} point{'s' * (h_c != 1)}, "
                        f"which {ndev} devices cannot share evenly; resume on a device count "
                        f"that divides {h_c}, or delete it to start afresh")
    if (s_c, h_c) != planned:
      flag = options.max_variants_per_chunk
      logging.info("group %d: resuming in the checkpoint's chunks of %d streams x %d points, not "
                   "the %d x %d of %s", index, s_c, h_c, *planned,
                   f"max_variants_per_chunk={flag}" if flag else "the default chunk budget")
  s_pad, h_pad = -(-num_streams // s_c) * s_c, -(-num_points // h_c) * h_c
  points = traced_points(group, {k: _pad_to(v, h_pad).astype(np.float32)
                                 for k, v in group.points.items()})
  like = _init_shape(group, trainer, jax.tree_util.tree_map(lambda v: v[:h_c], points), s_c)
  num_epochs = group.experiment.train.epochs
  # The call's length is static: groups of at least `chunk_epochs` epochs share it, whatever
  # their budget. Not longer than the run: a compacted call (lanes vmapped, so its skipped
  # epochs are masked, not skipped) would compute the excess.
  call_epochs = min(options.chunk_epochs or num_epochs, num_epochs)
  rungs = ()
  if options.prune:
    rungs = tuple(r for r in options.prune_rungs if r < num_epochs)
    # Calls end at every rung; one call length keeps it one program per width.
    call_epochs = math.gcd(call_epochs, *rungs)
  return _GroupPlan(
      trainer=trainer, init=init, run=run, mesh=mesh,
      ndev=ndev, path=path, config=config, saved=saved, like=like, s_c=s_c, h_c=h_c,
      seeds=_pad_to(group.seeds, s_pad), folds=_pad_to(group.folds, s_pad), points=points,
      blocks=[(si, hi) for si in range(0, s_pad, s_c) for hi in range(0, h_pad, h_c)],
      budget=Budget(*(_put(a, mesh, P()) for a in Budget.of(group.experiment.train))),
      num_epochs=num_epochs,
      call_epochs=call_epochs, rungs=rungs, patience=int(group.experiment.train.patience),
      variant_epoch_flops=variant_epoch_flops(like, group.splits),
      # A resumed run knows the shapes the run used before it, so it decides as that run did.
      paid={(int(h), int(w)) for h, w in saved.get("paid_shapes", np.zeros((0, 2), int))})


def _init_arguments(plan: _GroupPlan, params_S, block: tuple[int, int], data, place) -> tuple:
  """`plan.init`'s arguments for the chunk at `block` (its first stream and point), each array
  placed by `place(host_array, spec)`: on the devices, or as its shape for a program built
  ahead (`_plan_and_build`). `params_S`: every stream's initial parameters, leaves [S_pad, ...]."""
  si, hi = block
  return (jax.tree_util.tree_map(lambda a: place(a[si:si + plan.s_c], P()), params_S),
          jax.tree_util.tree_map(lambda a: place(a[hi:hi + plan.h_c], P("points")), plan.points),
          place(plan.folds[si:si + plan.s_c], P()), data)


def _compile_first_call(plan: _GroupPlan, data) -> None:
  """Compiles the whole chunk's program (`whole_call`): the first call a fresh group makes,
  which then finds it in JAX's caches."""
  args, kwargs = whole_call(plan, data)
  plan.run.lower(*args, **kwargs).compile()


def _build_first_call(plan: _GroupPlan, data) -> Ahead:
  """`_compile_first_call` in a background thread while this thread builds and runs the
  initializers: the first call's compile, the longest, leaves the critical path."""
  return Ahead(functools.partial(_compile_first_call, plan, data))


def _plan_and_build(group: Group, index: int, options: RunOptions) -> _GroupPlan:
  """A group's plan and, unless it resumes from a checkpoint (whose first calls depend on its
  chunks), its programs built: the initializers and the whole chunk's first call. What
  `InTurn` does in a background thread while the group before trains."""
  plan = _plan_group(group, index, options)
  if plan.saved:
    return plan
  place = lambda a, spec: _put_shape(a, plan.mesh, spec)
  data = jax.tree_util.tree_map(lambda a: place(a, P()), _data_arrays(group))
  init_params = _init_fn(group)
  init_params.lower(np.int32(0)).compile()
  params_S = jax.tree_util.tree_map(  # Shapes only: no memory behind the broadcast.
      lambda a: np.broadcast_to(np.zeros((), a.dtype), (len(plan.seeds),) + a.shape),
      jax.eval_shape(init_params, np.int32(0)))
  plan.init.lower(*_init_arguments(plan, params_S, plan.blocks[0], data, place)).compile()
  _compile_first_call(plan, data)
  return plan


class InTurn:
  """Groups that run one after another (`run_group(..., in_turn=this)` each, in order): once
  a group's first program is built, the next group is planned and its programs (initializers
  and first call) built in a background thread while this group trains (`_plan_and_build`),
  so its compile is off the critical path where this group's training leaves the machine room
  (an accelerator's leaves the host idle; on a 2-core CPU training keeps about 1.5 cores busy).

  A use of it is a context manager: leaving it waits for a build still running (never left
  behind, also when a group raised). A build that fails is dropped: its group plans and builds
  on demand, and raises there.
  """

  def __init__(self, groups: Sequence[Group], options: Sequence[RunOptions]):
    self._groups, self._options = list(groups), list(options)
    self._builds: dict[int, Ahead] = {}

  def take(self, index: int) -> Ahead | None:
    """The build of group `index` (its `result` the plan, once finished), or None if none."""
    return self._builds.pop(index, None)

  def prepare(self, index: int) -> None:
    """Starts planning and building group `index`, if there is one."""
    if (index < len(self._groups) and index not in self._builds
        and self._options[index].build_ahead):
      self._builds[index] = Ahead(functools.partial(
          _plan_and_build, self._groups[index], index, self._options[index]))

  def __enter__(self) -> "InTurn":
    return self

  def __exit__(self, *exc) -> None:
    for ahead in self._builds.values():
      ahead.wait()
    self._builds.clear()


def _run_chunks(group: Group, plan: _GroupPlan, index: int, options: RunOptions,
                clock: _CompileClock, built: bool = False,
                then: Callable[[], None] | None = None) -> dict[int, _Chunk]:
  """The loop: every chunk in compiled calls, in lockstep, compacting and pruning between them.

  All chunks advance together, one call's epochs per round, so halving ranks every grid point
  of the group at a rung, and once few variants survive they continue as one population
  whichever chunks they came from. A fresh run (no chunk from a checkpoint) builds the whole
  chunk's program ahead (`_build_first_call`) unless it is `built` already (`InTurn`); `clock`
  counts it and the time the loop waits for it before its first call. `then` is called then
  (`InTurn.prepare`: the next group builds while this one trains).

  Returns:
    The chunks, history NaN-padded to the configured epochs.
  """
  blocks, num_epochs = plan.blocks, plan.num_epochs
  reals = [_real(group, plan, b) for b in range(len(blocks))]
  chunks = {b: c for b in range(len(blocks))
            if (c := _load_chunk(plan, f"done{b}", reals[b]) or
                _load_chunk(plan, f"live{b}", reals[b])) is not None}
  if plan.saved:
    logging.info("resuming group %d from %s: %d of %d chunks done, at epoch %d/%d", index,
                 plan.path, sum(_done(plan, c) for c in chunks.values()), len(blocks),
                 max((c.epoch for c in chunks.values() if not _done(plan, c)), default=num_epochs),
                 num_epochs)
  data = jax.tree_util.tree_map(lambda a: _put(a, plan.mesh, P()), _data_arrays(group))
  # A resumed run's first calls are its chunks' (regrouped, perhaps): nothing is built ahead.
  ahead = (_build_first_call(plan, data)
           if options.build_ahead and not built and not chunks else None)
  try:
    return _rounds(group, plan, index, options, chunks, reals, data, ahead, then)
  finally:
    if ahead is not None:  # Never left running, also when a call raised.
      clock.add_ahead(ahead)


def _rounds(group: Group, plan: _GroupPlan, index: int, options: RunOptions,
            chunks: dict[int, _Chunk], reals: list[np.ndarray], data, ahead: Ahead | None,
            then: Callable[[], None] | None) -> dict[int, _Chunk]:
  """`_run_chunks`' loop once its chunks are loaded and its data placed."""
  exp, blocks, num_epochs = group.experiment, plan.blocks, plan.num_epochs
  num_variants = len(group.seeds) * len(group.points["learning_rate"])
  progress = _Progress(f"group {index} ({exp.optim.name})", len(blocks) * num_epochs, options)
  checkpoint.fault_point("before_compile")
  first_call = True
  if len(chunks) < len(blocks):
    params_S = stream_params(group, plan.seeds)  # Once, not once per chunk of points.
  for b, block in enumerate(blocks):
    if b in chunks:
      continue
    state = plan.init(*_init_arguments(plan, params_S, block, data,
                                       lambda a, spec: _put(a, plan.mesh, spec)))
    chunks[b] = _Chunk(state=_to_host(state), pruned=np.zeros((plan.s_c, plan.h_c), bool),
                       history={k: np.zeros((0, plan.s_c, plan.h_c), np.float32)
                                for k in plan.trainer.history_fields}, real=reals[b])
  last_saved = max((c.epoch for c in chunks.values() if not _done(plan, c)), default=0)
  if ahead is not None:
    ahead.wait()  # The first call's program: built before the next group's begins.
  if then is not None:
    then()
  while not all(_done(plan, c) for c in chunks.values()):
    finished_before = sum(_done(plan, c) for c in chunks.values())
    _round(plan, chunks, data, options.compact, options.compile_cost_gflop * 1e9)
    epoch = max(c.epoch for c in chunks.values())
    if first_call:
      first_call = False
      checkpoint.fault_point("after_compile")
    if epoch in plan.rungs:
      _prune_all(plan, chunks, options.prune_eta)
    active = sum(int(_live(c).sum()) for c in chunks.values())
    done = [_done(plan, c) for c in chunks.values()]
    progress.update(sum(num_epochs if d else c.epoch for d, c in zip(done, chunks.values())),
                    active, num_variants, all(done))
    if all(done):
      break
    if options.checkpoint_every and epoch - last_saved >= options.checkpoint_every:
      _save_chunks(plan, chunks)
      last_saved = epoch
    elif sum(done) > finished_before and len(blocks) > 1:
      _save_chunks(plan, chunks)
  for c in chunks.values():
    # [E, s_c, h_c] with E the configured epochs: a chunk that stopped early is NaN-padded.
    c.history = {
        k: np.concatenate([v, np.full((max(0, num_epochs - len(v)),) + v.shape[1:], np.nan,
                                      np.float32)])[:num_epochs]
        for k, v in c.history.items()}
  if len(blocks) > 1 or options.checkpoint_every:
    _save_chunks(plan, chunks)
  return chunks


def _assemble(group: Group, plan: _GroupPlan, finished: dict[int, _Chunk],
              clock: _CompileClock, run_s: float) -> GroupOutput:
  """The chunks as one [S, H] population (padding dropped), its parameters and counts."""
  exp, blocks = group.experiment, plan.blocks
  num_streams, num_points = len(group.seeds), len(group.points["learning_rate"])
  s_pad, h_pad = len(plan.seeds), len(plan.points["optim"]["learning_rate"])

  def assemble(get):
    rows = []
    for si in range(0, s_pad, plan.s_c):
      rows.append(np.concatenate([get(finished[blocks.index((si, hi))])
                                  for hi in range(0, h_pad, plan.h_c)], axis=1))
    return np.concatenate(rows, axis=0)[:num_streams, :num_points]

  leaves, treedef = jax.tree_util.tree_flatten(plan.like.variants)
  variants = jax.tree_util.tree_unflatten(treedef, [
      assemble(lambda c, i=i: jax.tree_util.tree_leaves(c.state.variants)[i])
      for i in range(len(leaves))])
  variants = variants._replace(params=final_params(variants, exp.train.restore_best))
  history = {k: assemble(lambda c, k=k: np.moveaxis(c.history[k], 0, -1)) for k in plan.trainer.history_fields}
  params = jax.tree_util.tree_map(
      lambda a: a.reshape((-1,) + a.shape[2:]), variants.params)  # [S*H, ...], stream-major
  return GroupOutput(
      variants=variants, params=params, history=history,
      pruned=assemble(lambda c: c.pruned), steps_per_epoch=plan.trainer.steps_per_epoch,
      compile_s=clock.seconds, run_s=run_s,
      epochs_executed=max(c.epoch for c in finished.values()),
      variant_epochs_trained=int(variants.epochs_run.sum()),
      variant_epochs_executed=int(sum(c.executed for c in finished.values())),
      programs_compiled=clock.programs, programs_from_disk=clock.cache_hits)


def run_group(group: Group, *, index: int = 0, options: RunOptions = RunOptions(),
              in_turn: InTurn | None = None) -> GroupOutput:
  """Trains every variant of one compile group; returns its final state and history on the host.

  Plan (`_plan_group`), loop (`_run_chunks`), assemble (`_assemble`). The variants are run in
  chunks of at most `options.max_variants_per_chunk` (each chunk the same shape, so one
  compiled program serves all), each chunk's epochs in compiled calls of `chunk_epochs`. Between
  calls the chunk's live variants are compacted into a narrower population (`options.compact`),
  halving may prune grid points (`options.prune`), and a checkpoint is written when asked. A
  resumed group keeps the chunks of its checkpoint, whatever `max_variants_per_chunk` says now:
  they change no result.

  Args:
    group: from `plan_sweep`.
    index: the group's position in the sweep (names its checkpoint file).
    options: chunking, compaction, pruning, checkpointing and progress; a checkpoint of another
      `group_config` is refused.
    in_turn: the groups this one runs among (`InTurn`), `options` each: this group's plan and
      programs may be built already, and the next group's start building once this group's
      first program is built.

  Returns:
    A `GroupOutput`.
  """
  prepared = in_turn.take(index) if in_turn is not None else None
  then = (lambda: in_turn.prepare(index + 1)) if in_turn is not None else None
  t0 = time.perf_counter()
  if prepared is not None:
    prepared.wait()  # Compile on the critical path: counted below (`add_ahead`).
  if prepared is None or prepared.result is None:
    # Not prepared, or its build failed: planned here, where an error belongs.
    prepared, plan = None, _plan_group(group, index, options)
    t0 = time.perf_counter()  # Planning is not the group's run time.
  else:
    plan = prepared.result
  with _CompileClock() as clock:
    if prepared is not None:
      clock.add_ahead(prepared)
    finished = _run_chunks(group, plan, index, options, clock, built=prepared is not None,
                           then=then)
  return _assemble(group, plan, finished, clock, time.perf_counter() - t0)
