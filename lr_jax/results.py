"""Results: one row per variant, per-epoch histories, aggregates over seeds and folds, files.

A `SweepResult` is plain numpy on the host: `rows` (column -> [V]), `history`
(metric -> [V, E], NaN after a variant stopped), and `aggregates` (one row per compile group
and grid point, over its seeds and folds).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; the normal 1.96 beyond.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

RESULT_COLUMNS = (
    "group", "dataset", "train_size", "model", "hidden", "optimizer", "schedule", "batch_size",
    "learning_rate", "seed", "fold", "best_epoch", "best_val_loss", "best_val_accuracy",
    "final_train_loss", "epochs_run", "steps_run", "diverged", "stopped_early",
    "epochs_to_target", "steps_to_target")


def t_quantile_975(df: int) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom (for 95% intervals)."""
  return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
  """Mean, sample std and 95% confidence half-width of the finite entries of `values`."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if v.size == 0:
    return math.nan, math.nan, math.nan
  if v.size == 1:
    return float(v[0]), 0.0, math.nan
  std = float(v.std(ddof=1))
  return float(v.mean()), std, t_quantile_975(v.size - 1) * std / math.sqrt(v.size)


def first_reaching(curve_VxE: np.ndarray, target: float, higher_is_better: bool) -> np.ndarray:
  """1-based epoch at which each row first reaches `target`; 0 where it never does.

  Args:
    curve_VxE: per-epoch metric, NaN where the variant was not training.
    target: the value to reach.
    higher_is_better: accuracy (True) or loss (False).

  Returns:
    [V] int array.
  """
  with np.errstate(invalid="ignore"):
    hit = curve_VxE >= target if higher_is_better else curve_VxE <= target
  hit = np.nan_to_num(hit, nan=False).astype(bool)
  return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


@dataclasses.dataclass
class SweepResult:
  """The outcome of a sweep.

  Attributes:
    rows: column -> [V] array, one entry per variant (see `RESULT_COLUMNS`, plus one column per
      extra dynamic hyperparameter).
    history: metric -> [V, E] float array; E is the longest run's epochs, NaN-padded.
    aggregates: one dict per (group, grid point) over seeds and folds.
    best: one dict per group: its best grid point by mean validation metric.
    config: JSON-ready description of the experiments and the grid.
    timings: per group, compile and run seconds.
    params: per group, the final parameters (best epoch's with `restore_best`), leaves
      [variants of the group, ...] in row order.
  """

  rows: dict[str, np.ndarray]
  history: dict[str, np.ndarray]
  aggregates: list[dict]
  best: list[dict]
  config: dict
  timings: list[dict]
  params: list

  @property
  def num_variants(self) -> int:
    return len(self.rows["learning_rate"])

  @classmethod
  def from_groups(cls, groups: Sequence, outputs: Sequence[dict], *, grid, target=None) -> "SweepResult":
    """Assembles the result of `engine.run_sweep` from each group's plan and output."""
    rows: dict[str, list] = {}
    histories: dict[str, list] = {}
    num_epochs = max(g.experiment.train.epochs for g in groups)
    hparam_names = []
    for g in groups:
      hparam_names += [k for k in g.points if k != "learning_rate" and k not in hparam_names]
    for gi, (g, out) in enumerate(zip(groups, outputs)):
      exp, v, hist = g.experiment, out["variants"], out["history"]
      num_streams, num_points = v.stopped.shape
      n = num_streams * num_points
      classification = g.dataset.task == "classification"
      h = {k: a.reshape(n, -1) for k, a in hist.items()}
      for k, a in h.items():
        padded = np.full((n, num_epochs), np.nan, np.float32)
        padded[:, :a.shape[1]] = a
        histories.setdefault(k, []).append(padded)
      last_loss = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan
                            for row in h["train_loss"]])
      if target is None:
        reach = np.zeros(n, int)
      elif classification:
        reach = first_reaching(h["val_accuracy"], target, True)
      else:
        reach = first_reaching(h["val_loss"], target, False)
      tile = lambda a: np.tile(a, num_streams)  # [H] -> [S*H], stream-major.
      rep = lambda a: np.repeat(a, num_points)  # [S] -> [S*H].
      columns = {
          "group": np.full(n, gi), "dataset": np.full(n, g.dataset.name, object),
          "train_size": rep(g.splits.train_sizes[g.folds]),
          "model": np.full(n, "user" if g.model is not None else exp.model.name, object),
          "hidden": np.full(n, "-".join(map(str, exp.model.hidden)) or "-", object),
          "optimizer": np.full(n, exp.optim.name, object),
          "schedule": np.full(n, exp.optim.schedule, object),
          "batch_size": np.full(n, exp.train.batch_size),
          "learning_rate": tile(g.points["learning_rate"]).astype(np.float64),
          "seed": rep(g.seeds), "fold": rep(g.folds),
          "best_epoch": v.best_epoch.reshape(n), "best_val_loss": v.best_val_loss.reshape(n),
          "best_val_accuracy": v.best_val_accuracy.reshape(n), "final_train_loss": last_loss,
          "epochs_run": v.epochs_run.reshape(n), "steps_run": v.steps_run.reshape(n),
          "diverged": v.diverged.reshape(n), "stopped_early": v.stopped.reshape(n),
          "epochs_to_target": reach,
          "steps_to_target": np.where(reach > 0, reach * out["steps_per_epoch"], 0),
      }
      for k in hparam_names:
        columns[k] = tile(g.points[k]) if k in g.points else np.full(n, np.nan)
      for k, a in columns.items():
        rows.setdefault(k, []).append(a)
    rows_np = {k: np.concatenate(a) for k, a in rows.items()}
    history_np = {k: np.concatenate(a) for k, a in histories.items()}
    aggregates = aggregate(rows_np, groups, hparam_names)
    return cls(
        rows=rows_np, history=history_np, aggregates=aggregates,
        best=best_points(aggregates, len(groups)),
        config={"experiments": [jsonable(dataclasses.asdict(g.experiment)) for g in groups],
                "grid": jsonable(dataclasses.asdict(grid)), "target": target},
        timings=[{"group": i, "compile_s": o["compile_s"], "run_s": o["run_s"],
                  "epochs_executed": o["epochs_executed"]} for i, o in enumerate(outputs)],
        params=[o["params"] for o in outputs])


