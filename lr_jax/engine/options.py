"""How the host runs a sweep (`RunOptions`): chunks, checkpoints, compaction, pruning."""

from __future__ import annotations

import dataclasses
import math

from lr_jax.config import check_fields, check_positive
from lr_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How the host runs a sweep; none of it changes a result.

  Attributes:
    max_variants_per_chunk: most variants (streams x points) in one compiled call; more are run
      as successive, evenly sized chunks. None derives it from the memory the variants need
      and the device's memory, and on a CPU from its cache (`default_max_variants`).
    checkpoint_dir: folder of the sweep's checkpoints; None disables checkpointing. `run_sweep`
      and `run_planned` check it (an existing file, or a folder that cannot be written, is
      refused before compiling) and hold it (`outputs.FolderLock`) for the run, unless this
      process holds it already (`cli.check_checkpoints`).
    checkpoint_every: save the sweep state at the first chunk boundary after every this many
      epochs (0: only when a chunk of variants finishes).
    resume: continue from the checkpoints in `checkpoint_dir` if there are any.
    log_every_s: seconds between progress log lines.
    progress_bar: draw a progress bar on stderr; None draws one when stderr is a terminal.
    compact: between compiled calls, continue only the variants still training, regrouped
      into populations (each stream's points in one row, sharing its minibatches; row widths
      from `row_widths`) where that costs less than the chunks whole, the programs it needs
      counted (`compile_cost_gflop`); changes no result beyond float32 rounding.
    compile_cost_gflop: what tracing, lowering and compiling one population's program is
      taken to cost, in GFLOP of training: a population of a shape not yet built is used only
      where the training it saves is estimated above it (`rounds.lane_flops`). The default is
      about 1.5 s of a 2-core CPU's compile at the ~35 GFLOP/s a small MLP trains at; 0
      regroups wherever that runs fewer lanes.
    prune: None, or "halving": successive halving of the grid points (`prune_rungs`,
      `prune_eta`); this one does change results: pruned variants stop early, flagged `pruned`.
    prune_rungs: epochs at which halving decides (each must be below the configured epochs to
      take effect).
    prune_eta: at each rung, about 1/eta of the grid points still in play continue (the
      others stop unless not significantly worse than the best, `lr_jax.stats.compare`).
    build_ahead: build programs in a background thread before they are needed: a fresh
      group's first call's while the host builds and runs its initializers, and the next
      group's plan, initializers and first call while this one trains (`loop.InTurn`); a
      resumed group builds nothing ahead. False builds each when its call needs it. A JAX
      configuration context around the run (`jax.enable_x64`, `jax.default_matmul_precision`)
      is per thread, so the programs built ahead would not be the calls': turn it off there.
    chunk_epochs: epochs per compiled call of the host loop (progress, early exit, compaction
      and checkpoints between calls); 0 runs all epochs in one call. A call's length, the
      smaller of this and the epochs, is part of the program (the epochs are not,
      `train.Budget`): groups of fewer epochs than this, or with 0, compile per epoch count.
  """

  max_variants_per_chunk: int | None = None
  checkpoint_dir: str | None = None
  checkpoint_every: int = 0
  resume: bool = False
  log_every_s: float = 10.0
  progress_bar: bool | None = None
  compact: bool = True
  compile_cost_gflop: float = 50.0
  prune: str | None = None
  prune_rungs: tuple[int, ...] = (5, 15, 45)
  prune_eta: float = 3.0
  build_ahead: bool = True
  chunk_epochs: int = 10

  def prune_config(self) -> dict | None:
    """The pruning rule and its settings (they change results), or None without pruning."""
    if not self.prune:
      return None
    return {"rule": self.prune, "rungs": list(self.prune_rungs), "eta": self.prune_eta}

  def __post_init__(self):
    check_fields(self)
    if self.max_variants_per_chunk is not None:
      check_positive("max_variants_per_chunk", self.max_variants_per_chunk, integer=True)
    check_positive("checkpoint_every", self.checkpoint_every, integer=True, allow_zero=True)
    check_positive("log_every_s", self.log_every_s, allow_zero=True)
    check_positive("chunk_epochs", self.chunk_epochs, integer=True, allow_zero=True)
    check_positive("compile_cost_gflop", self.compile_cost_gflop, allow_zero=True)
    if self.resume and not self.checkpoint_dir:
      raise ConfigError("resume needs a checkpoint folder; give --checkpoint_dir (or --out)")
    if self.prune not in PRUNE_RULES:
      raise ConfigError(f"prune {self.prune!r} is not a pruning rule; valid choices: "
                        f"{', '.join(r for r in PRUNE_RULES if r)}, or None (unset) for none")
    if not self.prune_rungs:
      raise ConfigError("prune_rungs is empty; give at least one epoch, e.g. 5,15,45")
    for r in self.prune_rungs:
      check_positive("prune rung", r, integer=True)
    if list(self.prune_rungs) != sorted(set(self.prune_rungs)):
      raise ConfigError(f"prune_rungs {self.prune_rungs} must be increasing and distinct")
    if not (math.isfinite(self.prune_eta) and self.prune_eta > 1):
      raise ConfigError(f"prune_eta must be a number > 1, got {self.prune_eta!r}")


PRUNE_RULES = (None, "halving")
