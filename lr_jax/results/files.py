"""A sweep's files: `results.csv`, `history.npz` and `summary.json`, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from lr_jax.io import atomic_write, jsonable
from lr_jax.results.aggregates import DEFAULT_SCORE, score_column
from lr_jax.results.result import SweepResult


def score_column_of(entry) -> str:
  """The `rows` column of the runs' score of an aggregate entry (`aggregates.score_column`)."""
  return score_column(entry.get("metric"), entry.get("score", DEFAULT_SCORE))


def scored_runs(result: SweepResult) -> np.ndarray:
  """[V] bool: the runs whose score counts, results.csv's `scored` column.

  A run's score is its group's metric at the scored epoch (`score_column_of` the group's
  aggregates). It counts when the run did not diverge (a diverged run keeps its
  pre-divergence best, which is not a result of its learning rate), was not pruned by
  successive halving (stopped before its budget: not a finished run's score), and the score
  is finite. A row of a group without aggregates has no known score: False.
  """
  n = result.num_variants
  group = np.asarray(result.rows["group"])
  score = np.full(n, np.nan)
  for gi, name in {a.get("group"): score_column_of(a) for a in result.aggregates}.items():
    column = result.rows.get(name)
    if column is not None:
      at = group == gi
      score[at] = np.asarray(column, np.float64)[at]
  flag = lambda k: np.asarray(result.rows[k], bool) if k in result.rows else np.zeros(n, bool)
  return np.isfinite(score) & ~flag("diverged") & ~flag("pruned")


def results_csv(result: SweepResult) -> str:
  """The per-variant table as CSV text: the columns of `result.rows`, then `scored`.

  `scored` is 1 where the run's score counts (`scored_runs`: not diverged, not pruned, a
  finite score) and 0 elsewhere: one filter (`df[df.scored == 1]`) keeps the runs whose
  scores are results, and its sum per point is their number. The other columns are as the
  run left them, a diverged run's pre-divergence best included: blanking it instead would lose
  how far the run got, and a reader dropping blank scores would still keep pruned runs.
  """
  columns = list(result.rows)
  scored = scored_runs(result)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns + ["scored"])
  for i in range(result.num_variants):
    row = []
    for c in columns:
      v = result.rows[c][i]
      if isinstance(v, (np.floating, float)):
        row.append("" if not np.isfinite(v) else f"{float(v):.6g}")
      elif isinstance(v, (np.bool_, bool)):
        row.append(str(bool(v)).lower())
      else:
        row.append(str(v))
    writer.writerow(row + [str(int(scored[i]))])
  return buf.getvalue()


def summary_dict(result: SweepResult) -> dict:
  """The JSON summary: configuration, aggregates, best points, timings."""
  return jsonable({"config": result.config, "aggregates": result.aggregates,
                    "best": result.best, "timings": result.timings,
                    "num_variants": result.num_variants,
                    **({"estimate": result.estimate} if result.estimate else {}),
                    **({"nested": [e.to_dict() for e in result.nested]}
                       if result.nested else {})})


def write_files(result: SweepResult, directory: str) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `directory`, each atomically.

  No lock and no checks: for a staging folder; use `lr_jax.outputs.write_outputs`.

  Returns:
    The paths written.
  """
  paths = [os.path.join(directory, name) for name in ("results.csv", "history.npz", "summary.json")]
  atomic_write(paths[0], results_csv(result).encode())
  buf = io.BytesIO()
  meta = {f"variant_{k}": np.asarray(result.rows[k]).astype(np.float64 if k == "learning_rate" else
                                                           np.asarray(result.rows[k]).dtype)
          for k in ("group", "learning_rate", "seed", "fold")}
  np.savez(buf, **{k: v for k, v in result.history.items()}, **meta)
  atomic_write(paths[1], buf.getvalue())
  atomic_write(paths[2], (json.dumps(summary_dict(result), indent=2) + "\n").encode())
  return paths