def aggregate(rows: dict[str, np.ndarray], groups: Sequence, hparam_names: Sequence[str]) -> list[dict]:
  """Mean, std and 95% CI over seeds and folds of each (group, grid point).

  The score is the best validation accuracy for classification and the best validation loss
  for regression.
  """
  out = []
  keys = ["learning_rate", *hparam_names]
  for gi, g in enumerate(groups):
    classification = g.dataset.task == "classification"
    in_group = rows["group"] == gi
    # The group's own grid points; a hyperparameter only other groups have is NaN here. Not a
    # set of the rows' tuples: NaN != NaN would split one point into one entry per run.
    point_keys = sorted(
        {tuple(float(g.points[k][h]) if k in g.points else math.nan for k in keys)
         for h in range(len(g.points["learning_rate"]))},
        key=lambda t: tuple(np.nan_to_num(t, nan=-1.0)))
    for pk in point_keys:
      sel = in_group.copy()
      for k, value in zip(keys, pk):
        sel &= (rows[k] == value) | (np.isnan(rows[k]) & np.isnan(value))
      score = rows["best_val_accuracy" if classification else "best_val_loss"][sel]
      mean, std, ci = mean_ci(score)
      reach = rows["epochs_to_target"][sel]
      reached = reach > 0
      entry = {
          "group": gi, "optimizer": g.experiment.optim.name,
          **{k: float(v) for k, v in zip(keys, pk)},
          "metric": "val_accuracy" if classification else "val_loss",
          "higher_is_better": classification,
          "n": int(sel.sum()), "mean": mean, "std": std, "ci95": ci,
          "mean_val_loss": mean_ci(rows["best_val_loss"][sel])[0],
          "mean_epochs_run": float(rows["epochs_run"][sel].mean()),
          "diverged": int(rows["diverged"][sel].sum()),
          "reached_target": int(reached.sum()),
          "mean_epochs_to_target": float(reach[reached].mean()) if reached.any() else math.nan,
          "mean_steps_to_target": (float(rows["steps_to_target"][sel][reached].mean())
                                   if reached.any() else math.nan),
      }
      out.append(entry)
  return out


def best_points(aggregates: Sequence[dict], num_groups: int) -> list[dict]:
  """Each group's best grid point by mean validation metric.

  A point where any seed or fold diverged is not eligible unless every point diverged:
  a learning rate that sometimes blows up is not a recommendation.
  """
  best = []
  for gi in range(num_groups):
    entries = [a for a in aggregates if a["group"] == gi and math.isfinite(a["mean"])]
    stable = [a for a in entries if a["diverged"] == 0] or entries
    if not stable:
      best.append({"group": gi, "learning_rate": math.nan})
      continue
    sign = 1.0 if stable[0]["higher_is_better"] else -1.0
    best.append(max(stable, key=lambda a: sign * a["mean"]))
  return best


