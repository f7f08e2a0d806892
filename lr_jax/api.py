"""The sweep as the public API runs it: the engine's run, with nested cross-validation composed.

Nested cross-validation refits each outer fold's choice and scores it on its test part
(`export.nested_estimates`), which is a sweep of its own: it sits above the engine, so the
engine need not import what runs it.
"""

from __future__ import annotations

import dataclasses
import functools

from lr_jax import engine, export
from lr_jax.results import SweepResult


def with_nested(result: SweepResult) -> SweepResult:
  """`result` with `nested` filled in where a group has outer folds (unchanged otherwise)."""
  if any(g.splits.num_outer for g in result.groups):
    result = dataclasses.replace(result, nested=export.nested_estimates(result))
  return result


@functools.wraps(engine.run_planned)
def run_planned(*args, **kwargs) -> SweepResult:
  return with_nested(engine.run_planned(*args, **kwargs))


@functools.wraps(engine.run_sweep)
def run_sweep(*args, **kwargs) -> SweepResult:
  return with_nested(engine.run_sweep(*args, **kwargs))
