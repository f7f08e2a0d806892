"""A group's checkpoint: what it must match, its chunks saved and loaded; the folder held."""

from __future__ import annotations

import contextlib
import itertools
import json
import os

import jax
import numpy as np

from lr_jax import checkpoint
from lr_jax import data as data_lib
from lr_jax import outputs
from lr_jax.engine.chunks import _Chunk, _GroupPlan
from lr_jax.engine.options import RunOptions
from lr_jax.engine.plan import Group
from lr_jax.engine.rounds import _done


def _save_chunks(plan: _GroupPlan, chunks: dict[int, _Chunk]) -> None:
  """Checkpoints every chunk (`done<b>` once finished, `live<b>` before) as one file."""
  if plan.path is None or jax.process_index() != 0:
    return
  arrays = {"layout": np.array([plan.s_c, plan.h_c]),
            "paid_shapes": np.array(sorted(plan.paid), np.int64).reshape(-1, 2)}
  for b, c in chunks.items():
    name = f"{'done' if _done(plan, c) else 'live'}{b}"
    arrays.update(checkpoint.flatten(f"{name}/state", c.state))
    arrays.update({f"{name}/hist/{k}": v for k, v in c.history.items()})
    arrays[f"{name}/pruned"] = c.pruned
    arrays[f"{name}/executed"] = np.array(c.executed)
  checkpoint.save(plan.path, arrays, plan.config)


def _load_chunk(plan: _GroupPlan, name: str, real: np.ndarray) -> _Chunk | None:
  saved = plan.saved
  if f"{name}/state/0" not in saved:
    return None
  return _Chunk(state=checkpoint.unflatten(f"{name}/state", saved, plan.like),
                history={k: saved[f"{name}/hist/{k}"] for k in plan.trainer.history_fields},
                # A checkpoint from before pruning and compaction existed has neither.
                pruned=saved.get(f"{name}/pruned", np.zeros(real.shape, bool)), real=real,
                executed=int(saved.get(f"{name}/executed", 0)))


def clear_checkpoints(checkpoint_dir: str) -> None:
  """Deletes a finished sweep's checkpoint files (and the folder, if it is then empty)."""
  if not os.path.isdir(checkpoint_dir):
    return
  for name in os.listdir(checkpoint_dir):
    if (name.startswith("group") and name.endswith(".npz")) or name.startswith(".tmp-"):
      os.unlink(os.path.join(checkpoint_dir, name))
  if not os.listdir(checkpoint_dir):
    os.rmdir(checkpoint_dir)


def _axes(columns: dict[str, np.ndarray]) -> dict[str, list]:
  """Columns of a product table (`Group.points`, streams) as the axes that make it, in order.

  The full columns where they are not such a product (an axis with a repeated value), so the
  description stays exact.
  """
  axes = {k: list(dict.fromkeys(v.tolist())) for k, v in columns.items()}
  rows = list(zip(*(v.tolist() for v in columns.values())))
  return axes if list(itertools.product(*axes.values())) == rows else {
      k: v.tolist() for k, v in columns.items()}


def group_config(group: Group) -> dict:
  """What a group's checkpoint must match, as JSON: its configuration, grid and data.

  The experiment's fields (`data.data_seed`, `train.epochs`, ...), the grid's axes
  (`grid.learning_rates`, `grid.seeds`, other hyperparameters), `data.fingerprint` (a hash of
  the arrays and the split), `data.content` (hashes of the arrays and of each data file's
  bytes, `data.content_fingerprint`: a file changed under the same name is refused as such,
  even where this process holds its old content) and, for a user model, `model.user` (its
  parameter shapes). A checkpoint stores it, so a refused resume names the fields that differ.
  """
  config = json.loads(json.dumps(data_lib.config_dict(group.experiment), default=str))
  config["data"]["content"] = data_lib.content_fingerprint(group.dataset, group.experiment.data)
  s = group.splits
  config["data"]["fingerprint"] = checkpoint.fingerprint(  # 64 bits: short enough to print.
      group.dataset.x, group.dataset.y, s.train_idx, s.train_mask, s.val_idx, s.val_mask)[:16]
  if group.model is not None:  # Its repr holds addresses; its parameter shapes describe it.
    shapes = jax.eval_shape(group.model.init, jax.random.PRNGKey(0))
    config["model"]["user"] = json.loads(json.dumps(
        jax.tree_util.tree_map(lambda a: [list(a.shape), str(a.dtype)], shapes), default=str))
  if group.loss is not None or group.metrics:  # By name: a function's identity is per process.
    config["objective"] = {"loss": _qualified_name(group.loss),
                           "metrics": {n: [_qualified_name(m.fn), m.higher_is_better]
                                       for n, m in group.metrics}}
  grid = _axes(group.points)
  grid["learning_rates"] = grid.pop("learning_rate")
  config["grid"] = {**grid, **_axes({"seeds": group.seeds, "folds": group.folds})}
  return config


def _qualified_name(f) -> str | None:
  """A function's module-qualified name (None for None), to describe it across processes."""
  if f is None:
    return None
  return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', type(f).__name__)}"


@contextlib.contextmanager
def holding_checkpoints(options: RunOptions):
  """Checks `options.checkpoint_dir` and holds it (`outputs.FolderLock`) while the block runs.

  The folder is refused in one line before anything is compiled when it is an existing file
  or cannot be written, or another live process holds it. A folder this process already holds
  (a script's `cli.check_checkpoints`, or an enclosing `run_sweep`) is not locked again: a
  second `flock` of the same process would refuse it. Only process 0 writes checkpoints, so
  only it holds the folder. Nothing happens without a checkpoint folder.
  """
  directory = options.checkpoint_dir
  if not directory or outputs.held_here(directory) or jax.process_index() != 0:
    yield
    return
  lock = outputs.FolderLock(directory, "checkpoint_dir").open()
  try:
    yield
  finally:
    lock.close()
