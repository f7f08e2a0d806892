r"""Coverage of the 95% intervals lr_jax prints for a grid point's score, by simulation.

    python -m benchmarks.coverage                    # simulate (~15 min on 2 cores), then tabulate
    python -m benchmarks.coverage --reps=3 --raw_dir=/tmp/cov    # checks the script runs
    python -m benchmarks.coverage --tabulate         # no training: the tables from the raw files
    python -m benchmarks.coverage --tabulate --pseudo_rows=1,1,0,0   # another pseudo-row policy

Simulate: replication r draws a training set from all the rows of the data set
(`default_rng(r)`; 200 digits rows, 150 breast_cancer rows: the designs of one data set share
their replications) and runs `lr_jax.run_sweep` on it as a user's `Dataset`: 2 learning rates x
3 seeds, `lr_sweep`'s defaults otherwise (MLP(128), Adam, up to 100 epochs, patience 5 on
val_loss, batch 32, restore_best). Every row not in that training set (1597 digits, 419
breast_cancer) is the replication's untouched, held-out set: no run of the replication trained
or validated on it. Per run it keeps, for each score of `lr_jax.results.SCORES`, lr_jax's score
and per-row validation outcomes (and the validation rows' ids); its own check of the best
epoch's (the restored params applied to the validation rows); the run's correctness on the
held-out rows. Per point, what lr_jax printed; with nested CV the `NestedEstimate` and each outer
fold's refit model's held-out accuracy. `<raw_dir>/coverage_raw_<design>.npz` is written every
`--save_every` replications: a killed run resumes where it stopped.

Tabulate: per design and learning rate, the share of replications whose interval holds the
target (the mean held-out accuracy of the point's runs' restored models) for each method
(`methods()`: functions of one point's raw data, `Point`), with a Wilson 95% interval, the mean
half-width and the bias. `new:<score>` calls the working tree's `lr_jax.stats.estimate` (with
the folds' validation row ids, so rows that nested CV's inner folds share count their
covariance): a change of lr_jax's method is measured again without training, and
`--pseudo_rows` sets `lr_jax.stats.design.PSEUDO_ROWS` for them (`""`: none, the plain variance).
Writes `--json` (only with lr_jax's own pseudo rows) and prints Markdown for BENCHMARKS.md. The
held-out rows differ by replication: their own sampling error ("target SE") is in the spread
over replications, not in the bias.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import math
import os
import time
from typing import NamedTuple

import numpy as np
from absl import app, flags, logging

import benchmarks
from benchmarks import fmt, markdown_table


class Design(NamedTuple):
  """A simulated design: the data set, training rows per replication, the split (DataConfig)."""

  dataset: str
  train_n: int
  split: dict


DESIGNS = {
    "holdout": Design("digits", 200, {}),
    "kfold": Design("digits", 200, {"folds": 5}),
    "nested": Design("digits", 200, {"outer_folds": 3, "folds": 3}),
    "bc_holdout": Design("breast_cancer", 150, {}),
    "bc_kfold": Design("breast_cancer", 150, {"folds": 5}),
}
DATASET_N = {"digits": 1797, "breast_cancer": 569}
"""Rows of each data set: a replication's held-out rows are the `DATASET_N - train_n` others."""
LEARNING_RATES = (1e-3, 1e-2)
SEEDS = (0, 1, 2)
SCORE_COLUMNS = {"best_epoch": "best_val_accuracy", "last_epoch": "last_val_accuracy",
                 "crossfit": "crossfit_val_accuracy"}
"""`lr_jax.results.SCORES` -> the `rows` column of a run's score (accuracy)."""
PRINTED_SCORE = "crossfit"
"""The score lr_jax prints by default (`lr_jax.results.DEFAULT_SCORE`), checked per sweep."""
RAW_FORMAT = 3
"""1: best_epoch only (before `score`); 2: every score's outcomes, target on a fixed pool;
3: the target on the rows outside each replication's training set."""

