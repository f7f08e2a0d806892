"""The host shell: plans compile groups, places variants on devices, runs epochs in chunks.

    result = run_sweep(Experiment(...), Grid(learning_rates=(1e-4, 1e-3), seeds=(0, 1, 2)))

Everything traced lives in `lr_jax.train`; this package only decides shapes, moves arrays and
logs progress. All input checks run in `plan_sweep`, before anything is compiled.

The package's modules, one idea each (each imports only those above it):

    placement    the device mesh, placing and fetching arrays; this machine's memory and cache
    grid         `Grid`: the dynamic axes, refused when too many; the points of an experiment
    limits       whether a group fits: its steps in int32, its memory on the device and host
    plan         `plan_sweep`, `Group`: every input checked; the target, metrics, select_by
    programs     the compile key, the trainer and initializers compiled once per process
    options      `RunOptions`: chunks, checkpoints, compaction, pruning, progress
    clock        compile time apart from run time, from JAX's monitoring events; `Ahead`: a
                 program built in a background thread
    chunks       variants per chunk, `chunk_layout`, a chunk's state on the host
    rounds       one round of compiled calls: survivors compacted, halving at a rung
    checkpoints  `group_config`, a group's chunks saved and loaded, the folder held
    loop         `run_group`: plan, loop, assemble; `GroupOutput`; `InTurn`: groups in turn,
                 the next one's first program built while this one trains
    api          `run_sweep`, `run_planned`
"""

from lr_jax.engine.api import run_planned, run_sweep
from lr_jax.engine.checkpoints import clear_checkpoints, group_config, holding_checkpoints
from lr_jax.engine.chunks import chunk_layout, default_max_variants
from lr_jax.engine.grid import Grid, check_variant_count
from lr_jax.engine.loop import GroupOutput, InTurn, run_group
from lr_jax.engine.options import PRUNE_RULES, RunOptions
from lr_jax.engine.plan import (Group, check_loss_metrics, check_select_by, check_target,
                                metric_names, plan_sweep)
from lr_jax.engine.programs import compiler_options, stream_params
from lr_jax.engine.rounds import row_widths

__all__ = [
    "PRUNE_RULES", "Grid", "Group", "GroupOutput", "InTurn", "RunOptions", "check_loss_metrics",
    "check_select_by", "check_target", "check_variant_count", "chunk_layout", "clear_checkpoints",
    "compiler_options", "default_max_variants", "group_config",
    "holding_checkpoints", "metric_names", "plan_sweep", "row_widths", "run_group", "run_planned",
    "run_sweep", "stream_params",
]