def jsonable(x):
  """`x` with numpy scalars and arrays as Python values and non-finite floats as None (JSON null)."""
  if isinstance(x, dict):
    return {k: jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, np.ndarray)):
    return [jsonable(v) for v in x]
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def atomic_write(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temporary file and a rename, so a kill never leaves half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide results from other users.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


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
                    "num_variants": result.num_variants})


def write_files(result: SweepResult, directory: str) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `directory`, each atomically.

  No lock and no checks: for a staging folder (see `lr_jax.outputs`); use `write_outputs`.

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


def write_outputs(result: SweepResult, out_dir: str, overwrite: bool = False) -> list[str]:
  """Writes `results.csv`, `history.npz` and `summary.json` into `out_dir` as one unit.

  The folder is locked while writing, the three files replace the previous three together or
  not at all, and the results of a different sweep (another `result.config`) are only
  replaced with `overwrite`; the same sweep's are replaced without asking (`lr_jax.outputs`).

  Args:
    result: from `run_sweep`.
    out_dir: the output folder; created if missing.
    overwrite: replace another sweep's results.

  Returns:
    The paths written.

  Raises:
    ConfigError: `out_dir` cannot be written, another process is writing it, it holds a
      different sweep's results, or writing failed (then the previous files are unchanged).
  """
  from lr_jax.outputs import OutputFolder
  with OutputFolder(out_dir, identity={"kind": "sweep", "config": result.config},
                    overwrite=overwrite, flag="out_dir", overwrite_hint="overwrite=True") as folder:
    with folder.staging() as staging:
      names = [os.path.basename(p) for p in write_files(result, staging)]
  return [os.path.join(out_dir, name) for name in names]


def format_table(result: SweepResult) -> str:
  """A compact text table per group: LR, mean±std of the val metric, epochs run, diverged."""
  lines = []
  for gi, best in enumerate(result.best):
    entries = [a for a in result.aggregates if a["group"] == gi]
    if not entries:
      continue
    exp = result.config["experiments"][gi]
    metric = entries[0]["metric"]
    lines.append(f"group {gi}: {exp['optim']['name']} / {exp['optim']['schedule']} / "
                 f"{exp['model']['name']}{tuple(exp['model']['hidden'])} on "
                 f"{exp['data']['dataset']}")
    extra = [k for k in entries[0] if k not in _AGG_FIXED]
    head = f"{'lr':>10} " + "".join(f"{k:>13} " for k in extra)
    head += f"{'best ' + metric:>22} {'epochs run':>10} {'diverged':>9}"
    if any(a["reached_target"] for a in entries) or result.config.get("target") is not None:
      head += f" {'ep->target':>10}"
    lines.append(head)
    for a in entries:
      marker = " *" if a is best else ""
      cell = f"{a['mean']:.4f} ± {a['std']:.4f}" if math.isfinite(a["mean"]) else "n/a"
      line = f"{a['learning_rate']:>10.3g} " + "".join(f"{a[k]:>13.3g} " for k in extra)
      line += f"{cell:>22} {a['mean_epochs_run']:>10.1f} {a['diverged']:>5d}/{a['n']:<3d}"
      if result.config.get("target") is not None:
        t = a["mean_epochs_to_target"]
        line += f" {t:>10.1f}" if math.isfinite(t) else f" {'-':>10}"
      lines.append(line + marker)
    if math.isfinite(best.get("learning_rate", math.nan)):
      ci = best["ci95"]
      ci_text = f" (95% CI ± {ci:.4f}, n={best['n']})" if math.isfinite(ci) else f" (n={best['n']})"
      lines.append(f"best learning rate: {best['learning_rate']:.3g}, mean best {metric} "
                   f"{best['mean']:.4f}{ci_text}")
    else:
      lines.append("best learning rate: none (every variant failed)")
    lines.append("")
  return "\n".join(lines)


_AGG_FIXED = {"group", "optimizer", "learning_rate", "metric", "higher_is_better", "n", "mean",
              "std", "ci95", "mean_val_loss", "mean_epochs_run", "diverged", "reached_target",
              "mean_epochs_to_target", "mean_steps_to_target"}