flags.DEFINE_bool("tabulate", False, "Only tabulate the raw files (no training).")
flags.DEFINE_bool("write_doc", True, "Write the summary table into BENCHMARKS.md's coverage "
                  "markers (with every design and lr_jax's own pseudo rows).")
flags.DEFINE_list("designs", list(DESIGNS), f"Designs: {', '.join(DESIGNS)}.")
flags.DEFINE_integer("reps", 200, "Replications per design.")
flags.DEFINE_integer("save_every", 10, "Write the raw file every this many replications.")
flags.DEFINE_string("raw_dir", os.path.join(benchmarks.ROOT, "benchmarks"),
                    "Folder of the raw coverage_raw_<design>.npz files.")
flags.DEFINE_string("json", os.path.join(benchmarks.ROOT, "benchmarks", "coverage.json"),
                    "Where --tabulate writes its numbers.")
flags.DEFINE_string("pseudo_rows", None,
                    "Tabulate: `lr_jax.stats.PSEUDO_ROWS` for the new:* methods, comma-separated "
                    "0/1 outcomes (\"1,1,0,0\": plus four; \"1,0\": plus two; \"\": none); "
                    "unset: lr_jax's own.")
FLAGS = flags.FLAGS


# --- Simulate --------------------------------------------------------------------------------

def load_data(name: str):
  """(x [N, D], class ids [N]) of a built-in data set."""
  from lr_jax.data import DataConfig, load_dataset
  ds = load_dataset(DataConfig(dataset=name))
  assert len(ds.y) == DATASET_N[name], (name, len(ds.y))
  return ds.x, ds.y


def split_rows(dataset: str, train_n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
  """(training rows, held-out rows) of replication `r`: `train_n` rows drawn from all the rows
  of the data set by `default_rng(r)`, and every other row."""
  train = np.sort(np.random.default_rng(r).choice(DATASET_N[dataset], train_n, replace=False))
  return train, np.setdiff1d(np.arange(DATASET_N[dataset]), train)


@functools.lru_cache(maxsize=4)
def _batched_apply(model):
  """`(params_V, mean_VxD, std_VxD, x_NxD) -> [V, N]` predicted class ids, jitted once."""
  import jax
  import jax.numpy as jnp
  from lr_jax.models import apply_model

  def one(params, mean_D, std_D, x_NxD):
    return jnp.argmax(apply_model(model, params, (x_NxD - mean_D) / std_D, None, False), -1)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))


def predictions(result, x_NxD: np.ndarray) -> np.ndarray:
  """[V, N] class ids of every run of a one-group sweep on raw features, its fold's scaling."""
  from lr_jax.trained import group_model
  g = result.groups[0]
  fold_V = np.asarray(result.rows["fold"])
  apply = _batched_apply(group_model(g))
  return np.asarray(apply(result.params[0], g.splits.mean[fold_V], g.splits.std[fold_V],
                          np.asarray(x_NxD, np.float32)))


@contextlib.contextmanager
def captured_refits():
  """Records (model, x_test) of each outer fold's refit, which `nested_estimates` scores and
  drops (lr_jax/export/nested.py): the public result keeps only the scores."""
  from lr_jax.export import nested
  seen, original = [], nested.scores

  def scores(model, x, y):
    seen.append((model, np.asarray(x)))
    return original(model, x, y)

  nested.scores = scores
  try:
    yield seen
  finally:
    nested.scores = original


def outer_heldout_accuracy(result, refits, x_heldout, y_heldout) -> np.ndarray:
  """[K] held-out accuracy of each outer fold's refit model (NaN where it has none)."""
  g = result.groups[0]
  out = np.full(g.splits.num_outer, np.nan)
  for o in range(g.splits.num_outer):
    test_x = g.dataset.x[g.splits.outer_rows(o)[1]]
    for model, x in refits:
      if x.shape == test_x.shape and np.array_equal(x, test_x):
        out[o] = np.mean(np.argmax(model.outputs(x_heldout), -1) == y_heldout)
  return out


