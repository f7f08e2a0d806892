"""The report and results.csv say no more than the runs show: bands within the metric's range,
one n, no not-worse set without a test, "lowest" for a loss, which runs count.

Every sweep here is built by hand and aggregated by the real code: nothing compiles.
"""

import csv
import io
import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from lr_jax import report, results
from lr_jax.report import panels as panels_module

from hand_made import result_of  # tests/ is on sys.path under pytest

LRS = (1e-3, 1e-2, 1e-1, 1.0)
EPOCHS = 6


def _sweep(score_SxP, *, task="classification", loss_SxP=None, diverged_SxP=None,
           pruned_SxP=None, epochs_SxP=None, drop_SxP=None, plan=True, select="best"):
  """A one-group `SweepResult` of len(score_SxP[0]) learning rates x len(score_SxP) seeds.

  Args:
    score_SxP: [seed, point] the score: validation accuracy (classification) or loss
      (regression); a diverged run keeps its pre-divergence value, as the engine leaves it.
    loss_SxP: [seed, point] validation loss of a classification sweep (default 1 - accuracy).
    diverged_SxP, pruned_SxP: [seed, point] bool flags.
    epochs_SxP: [seed, point] epochs run (default `EPOCHS`).
    drop_SxP: [seed, point] runs left out: points that do not share their seeds (unpaired).
    plan: carry the group's plan (a built-in loss), as `run_sweep`'s results do.
    select: the selection rule.
  """
  score = np.asarray(score_SxP, np.float64)
  num_seeds, num_points = score.shape
  n = score.size
  lrs = np.array(LRS[:num_points])
  flags = lambda a: (np.zeros(n, bool) if a is None else np.asarray(a, bool).reshape(n))
  diverged, pruned = flags(diverged_SxP), flags(pruned_SxP)
  epochs = (np.full(n, EPOCHS) if epochs_SxP is None
            else np.asarray(epochs_SxP, np.int64).reshape(n))
  classification = task == "classification"
  if classification:
    acc = score.reshape(n)
    loss = (1.0 - acc) if loss_SxP is None else np.asarray(loss_SxP, np.float64).reshape(n)
  else:
    acc, loss = np.full(n, np.nan), score.reshape(n)
  rows = {"group": np.zeros(n, np.int64), "learning_rate": np.tile(lrs, num_seeds),
          "seed": np.repeat(np.arange(num_seeds), num_points), "fold": np.zeros(n, np.int64), "best_val_loss": loss,
          "best_val_accuracy": acc, "diverged": diverged, "pruned": pruned,
          "epochs_run": epochs, "epochs_to_target": np.zeros(n, np.int64),
          "steps_to_target": np.zeros(n, np.int64)}
  e = np.arange(1, EPOCHS + 1)
  history = {"train_loss": np.stack([2.0 / (e * (1 + i % num_points)) for i in range(n)]),
             "val_loss": np.stack([2.2 / (e * (1 + i % num_points)) for i in range(n)])}
  if classification:
    history["train_accuracy"] = np.stack([1 - 0.9 / e for _ in range(n)])
    history["val_accuracy"] = np.stack([0.95 - 0.8 / e for _ in range(n)])
  for h in history.values():
    h[e[None, :] > epochs[:, None]] = np.nan  # A run's history ends where it stopped.
  if drop_SxP is not None:
    keep = ~np.asarray(drop_SxP, bool).reshape(n)
    rows = {k: v[keep] for k, v in rows.items()}
    history = {k: v[keep] for k, v in history.items()}
  group = SimpleNamespace(
      dataset=SimpleNamespace(task=task, name="digits"), points={"learning_rate": lrs},
      experiment=SimpleNamespace(optim=SimpleNamespace(name="adam", schedule="constant"),
                                 model=SimpleNamespace(name="mlp", hidden=(16,))),
      model=None, loss=None)
  return result_of(rows, history, group, select, plan=plan)


def _report(result, tmp_path) -> str:
  return open(report.write_sweep_report(result, str(tmp_path))[-1]).read()


