"""The engine's entry points: `run_sweep` (plan and run) and `run_planned` (planned groups).

Neither fills `SweepResult.nested`: nested cross-validation's refits are sweeps of their own,
composed above the engine by `lr_jax.api` (whose `run_sweep` is `lr_jax.run_sweep`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from absl import logging

import lr_jax.engine.loop as loop
from lr_jax import stats
from lr_jax.config import MONITORS, Experiment, check_choice, check_type
from lr_jax.engine.checkpoints import holding_checkpoints
from lr_jax.engine.grid import Grid
from lr_jax.engine.loop import GroupOutput
from lr_jax.engine.options import RunOptions
from lr_jax.engine.plan import Group, check_loss_metrics, check_select_by, check_target, plan_sweep
from lr_jax.errors import ConfigError
from lr_jax.models import Model
from lr_jax.results import DEFAULT_SCORE, SCORES, SweepResult
from lr_jax.train import Loss, Metric


def run_sweep(experiments: Experiment | Sequence[Experiment], grid: Grid, *,
              model: Model | None = None, target: float | None = None,
              options: RunOptions = RunOptions(),
              select: str = stats.DEFAULT_SELECT, loss: Loss | None = None,
              metrics: Mapping[str, Metric] | None = None,
              select_by: str | None = None, score: str = DEFAULT_SCORE) -> SweepResult:
  """Runs a learning-rate sweep: every experiment x every grid point x seed x fold.

  The engine's run: `lr_jax.run_sweep` (`lr_jax.api`) is this plus nested cross-validation's
  refits where the data has outer folds.

  Args:
    experiments: static configurations; each distinct one is compiled once.
    grid: learning rates, seeds and other dynamic hyperparameters.
    model: optional user model replacing the built-in one (see `lr_jax.models`).
    target: a validation metric to reach (accuracy for classification, loss for regression),
      for epochs- and steps-to-target.
    options: chunking, checkpointing, resuming and progress (`RunOptions`).
    select: how each group's learning rate is chosen: "best" (highest mean) or "one_se"
      (`lr_jax.stats.select_index`).
    loss: a per-example loss `(outputs_BxK, y_B) -> [B]` (the model's outputs, the labels or
      targets) replacing softmax cross-entropy / squared error in training and validation.
    metrics: `{name: lr_jax.Metric(fn, higher_is_better)}`; `fn(outputs_VxK, y_V, w_V)` is
      computed on each fold's whole validation set every epoch (`w_V` is 0 on padding). Each
      appears as `val_<name>` in the history and `best_val_<name>` (at the best epoch) in the
      rows, and may be `TrainConfig.monitor` or `select_by`.
    select_by: the metric the aggregates and the selection score, e.g. "val_auc"; None is
      val_accuracy for classification, val_loss for regression.
    score: which epoch's value of that metric is a run's score (`lr_jax.results.SCORES`):
      "crossfit" (default: each half of the validation rows at the epoch the other half
      monitors best, so no row scores the epoch it chose), "best_epoch" (the epoch early
      stopping monitors, whose parameters `restore_best` keeps) or "last_epoch".

  Returns:
    A `SweepResult`: one row per variant, histories, aggregates and the selected learning rate.

  Raises:
    ConfigError: on any bad input, before anything is compiled (see `plan_sweep`); a
      checkpoint folder that cannot be written or that another process holds
      (`holding_checkpoints`) before any data is loaded.
  """
  target = check_target(target)  # Types before any data is loaded; the range once planned.
  check_type(options, RunOptions, "options")
  stats.check_select(select)
  check_choice("score", score, SCORES)
  loss, metric_items = check_loss_metrics(loss, metrics)
  if select_by is not None:  # Before any data is loaded: a name no group can have.
    valid = [*MONITORS, *(f"val_{n}" for n, _ in metric_items)]
    if check_type(select_by, str, "select_by") not in valid:
      raise ConfigError(f"select_by {select_by!r} is not a metric of this sweep; valid "
                        f"choices: {', '.join(valid)}")
  with holding_checkpoints(options):  # Checked and held before any data is loaded.
    groups = plan_sweep(experiments, grid, model, loss=loss, metrics=dict(metric_items))
    return run_planned(groups, grid, target=target, options=options, select=select,
                       select_by=select_by, score=score)


def check_crossfit(score: str, select_by: str | None, groups: Sequence[Group]) -> None:
  """Refuses `score="crossfit"` selecting by the task's other built-in metric (val_loss of a
  classification): it is cross-fitted for the task's own metric and the user metrics only."""
  if score != "crossfit" or select_by is None:
    return
  for g in groups:
    other = "val_loss" if g.dataset.task == "classification" else "val_accuracy"
    if select_by == other:
      raise ConfigError(f"score 'crossfit' does not score {other} on {g.dataset.name!r} "
                        f"(select_by {select_by!r}); valid: select_by unset, a user metric, "
                        "or score='best_epoch' or 'last_epoch'")


def _log_compiles(out: GroupOutput, index: int, num_groups: int) -> None:
  """What a group compiled, apart from what it ran; "reused" when it compiled nothing."""
  if not out.programs_compiled:
    logging.info("group %d/%d: reused the programs compiled earlier in this process (nothing "
                 "compiled); %.1f s in all", index + 1, num_groups, out.run_s)
    return
  loaded = (f", {out.programs_from_disk} loaded from the persistent cache"
            if out.programs_from_disk else "")
  logging.info("group %d/%d: compiled %d program%s%s in %.1f s (tracing, lowering, XLA); %.1f s "
               "in all", index + 1, num_groups, out.programs_compiled,
               "s" * (out.programs_compiled != 1), loaded, out.compile_s, out.run_s)


def run_planned(groups: Sequence[Group], grid: Grid, *, target: float | None = None,
                options: RunOptions = RunOptions(),
                select: str = stats.DEFAULT_SELECT, select_by: str | None = None,
                score: str = DEFAULT_SCORE) -> SweepResult:
  """Runs groups from `plan_sweep` (so a script can check all input before compiling).

  Nested cross-validation's refits are not run here: `lr_jax.api.run_planned` adds them.
  """
  target = check_target(target, groups)  # Its range needs the tasks, known once planned.
  stats.check_select(select)
  check_choice("score", score, SCORES)
  select_by = check_select_by(select_by, groups)
  check_crossfit(score, select_by, groups)
  check_type(options, RunOptions, "options")
  group_outputs = []
  with holding_checkpoints(options), loop.InTurn(groups, [options] * len(groups)) as in_turn:
    for i, group in enumerate(groups):
      logging.info("group %d/%d: %s, %d streams x %d points", i + 1, len(groups),
                   group.experiment.optim.name, len(group.seeds),
                   len(group.points["learning_rate"]))
      out = loop.run_group(group, index=i, options=options, in_turn=in_turn)
      _log_compiles(out, i, len(groups))
      group_outputs.append(out)
  result = SweepResult.from_groups(groups, group_outputs, grid=grid, target=target,
                                   select=select, select_by=select_by,
                                   prune=options.prune_config(), score=score)
  return result  # Nested cross-validation's refits are composed above (`lr_jax.api`).