def validation_runs(result, pred_VxN: np.ndarray, y_ids: np.ndarray, r: int) -> dict:
  """Per run: its validation rows, its restored params' correctness on them (their mean must be
  `best_val_accuracy`), and each score's lr_jax outcomes and score (their mean must be it)."""
  from lr_jax.results import SCORES
  assert tuple(SCORES) == tuple(SCORE_COLUMNS), SCORES
  splits, rows = result.groups[0].splits, result.rows
  scores = {k: np.asarray(rows[c], np.float64) for k, c in SCORE_COLUMNS.items()}
  val_rows = [splits.val_idx[f][splits.val_mask[f]] for f in rows["fold"]]
  correct = [pred_VxN[v, vr] == y_ids[vr] for v, vr in enumerate(val_rows)]
  outcomes = {k: [np.asarray(o, bool) for o in result.outcomes[k]] for k in SCORE_COLUMNS}
  assert all(o[v].shape == val_rows[v].shape for o in outcomes.values() for v in range(len(o)))
  for v in np.flatnonzero(~np.asarray(rows["diverged"], bool)):
    assert abs(correct[v].mean() - scores["best_epoch"][v]) <= 1e-6, (r, v, correct[v].mean())
    for k in SCORE_COLUMNS:
      assert abs(outcomes[k][v].mean() - scores[k][v]) <= 1e-6, (r, v, k, outcomes[k][v].mean())
  as_int8 = lambda arrays: _pad([np.asarray(a, np.int8) for a in arrays], -1)
  return {"val_rows": _pad(val_rows, -1).astype(np.int16), "val_correct": as_int8(correct),
          "best_mismatch": np.array([np.sum(c != o) for c, o in zip(correct,
                                                                    outcomes["best_epoch"])]),
          **{f"score_{k}": scores[k] for k in SCORE_COLUMNS},
          **{f"outcome_{k}": as_int8(outcomes[k]) for k in SCORE_COLUMNS}}


def replicate(design: Design, data, r: int) -> dict:
  """One replication: the sweep on its training rows and the raw numbers of every run."""
  import lr_jax
  x, y = data
  rows, heldout = split_rows(design.dataset, design.train_n, r)
  ds = lr_jax.Dataset.from_arrays(x[rows], y[rows], name=f"{design.dataset}[{len(rows)}]")
  assert np.array_equal(np.asarray(ds.class_names), np.arange(len(ds.class_names)))
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=ds, **design.split))
  t0 = time.perf_counter()
  with captured_refits() as refits:
    result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=LEARNING_RATES, seeds=SEEDS))
  t1 = time.perf_counter()
  pred_VxN = predictions(result, np.concatenate([ds.x, x[heldout]]))
  agg = {a.learning_rate: a for a in result.aggregates}
  out = {
      "train_rows": rows, "lr": np.asarray(result.rows["learning_rate"]),
      "seed": np.asarray(result.rows["seed"]), "fold": np.asarray(result.rows["fold"]),
      "diverged": np.asarray(result.rows["diverged"], bool),
      "best_epoch": np.asarray(result.rows["best_epoch"]),
      **validation_runs(result, pred_VxN, ds.y, r),
      "heldout_correct": (pred_VxN[:, len(rows):] == y[heldout]).astype(np.int8),
      "printed_mean": np.array([agg[lr].mean for lr in LEARNING_RATES]),
      "printed_ci95": np.array([agg[lr].ci95 for lr in LEARNING_RATES]),
      "printed_n": np.array([agg[lr].n for lr in LEARNING_RATES]),
      "compile_s": result.timings[0]["compile_s"] or 0.0, "sweep_s": result.timings[0]["run_s"],
      "wall_s": time.perf_counter() - t0, "apply_s": time.perf_counter() - t1}
  assert all(agg[lr].score == PRINTED_SCORE for lr in LEARNING_RATES), agg
  if result.nested:
    est = result.nested[0]
    out.update(
        nested_mean=est.mean, nested_ci95=est.ci95, nested_n=est.n,
        outer_score=np.array([f.score for f in est.folds]),
        outer_lr=np.array([f.hyperparameters.get("learning_rate", np.nan) for f in est.folds]),
        outer_test_n=np.array([f.test_n for f in est.folds]),
        outer_heldout_acc=outer_heldout_accuracy(result, refits, x[heldout], y[heldout]))
  return out


