"""The fine-tuning experiment: its configuration, its table's judgements, its report."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys

import pytest

import lr_jax
from lr_jax import report, transfer
from lr_jax.transfer import ArmRow, FineTuneConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--train_sizes=10", "--lrs=1e-4,1e-2", "--seeds=2", "--steps=12", "--source_epochs=3",
        "--val_size=40", "--widths=4", "--source_lrs=1e-2"]


@pytest.mark.parametrize("changes,message", [
    (dict(source_classes=(0, 1, 5)), r"share a class; the target must be unseen"),
    (dict(reference_lr=3e-4), r"reference_lr 0.0003 is not in the learning-rate grid"),
    (dict(train_sizes=(3,)), r"train size 3 is below one image per target class \(5\)"),
    (dict(target_classes=(5, 12)), r"class 12 is not a digit; valid choices: 0..9"),
    (dict(discriminative_scale=1.0), r"discriminative_scale must be in \(0, 1\)"),
])
def test_a_bad_configuration_is_one_line(changes, message):
  with pytest.raises(lr_jax.ConfigError, match=message):
    FineTuneConfig(**changes)


def _row(not_worse, best, means=None):
  lrs = (1e-5, 1e-4, 1e-3, 1e-2)
  means = means or tuple(0.5 + 0.1 * (i == best) for i in range(4))
  return ArmRow(size=10, arm="full fine-tuning", scale=1.0, runs=3, val_rows=100, lrs=lrs,
                means=means, cis=(0.05,) * 4, p_best=tuple(float(i == best) for i in range(4)),
                not_worse=tuple(not_worse), diverged=(0,) * 4, unfinished=(3, 1, 0, 0),
                best=best, ref=1)


def test_a_small_learning_rate_is_needed_only_when_every_larger_one_is_worse():
  assert _row([True, True, False, False], best=1).small_needed
  assert not _row([False, True, True, False], best=1).small_needed  # 1e-3 as good: not needed.
  assert not _row([False, False, True, True], best=3).small_needed  # The best is larger.
  text = transfer.answer([_row([False, True, True, False], best=1)], 1e-4)
  assert "In 0 of 1 (size, arm) sweeps every larger learning rate was significantly worse" in text
  assert ("lr 1e-4 scores 0.600 ± 0.050: the best itself, with 1 of 3 runs still improving "
          "when the steps ran out") in text
  assert _row([True, True, True, False], best=1).not_worse_range == (1e-5, 1e-3)


def test_the_script_writes_a_report_whose_table_is_its_csv(tmp_path):
  out = str(tmp_path / "ft")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-m", "experiments.fine_tune", *TINY, f"--out={out}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = open(os.path.join(out, "report.md")).read()
  for heading in ("## Answer", "## Setup", "## Figure", "## Table", "## Command"):
    assert heading in text
  assert report.is_png(os.path.join(out, "arms.png"))
  with open(os.path.join(out, "table.csv")) as f:
    rows = list(csv.DictReader(f))
  assert {r["arm"] for r in rows} == set(transfer.ARMS)
  assert len(rows) == 4 * 2  # 4 arms x 2 learning rates, one size.
  assert {r["backbone_lr_scale"] for r in rows} == {"", "0.0", "0.1", "1.0"}
  for r in rows:
    assert r["runs"] == "2" and r["val_rows"] == "40"
    acc = float(r["mean_val_accuracy"])
    assert 0 <= acc <= 1 or math.isnan(acc)
  # Each table line is its arm's best row of the CSV.
  for r in (r for r in rows if r["best"] == "1"):
    line = next(line for line in text.splitlines() if line.startswith(f"| 10 | {r['arm']} |"))
    assert f"{float(r['mean_val_accuracy']):.3f}" in line
  assert re.search(r"\*\*10 training images\*\* \(40 validation images, 2 runs", text)
  assert re.search(r"\*\*Does pretraining help\?\*\* .* of 3: linear probe at 10 images "
                   r"[-+]\d\.\d{3} ± \d\.\d{3}", text)
