"""A sweep's files: `results.csv`, `history.npz` and `summary.json`, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from lr_jax.io import atomic_write, jsonable
from lr_jax.results.result import SweepResult


def results_csv(result: SweepResult) -> str:
  """The per-variant table as CSV text."""
  columns = list(result.rows)
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(columns)
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
    writer.writerow(row)
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