def _pad(arrays, fill) -> np.ndarray:
  """Stacks arrays whose last axes differ, padding each with `fill` to the longest."""
  arrays = [np.asarray(a) for a in arrays]
  width = max(a.shape[-1] for a in arrays) if arrays[0].ndim else 0
  return np.stack([np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])],
                          constant_values=fill) if a.ndim else a for a in arrays])


def raw_path(name: str) -> str:
  return os.path.join(FLAGS.raw_dir, f"coverage_raw_{name}.npz")


def design_config(name: str) -> str:
  d = DESIGNS[name]
  return json.dumps({"design": name, "dataset": d.dataset, "train_n": d.train_n,
                     "split": d.split, "heldout_n": DATASET_N[d.dataset] - d.train_n,
                     "learning_rates": LEARNING_RATES, "seeds": SEEDS,
                     "scores": list(SCORE_COLUMNS), "raw_format": RAW_FORMAT}, sort_keys=True)


def save(name: str, reps: list[dict]) -> None:
  """Writes the replications of a design as arrays with a leading [R] axis (no pickles)."""
  arrays = {k: _pad([rep[k] for rep in reps], -1) for k in reps[0]}
  path = raw_path(name)
  os.makedirs(FLAGS.raw_dir, exist_ok=True)
  tmp = path[:-len(".npz")] + ".tmp.npz"
  np.savez_compressed(tmp, config=np.array(design_config(name)), **arrays)
  os.replace(tmp, path)