def _cells(line: str) -> list[str]:
  """The cells of a Markdown table row, honouring escaped pipes."""
  return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _table_row(text: str, lr: str) -> dict[str, str]:
  """The report table's row of learning rate `lr`, by column title."""
  lines = text.splitlines()
  header = _cells(next(line for line in lines if line.startswith("| learning rate |")))
  rows = [line for line in lines if line.startswith(f"| {lr} |")]
  assert len(rows) == 1, (lr, text)
  return dict(zip(header, _cells(rows[0])))


def _line(text: str, start: str) -> str:
  found = [line for line in text.splitlines() if line.startswith(start)]
  assert len(found) == 1, (start, text)
  return found[0]


# 1. A band never leaves the metric's range.

# [seed, point]: at lr 0.1 the accuracies 0.99, 1.0, 0.95 have mean 0.98 and a 95% half-width
# of 0.066: mean + ci = 1.046, an accuracy no run can have. Their losses 0.01, 0.002, 0.2 have
# mean 0.071 and half-width 0.28: mean - ci < 0.
NEAR_ONE = [[0.80, 0.90, 0.99], [0.82, 0.93, 1.00], [0.81, 0.91, 0.95]]
NEAR_ZERO = [[0.20, 0.10, 0.010], [0.18, 0.07, 0.002], [0.19, 0.09, 0.200]]


def test_sensitivity_bands_stay_within_the_metrics_range():
  result = _sweep(NEAR_ONE, loss_SxP=NEAR_ZERO)
  a = next(a for a in result.aggregates if a.learning_rate == 0.1)
  assert a.mean + a.ci95 > 1.0  # The interval itself reaches past 1.
  (acc,), = report._sensitivity_panels(result, [0], "best_val_accuracy")[0].values()
  assert np.nanmax(acc.hi) == 1.0 and np.nanmin(acc.lo) >= 0.0
  np.testing.assert_allclose(acc.y[2], 0.98)  # The mean is not moved.
  (loss,), = report._sensitivity_panels(result, [0], "best_val_loss")[0].values()
  assert np.nanmin(loss.lo) == 0.0
  # A group whose loss is not known to be the built-in one (no plan: maybe a user's loss,
  # which can be negative) is not cut.
  (loss,), = report._sensitivity_panels(_sweep(NEAR_ONE, loss_SxP=NEAR_ZERO, plan=False), [0],
                                        "best_val_loss")[0].values()
  assert np.nanmin(loss.lo) < 0.0


def test_the_drawn_accuracy_band_ends_at_one(tmp_path, monkeypatch):
  drawn = {}
  save = panels_module.save_figure

  def keep_bands(fig, path, **kwargs):
    from matplotlib.collections import PolyCollection
    ys = [p.vertices[:, 1] for ax in fig.axes for c in ax.collections
          if isinstance(c, PolyCollection) for p in c.get_paths()]
    drawn[os.path.basename(path)] = (np.concatenate(ys) if ys else np.zeros(0),
                                     fig._suptitle.get_text() if fig._suptitle else "")
    return save(fig, path, **kwargs)

  monkeypatch.setattr(panels_module, "save_figure", keep_bands)
  report.write_sweep_report(_sweep(NEAR_ONE, loss_SxP=NEAR_ZERO), str(tmp_path))
  ys, title = drawn["lr_accuracy.png"]
  assert ys.size and np.nanmax(ys) <= 1.0 and np.nanmin(ys) >= 0.0
  assert "cut to [0, 1]" in title
  ys, title = drawn["lr_loss.png"]
  assert ys.size and np.nanmin(ys) >= 0.0 and "cut at 0" in title


# 2. n once.

ONE_SEED = [[0.80, 0.91, 0.90]]


def test_one_run_per_point_says_n_once(tmp_path):
  text = _report(_sweep(ONE_SEED), tmp_path)
  selected = _line(text, "- selected: ")
  assert "**lr 0.01**" in selected and "0.9100, n=1" in selected
  assert selected.count("n=1") == 1, selected
  # n >= 2: the interval, then n, once.
  text = _report(_sweep(NEAR_ONE), tmp_path)
  selected = _line(text, "- selected: ")
  assert re.search(r"(± 0\.\d{4}|\[0\.\d{4}, 1\.0000\]) \(n=3\)", selected) and (
      selected.count("n=3") == 1), selected


# 3. No not-worse set without a test.

