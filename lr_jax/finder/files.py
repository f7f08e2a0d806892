"""`write_finder_outputs`: a range test's three files, each written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from lr_jax.io import atomic_write, jsonable
from lr_jax.results import SweepResult
from lr_jax.finder.result import FinderResult
from lr_jax.finder.figure import plot_finder
from lr_jax.finder.markdown import finder_markdown


def write_finder_outputs(result: FinderResult, out_dir: str, *, sweep: SweepResult | None = None,
                         comparison: Sequence[dict] | None = None) -> list[str]:
  """Writes `finder.png`, `finder.json` and `report.md` into `out_dir`, each atomically.

  `finder.json` holds `FinderResult.to_dict()` and, under "check", the comparison with the
  check sweep, its best point, grid and timings (null without a sweep).

  Returns:
    The paths written.
  """
  paths = [os.path.join(out_dir, name) for name in ("finder.png", "finder.json", "report.md")]
  plot_finder(result, paths[0])
  summary = result.to_dict()
  summary["check"] = None if sweep is None else jsonable(
      {"comparison": list(comparison or ()), "best": sweep.best[0], "grid": sweep.config["grid"],
       "timings": sweep.timings})
  atomic_write(paths[1], (json.dumps(summary, indent=2) + "\n").encode())
  report = finder_markdown(result, figure=os.path.basename(paths[0]), comparison=comparison,
                           sweep=sweep)
  atomic_write(paths[2], report.encode())
  return paths
