"""`write_outputs`: a sweep's `results.csv`, `history.npz` and `summary.json` written into an
`OutputFolder` as one unit, refused over a different result without `overwrite`."""

from __future__ import annotations

import csv
import io
import os
import zipfile

import numpy as np

from lr_jax.errors import ConfigError
from lr_jax.outputs.folder import OutputFolder


def write_outputs(result: "SweepResult", out_dir: str, overwrite: bool = False) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `out_dir` as one unit.

  The folder is locked while writing, the three files replace the previous three together or
  not at all, and a different result's files are only replaced with `overwrite`: another
  sweep's (another `result.config`: the manifest above), and also another result of the same
  configuration (e.g. of other in-memory data or another user model, which the configuration
  names but does not hold), told by its per-variant table or histories. The same result is
  written again without asking (its timings and estimate may be new).

  Args:
    result: from `run_sweep`.
    out_dir: the output folder; created if missing.
    overwrite: replace a different result's files.

  Returns:
    The paths written.

  Raises:
    TypeError: `result` is not a `SweepResult` (nothing is touched).
    ConfigError: `out_dir` cannot be written, another process is writing it, it holds a
      different result's files, or writing failed (then the previous files are unchanged).
  """
  from lr_jax.results import SweepResult, results_csv, write_files  # Late, as above.
  if not isinstance(result, SweepResult):
    raise TypeError(f"write_outputs takes a SweepResult (from lr_jax.run_sweep), got "
                    f"{type(result).__module__}.{type(result).__qualname__}")

  def differs_from(folder: str) -> str | None:
    """How the results in `folder` differ from `result`'s (None: the same, or none to compare).

    Compared to float32 rounding (the same sweep rerun on another CPU or JAX version is the
    same result, not another): `results.csv` field by field (numbers to rtol 1e-4, as printed
    to 6 digits), `history.npz`'s arrays to rtol 1e-5, NaN equal to NaN. A file that is missing
    or cannot be read holds nothing to keep.
    """
    def same_field(a: str, b: str) -> bool:
      try:
        return bool(np.isclose(float(a), float(b), rtol=1e-4, atol=1e-7, equal_nan=True))
      except ValueError:
        return a == b

    try:
      with open(os.path.join(folder, "results.csv"), encoding="utf-8") as f:
        old_rows = list(csv.reader(f))
      new_rows = list(csv.reader(io.StringIO(results_csv(result))))
      if len(old_rows) != len(new_rows) or any(
          len(o) != len(n) or not all(map(same_field, o, n)) for o, n in zip(old_rows, new_rows)):
        return "its results.csv differs"
    except (OSError, ValueError, csv.Error):
      pass
    try:
      with np.load(os.path.join(folder, "history.npz"), allow_pickle=False) as f:
        old = {k: f[k] for k in f.files if not k.startswith("variant_")}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
      return None
    new = {k: np.asarray(v) for k, v in result.history.items()}
    same = set(old) == set(new) and all(
        old[k].shape == new[k].shape
        and (np.allclose(old[k], new[k], rtol=1e-5, atol=1e-7, equal_nan=True)
             if old[k].dtype.kind in "fc" else np.array_equal(old[k], new[k]))
        for k in new)
    return None if same else "its history.npz differs"

  with OutputFolder(out_dir, identity={"kind": "sweep", "config": result.config},
                    overwrite=overwrite, flag="out_dir", overwrite_hint="overwrite=True") as folder:
    # open() refused another configuration; the same one may still be another result.
    differs = None if overwrite else differs_from(folder.path)
    if differs:
      raise ConfigError(
          f"out_dir {folder.path} holds a different result of the same sweep configuration "
          f"({differs}); pass overwrite=True to replace it, or give another out_dir")
    with folder.staging() as staging:
      names = [os.path.basename(p) for p in write_files(result, staging)]
  return [os.path.join(out_dir, name) for name in names]