@pytest.mark.parametrize("case, drop, why", [
    ("one run per point", None, "one run per point and no validation rows to pair"),
    # Seeds 0 and 1 at two points, 0, 1 and 2 at the third: no pairing.
    ("unpaired", [[0, 0, 0], [0, 0, 0], [1, 1, 0]], "runs not paired by seed and fold")])
def test_no_test_no_not_worse_count(tmp_path, case, drop, why):
  scores = ONE_SEED if drop is None else NEAR_ONE
  text = _report(_sweep(scores, drop_SxP=drop), tmp_path)
  line = _line(text, "- points not significantly worse than the highest mean")
  assert line.endswith(f": no test could run ({why})"), line
  assert not re.search(r"\d+ of \d+ eligible", text), text
  for lr in ("1e-3", "0.01", "0.1"):
    assert _table_row(text, lr)["not worse"] == "?"


# 4. A loss: the lowest mean, in words too.

LOSSES = [[0.50, 0.20, 0.90], [0.55, 0.25, 0.80], [0.52, 0.22, 0.85]]


def test_a_loss_is_chosen_and_described_as_the_lowest_mean(tmp_path):
  result = _sweep(LOSSES, task="regression")
  assert result.best[0].learning_rate == 0.01 and not result.best[0].higher_is_better
  text = _report(result, tmp_path)
  assert "`--select=best` (lowest mean loss): val_loss 0.2233" in text
  assert "the `one_se` rule (largest learning rate within one standard error of the lowest " \
         "mean loss)" in text
  assert "- not significantly worse than the lowest mean loss (a one-sided paired test by seed, fold" in text
  assert _table_row(text, "0.01")["notes"].startswith("**selected** (lowest mean loss)")
  assert "`best` picks the lowest mean loss" in text
  assert "not significantly worse than the lowest mean loss, by a one-sided" in text
  # The text table as the script printed it (`results.format_table`) is another module's.
  mine = re.sub(r"<details>.*?</details>", "", text, flags=re.S)
  assert "highest" not in mine, mine


# 5. results.csv: which runs' scores count.

def test_results_csv_says_which_runs_are_scored():
  scores = [[0.80, 0.90, 0.97, 0.95], [0.82, 0.93, 0.91, 0.96], [0.81, np.nan, 0.92, 0.94]]
  diverged = [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]  # kept its pre-divergence 0.97
  pruned = [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]]  # halving stopped lr 1
  result = _sweep(scores, diverged_SxP=diverged, pruned_SxP=pruned)
  rows = list(csv.DictReader(io.StringIO(results.results_csv(result))))
  assert list(rows[0]) == [*result.rows, "scored"]  # Every column kept, one more.
  scored = np.array([int(r["scored"]) for r in rows]).reshape(3, 4)
  np.testing.assert_array_equal(scored, [[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 0]])
  assert rows[2]["best_val_accuracy"] == "0.97" and rows[2]["diverged"] == "true"
  # The scored runs of a point are those its mean and n are over (pruned points aside).
  for a in result.aggregates:
    if a.n_pruned:
      continue
    mine = [float(r["best_val_accuracy"]) for r in rows
            if float(r["learning_rate"]) == a.learning_rate and r["scored"] == "1"]
    assert len(mine) == a.n and math.isclose(np.mean(mine), a.mean), (a, mine)


# 6. Epochs run over the runs with a score.

def test_epochs_run_is_over_the_runs_with_a_score(tmp_path):
  scores = [[0.80, 0.90, 0.95, 0.5], [0.82, 0.93, 0.5, 0.5], [0.81, 0.91, 0.5, 0.5]]
  diverged = [[0, 0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
  epochs = [[6, 4, 6, 1], [6, 5, 1, 2], [6, 6, 1, 1]]
  text = _report(_sweep(scores, diverged_SxP=diverged, epochs_SxP=epochs), tmp_path)
  assert _table_row(text, "0.01")["epochs run"] == "5.0"
  assert _table_row(text, "0.1")["epochs run"] == "6.0"  # Its survivor's, not (6+1+1)/3.
  assert _table_row(text, "1")["epochs run"] == "-"  # No run has a score.
  assert "**epochs run**: the mean over the same runs as the score" in text