def load(name: str) -> dict | None:
  """The raw arrays of a design, or None where there is no file."""
  if not os.path.exists(raw_path(name)):
    return None
  with np.load(raw_path(name), allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def simulate(name: str, reps: int) -> None:
  """Runs (or resumes) a design's replications, writing its raw file as it goes."""
  design = DESIGNS[name]
  data = load_data(design.dataset)
  done = []
  raw = load(name)
  if raw is not None:
    if str(raw["config"]) != design_config(name):
      raise SystemExit(f"{raw_path(name)} holds another configuration or format; move it away")
    done = [{k: a[r] for k, a in raw.items() if k != "config"}
            for r in range(len(raw["lr"]))]
    print(f"{name}: resuming after {len(done)} replications", flush=True)
  start, t0 = len(done), time.perf_counter()
  for r in range(start, reps):
    rep = replicate(design, data, r)
    done.append(rep)
    elapsed = time.perf_counter() - t0
    eta = elapsed / (r + 1 - start) * (reps - r - 1)
    print(f"{name} {r + 1}/{reps}: sweep {rep['sweep_s']:.1f} s (compile {rep['compile_s']:.1f}"
          f"), apply {rep['apply_s']:.2f} s, wall {rep['wall_s']:.1f} s; elapsed "
          f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min", flush=True)
    if (r + 1) % FLAGS.save_every == 0 or r + 1 == reps:
      save(name, done)


# --- Tabulate --------------------------------------------------------------------------------

class Point(NamedTuple):
  """One grid point of one replication, as the interval methods see it.

  Attributes:
    scores: score (`SCORE_COLUMNS`) -> [S, F] its run scores by seed and fold.
    outcomes: score -> per fold, [S, n_f] each seed's run's per-row validation outcomes (0/1)
      at that score's epoch(s), as lr_jax gave them.
    rows: per fold, [n_f] the training set's row ids of those outcomes (`stats.Runs.rows`):
      nested CV's inner folds validate each row twice.
    printed: (mean, ci95, n) as lr_jax printed them for the point (score `PRINTED_SCORE`).
    target: the mean held-out accuracy of the point's runs (their restored models).
    target_se: the target's own sampling error: the held-out rows are a sample too.
  """

  scores: dict
  outcomes: dict
  rows: tuple
  printed: tuple
  target: float
  target_se: float


class Interval(NamedTuple):
  mean: float
  low: float
  high: float


def symmetric(mean: float, half: float) -> Interval:
  return Interval(mean, mean - half, mean + half)


def point_of(raw: dict, r: int, p: int) -> Point | None:
  """Point `p` (index into LEARNING_RATES) of replication `r`; None where a run diverged."""
  sel = raw["lr"][r] == LEARNING_RATES[p]
  if raw["diverged"][r][sel].any():
    return None
  seed_V, fold_V, v_idx = raw["seed"][r][sel], raw["fold"][r][sel], np.flatnonzero(sel)
  seeds, folds = np.unique(seed_V), np.unique(fold_V)
  at = (np.searchsorted(seeds, seed_V), np.searchsorted(folds, fold_V))
  scores, outcomes, rows = {}, {k: [] for k in SCORE_COLUMNS}, []
  for k in SCORE_COLUMNS:
    scores[k] = np.full((len(seeds), len(folds)), np.nan)
    scores[k][at] = raw[f"score_{k}"][r][sel]
  for f in folds:
    vs = v_idx[fold_V == f][np.argsort(seed_V[fold_V == f])]
    valid = raw["val_rows"][r][vs[0]] >= 0
    assert all(np.array_equal(raw["val_rows"][r][v], raw["val_rows"][r][vs[0]]) for v in vs)
    rows.append(raw["val_rows"][r][vs[0]][valid].astype(np.int64))
    for k in SCORE_COLUMNS:
      outcomes[k].append(raw[f"outcome_{k}"][r][vs][:, valid].astype(np.float64))
  printed = (raw["printed_mean"][r][p], raw["printed_ci95"][r][p], raw["printed_n"][r][p])
  heldout_N = raw["heldout_correct"][r][sel].mean(axis=0)  # Each row, over the point's runs.
  return Point(scores, outcomes, tuple(rows), printed, float(heldout_N.mean()),
               float(np.sqrt(heldout_N.var(ddof=1) / len(heldout_N))))


def runs_t(p: Point) -> Interval:
  """Student-t over all seeds x folds runs as if independent, on the best_epoch score: the
  interval lr_jax printed before its interval by the design."""
  from lr_jax import stats
  s = stats.summarize(p.scores["best_epoch"].ravel())
  return symmetric(s.mean, s.ci95)


def parse_pseudo_rows(text: str | None) -> tuple[float, ...] | None:
  """`--pseudo_rows`: "1,0" -> (1.0, 0.0); "" -> () (none); None -> None (lr_jax's own)."""
  if text is None:
    return None
  return tuple(float(v) for v in text.split(",") if v.strip())


@contextlib.contextmanager
def pseudo_rows(values: tuple[float, ...] | None):
  """Sets `lr_jax.stats.design.PSEUDO_ROWS` (what `estimate` reads) to `values` for the block
  (None: leaves lr_jax's)."""
  from lr_jax.stats import design
  original = design.PSEUDO_ROWS
  if values is not None:
    design.PSEUDO_ROWS = tuple(float(v) for v in values)
  try:
    yield
  finally:
    design.PSEUDO_ROWS = original


def _estimate(p: Point, score: str, bounds=(-math.inf, math.inf)):
  from lr_jax import stats
  return stats.estimate(stats.Runs(p.scores[score], tuple(p.outcomes[score]), True, p.rows),
                        bounds)


def new(p: Point, score: str, pseudo: tuple[float, ...] | None = None) -> Interval:
  """lr_jax's interval now (`stats.estimate`, the working tree's), on `score`, the folds' row
  ids given (a row several folds validate counts its covariance); with `pseudo` as
  `stats.PSEUDO_ROWS` (None: lr_jax's own; (): none, the plain variance); clipped to [0, 1] as
  lr_jax prints it."""
  with pseudo_rows(pseudo):
    est = _estimate(p, score, (0.0, 1.0))
  return Interval(float(est.mean), float(est.low), float(est.high))


def methods(pseudo: tuple[float, ...] | None = None) -> dict:
  """Name -> (Point -> Interval), in the tables' order; `pseudo` for the `new:*` methods."""
  out = {"runs_t": runs_t}
  for k in SCORE_COLUMNS:
    out[f"new:{k}"] = functools.partial(new, score=k, pseudo=pseudo)
  return out


def printed_gap(p: Point) -> float:
  """How far what lr_jax printed (mean, ci95) is from `new:PRINTED_SCORE` recomputed
  (unclipped, lr_jax's own pseudo rows): 0 unless lr_jax's method changed since the
  simulation."""
  est = _estimate(p, PRINTED_SCORE)
  return max(abs(p.printed[0] - est.mean), abs(p.printed[1] - est.ci95))


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
  """Wilson's 95% interval of a proportion k / n."""
  if n == 0:
    return math.nan, math.nan
  q = k / n
  center = (q + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (0.0 if k == 0 else center - half), (1.0 if k == n else center + half)


def coverage(intervals: list[Interval], targets: np.ndarray) -> dict:
  """Coverage (with its Wilson interval), mean half-width and mean bias of intervals; `R`
  counts the replications with an interval, `no_interval` the others (left out)."""
  mean, low, high = (np.array(a, np.float64) for a in zip(*intervals))
  ok = np.isfinite(low) & np.isfinite(high) & np.isfinite(targets)
  mean, low, high, targets = mean[ok], low[ok], high[ok], np.asarray(targets)[ok]
  covered, num = int(np.sum((low <= targets) & (targets <= high))), int(ok.sum())
  bias = mean - targets
  lo, hi = wilson(covered, num)
  return {"coverage": covered / num, "coverage_low": lo, "coverage_high": hi,
          "half_width": float(np.mean((high - low) / 2)), "bias": float(bias.mean()),
          "bias_se": float(bias.std(ddof=1) / math.sqrt(num)),
          "error_sd": float(bias.std(ddof=1)), "R": num, "no_interval": int((~ok).sum())}


def tabulate_design(raw: dict, pseudo: tuple[float, ...] | None = None) -> dict:
  """Every method's coverage at each learning rate of a design (and nested CV's estimate);
  `pseudo`: `stats.PSEUDO_ROWS` of the `new:*` methods (None: lr_jax's own)."""
  num_reps = int(len(raw["lr"]))
  out = {"R": num_reps, "wall_s": float(raw["wall_s"].sum()),
         "first_compile_s": float(raw["compile_s"][0]),
         **{f"median_{k}": float(np.median(raw[k])) for k in ("compile_s", "sweep_s", "apply_s")},
         "best_mismatch_rows": int(np.sum(raw["best_mismatch"])), "points": {}}
  for p, lr in enumerate(LEARNING_RATES):
    points = [point_of(raw, r, p) for r in range(num_reps)]
    kept = [q for q in points if q is not None]
    targets = np.array([q.target for q in kept])
    out["points"][str(lr)] = {
        "diverged_reps": len(points) - len(kept), "target_mean": float(targets.mean()),
        "target_sd": float(targets.std(ddof=1)),
        "target_se": float(np.mean([q.target_se for q in kept])),
        "printed_vs_new": max(printed_gap(q) for q in kept),
        "methods": {name: coverage([m(q) for q in kept], targets)
                    for name, m in methods(pseudo).items()}}
  if "nested_mean" in raw:
    targets = np.nanmean(raw["outer_heldout_acc"], axis=1)
    intervals = [symmetric(m, h) for m, h in zip(raw["nested_mean"], raw["nested_ci95"])]
    out["nested"] = coverage(intervals, targets) | {
        "target_mean": float(np.nanmean(targets)),
        "outer_folds_scored": np.bincount(raw["nested_n"], minlength=4).tolist()}
  return out


def machine_line() -> str:
  """CPU model and SIMD flags, cores, memory, jax version, date."""
  import jax
  m = benchmarks.machine_info()
  return (f"{m.get('model_name', 'unknown CPU')} ({m.get('simd', '?')}), {m['cpu_count']} cores"
          f", {m.get('memory_gib', '?')} GiB, jax {jax.__version__}, "
          f"{datetime.date.today().isoformat()}")


HOW_TO_READ = (
    "How to read: a run's score is its validation accuracy at one epoch choice (`score`): "
    "`best_epoch`, the epoch early stopping picked by the lowest validation loss on all the "
    "validation rows (the restored model; the rows that chose the epoch also score it); "
    "`last_epoch`, the last epoch trained; `crossfit` (lr_jax's default, what it prints), each "
    "half of the validation rows (even / odd positions) scored at the epoch the other half's "
    "validation loss was lowest, so no row scores the epoch it helped choose. `runs_t` (old, "
    "what lr_jax printed before its interval by the design): Student-t over the seeds x folds "
    "runs as if independent, on best_epoch. `new:<score>`: `lr_jax.stats.estimate` now (seed "
    "part + validation-row part with the pseudo rows named above, the covariance of rows that "
    "several folds validate (nested CV), Satterthwaite df, clipped to [0, 1]), recomputed from "
    "the raw outcomes. The target is the same for every method: what the restored models score "
    "on the replication's held-out rows. Bias = estimate - target (± its SE over "
    "replications), sd err = its sd; coverage below 95% with a bias of the order of the "
    "half-width is the estimate's optimism, with a bias near 0 a too-narrow interval.")


def pseudo_label(pseudo: tuple[float, ...] | None) -> str:
  from lr_jax import stats
  values = stats.PSEUDO_ROWS if pseudo is None else pseudo
  return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def report(results: dict) -> str:
  """The Markdown for BENCHMARKS.md: one row per design, learning rate and method."""
  row = lambda name, lr, method, c: [
      name, lr, method, f"{c['coverage']:.3f}", f"[{c['coverage_low']:.3f}, "
      f"{c['coverage_high']:.3f}]", f"{c['half_width']:.4f}",
      f"{c['bias']:+.4f} ± {c['bias_se']:.4f}", f"{c['error_sd']:.4f}", c["R"]]
  rows = []
  for name, d in results["designs"].items():
    for lr, entry in d["points"].items():
      rows += [row(name, fmt(float(lr)), "runs_t (old, printed before)" if m == "runs_t" else m,
                   c) for m, c in entry["methods"].items()]
    if "nested" in d:
      rows.append(row(name, "chosen", "NestedEstimate", d["nested"]))
  walls = ", ".join(f"{n} {d['wall_s'] / 60:.1f} min (R={d['R']})"
                    for n, d in results["designs"].items())
  head = (f"Machine: {results['machine']}. Simulation wall time: {walls}. Pseudo rows of "
          f"`new:*` (`lr_jax.stats.PSEUDO_ROWS`): {results.get('pseudo_rows', '?')}. Target: "
          "the mean, over the point's runs, of each run's restored model's (its params at the "
          "best epoch by all its validation rows) accuracy on the replication's held-out rows, "
          "every row of the data set outside its training set (NestedEstimate: the outer "
          "folds' refit models' mean held-out accuracy). Coverage of the nominal 95% interval "
          "with its Wilson 95% interval over R replications.\n\n"
          f"{HOW_TO_READ}\n\n")
  target_se = ", ".join(f"{n} {fmt(float(lr))}: {e['target_se']:.4f}"
                        for n, d in results["designs"].items() for lr, e in d["points"].items())
  return head + markdown_table(
      ["design", "lr", "method", "coverage", "MC 95%", "mean half-width", "bias ± SE",
       "sd err", "R"], rows) + ("\n\nThe target's own sampling error (target SE, the held-out "
                                f"rows', mean over replications): {target_se}.")


DESIGN_NAMES = {"holdout": "digits, holdout (160 train / 40 val rows)",
                "kfold": "digits, 5-fold × 3 seeds", "nested": "digits, nested 3 × 3 (inner points)",
                "bc_holdout": "breast_cancer, holdout (120 / 30)",
                "bc_kfold": "breast_cancer, 5-fold × 3 seeds"}


def summary(results: dict) -> str:
  """BENCHMARKS.md's table (between its `coverage` markers): per design and learning rate, the
  interval printed before, today's on the best epoch's score and on the cross-fitted one."""
  cell = lambda c: (f"{c['coverage']:.3f} [{c['coverage_low']:.3f}, {c['coverage_high']:.3f}] "
                    f"±{c['half_width']:.4f}")
  rows = []
  for name, d in results["designs"].items():
    for lr, entry in d["points"].items():
      m = entry["methods"]
      rows.append([DESIGN_NAMES.get(name, name), fmt(float(lr)), cell(m["runs_t"]),
                   cell(m["new:best_epoch"]), cell(m["new:crossfit"]),
                   f"{m['runs_t']['bias']:+.4f} → {m['new:crossfit']['bias']:+.4f}",
                   m["new:crossfit"]["R"]])
    if "nested" in d:
      c = d["nested"]
      rows.append(["digits, nested 3 × 3: the nested-CV estimate (refit, outer test)", "chosen",
                   f"{cell(c)} (unchanged: t over the outer folds)", "", "",
                   f"{c['bias']:+.4f}", c["R"]])
  return markdown_table(
      ["design", "lr", "printed before (t over runs)", "now, `--score=best_epoch`",
       "now, `--score=crossfit` (default)", "bias before → crossfit", "R"], rows)


def tabulate(names: list[str], pseudo: tuple[float, ...] | None = None) -> None:
  """Reads the raw files, prints the tables, writes `--json` (only with lr_jax's own pseudo
  rows: `pseudo` None or equal to them)."""
  from lr_jax import stats
  results = {"machine": machine_line(), "pseudo_rows": pseudo_label(pseudo), "designs": {},
             "notes": []}
  for name in names:
    raw = load(name)
    if raw is None or json.loads(str(raw["config"])).get("raw_format") != RAW_FORMAT:
      print(f"{name}: no raw file of format {RAW_FORMAT} at {raw_path(name)}; skipped")
      continue
    d = results["designs"][name] = tabulate_design(raw, pseudo)
    gap = max(e["printed_vs_new"] for e in d["points"].values())
    results["notes"].append(
        f"{name}: printed vs new:{PRINTED_SCORE} recomputed (lr_jax's pseudo rows), largest "
        f"difference {gap:.2g}; validation rows where the restored params' prediction and "
        f"lr_jax's best_epoch outcome differ: {d['best_mismatch_rows']}; replications with a "
        "diverged run: "
        + ", ".join(f"{fmt(float(lr))} {e['diverged_reps']}" for lr, e in d["points"].items()))
  print(report(results))
  print("\n".join(results["notes"]))
  if pseudo is None or tuple(pseudo) == tuple(stats.PSEUDO_ROWS):
    benchmarks.write_json(FLAGS.json, results)
    print(f"wrote {FLAGS.json}")
    if FLAGS.write_doc and set(results["designs"]) == set(DESIGNS):
      benchmarks.fill_markers(benchmarks.DOC, {"coverage": summary(results)})
      print(f"wrote the coverage table into {benchmarks.DOC}")
  else:
    print(f"pseudo rows {pseudo_label(pseudo)} are not lr_jax's {pseudo_label(None)}: "
          f"{FLAGS.json} not written")


def main(argv):
  del argv
  for name in FLAGS.designs:
    if name not in DESIGNS:
      raise app.UsageError(f"unknown design {name!r}; valid: {', '.join(DESIGNS)}")
  if not FLAGS.tabulate:
    from lr_jax import cli
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(benchmarks.ROOT,
                                                                       ".jax_cache")
    cli.enable_compilation_cache(path)
    logging.set_verbosity(logging.WARNING)  # lr_jax's per-sweep lines would drown the progress.
    t0 = time.perf_counter()
    for name in FLAGS.designs:
      simulate(name, FLAGS.reps)
    print(f"simulated in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
  tabulate(FLAGS.designs, parse_pseudo_rows(FLAGS.pseudo_rows))


if __name__ == "__main__":
  app.run(main)
