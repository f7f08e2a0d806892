"""A `SweepResult` from hand-made rows, aggregated and selected by the real code (tests only)."""

from lr_jax import results

CONFIG = {"experiments": [{"optim": {"name": "adam", "schedule": "constant"},
                           "model": {"name": "mlp", "hidden": [16]},
                           "data": {"dataset": "digits"}}], "target": None}


def result_of(rows, history, group, select="best", *, outcomes=None, plan=False,
              config=None) -> results.SweepResult:
  """One group's result: `rows` (the columns `aggregate` reads, scored at the best epoch), the
  `history`, the group's plan (`dataset.task`, `points`, `experiment.optim.name`); `plan` keeps
  the group in `SweepResult.groups` (what a figure reads its metric's range from)."""
  aggregates = results.aggregate(rows, [group], [], score="best_epoch", outcomes=outcomes)
  return results.SweepResult(
      rows=rows, history=history, aggregates=aggregates,
      best=results.best_points(aggregates, 1, select),
      config={**(config or CONFIG), "select": select}, timings=[], params=[], select=select,
      groups=[group] if plan else [])
