"""What a run computes, as the JSON its output folder is compared by: `sweep_identity`, and an
identity as it reads back from JSON (`_canonical`)."""

from __future__ import annotations

import json

from lr_jax.io import jsonable


def _canonical(x):
  """`x` as it reads back from JSON (tuples as lists, NaN as null), for comparisons."""
  return json.loads(json.dumps(jsonable(x), sort_keys=True))


def sweep_identity(groups, grid, target: float | None, select: str,
                   prune: dict | None = None, score: str = "crossfit") -> dict:
  """What a sweep computes, as `SweepResult.config` records it (before anything runs).

  Args:
    groups: the planned groups (`engine.plan_sweep`).
    grid: the `Grid`.
    target: the metric value to reach, or None.
    select: the selection rule.
    prune: `RunOptions.prune_config()`: pruning changes results.
    score: which epoch's metric is a run's score (`results.SCORES`).
  """
  from lr_jax.results import sweep_config  # Late: checking a folder loads no JAX.
  return {"kind": "sweep", "config": sweep_config(groups, grid, target, select, prune, score)}
