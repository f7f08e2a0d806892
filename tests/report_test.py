"""Report helpers: Markdown tables and pages, number formats, figures that are real PNGs."""

import math
import os
import re
import sys

import numpy as np
import pytest

from lr_jax import report


def _cells(line: str) -> list[str]:
  """The cells of a Markdown table row, honouring escaped pipes."""
  assert line.startswith("| ") and line.endswith(" |"), line
  return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]


def test_markdown_table_has_header_rule_and_rows_of_equal_width():
  table = report.markdown_table(
      ["lr", "accuracy", "note"],
      [[1e-4, 0.91234567, "a|b"], [0.1, math.nan, "line\nbreak"]])
  lines = table.splitlines()
  assert len(lines) == 4
  assert _cells(lines[0]) == ["lr", "accuracy", "note"]
  assert _cells(lines[1]) == [":---", "---:", "---:"]
  assert _cells(lines[2]) == ["0.0001", "0.9123", "a\\|b"]  # 4 significant digits, pipe escaped
  assert _cells(lines[3]) == ["0.1", "n/a", "line break"]
  assert all(len(_cells(line)) == 3 for line in lines)


def test_markdown_table_refuses_ragged_rows_and_bad_align():
  with pytest.raises(ValueError, match="row 1 has 1 cells for 2 columns"):
    report.markdown_table(["a", "b"], [[1, 2], [3]])
  with pytest.raises(ValueError, match="align"):
    report.markdown_table(["a", "b"], [[1, 2]], align=["l"])
  centered = report.markdown_table(["a", "b"], [[1, 2]], align=["c", "l"])
  assert centered.splitlines()[1] == "| :---: | :--- |"


@pytest.mark.parametrize("lr,text", [
    (1e-4, "1e-4"), (10 ** -4.5, "3.2e-5"), (3.1623e-3, "3.2e-3"), (0.01, "0.01"),
    (0.031623, "0.032"), (1.0, "1"), (10 ** 0.5, "3.2"), (math.nan, "n/a")])
def test_format_lr(lr, text):
  assert report.format_lr(lr) == text


def test_format_ci():
  assert report.format_ci(0.91234, 0.0123) == "0.912 ± 0.012"
  assert report.format_ci(0.5, math.nan) == "0.500"  # one run: no interval
  assert report.format_ci(math.nan, 0.1) == "n/a"
  assert report.format_ci(0.91234, 0.0123, digits=2) == "0.91 ± 0.01"


def test_write_report_writes_title_sections_and_images(tmp_path):
  path = report.write_report(str(tmp_path / "out"), "My study", [
      ("Results", "text\n\n" + report.image("fig.png", "a [figure]")), ("Table", "| a |")])
  text = open(path).read()
  assert path == str(tmp_path / "out" / "report.md")
  assert text.startswith("# My study\n")
  assert text.index("## Results") < text.index("## Table")
  assert "![a [figure)](fig.png)" in text
  assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".tmp")]


def test_sequential_colors_go_dark_to_light():
  colors = report.sequential_colors(5)
  brightness = [sum(c[:3]) for c in colors]
  assert len(set(map(tuple, colors))) == 5
  assert brightness == sorted(brightness)  # viridis gets lighter along the map
  assert brightness[-1] < 2.9  # the near-white end is skipped


def _png_size(path):
  from PIL import Image
  with Image.open(path) as im:
    return im.size


def test_figures_are_pngs_with_every_panel(tmp_path):
  lrs = np.array([1e-4, 1e-3, 1e-2, 1e-1])
  acc = np.array([0.5, 0.8, 0.9, np.nan])  # NaN: a point with no result leaves a gap
  panels = {f"panel {i}": [report.Curve(f"n={n}", lrs, acc * n / 100, acc - 0.05, acc + 0.05)
                           for n in (25, 100)] for i in range(3)}
  one = report.plot_lr_sensitivity(str(tmp_path / "one.png"), {"only": panels["panel 0"]},
                                   reference_lr=1e-4, legend_title="training examples")
  three = report.plot_lr_sensitivity(str(tmp_path / "three.png"), panels, ncols=3,
                                     reference_lr={"panel 1": 1e-3})
  assert report.is_png(one) and report.is_png(three)
  (w1, h1), (w3, h3) = _png_size(one), _png_size(three)
  assert w3 > 2.5 * w1 and abs(h3 - h1) < 0.2 * h1  # three panels side by side

  curves = np.stack([np.linspace(2.3, 0.1 * (i + 1), 12) for i in range(len(lrs))])
  curves[0, 8:] = np.nan  # a learning rate whose runs all stopped early
  loss = report.plot_curves(str(tmp_path / "loss.png"),
                            {"A": (lrs, curves, 1e-3), "B": (lrs, curves, None)}, logy=True)
  best = report.plot_best_lr(
      str(tmp_path / "best.png"),
      {"MLP(16)": [report.Curve("adam", np.array([25, 1437]), np.array([1e-3, 1e-2]),
                                np.array([3e-4, 3e-3]), np.array([3e-3, 3e-2]))]},
      lr_range=(1e-5, 1.0))
  assert report.is_png(loss) and report.is_png(best)
  assert not report.is_png(str(tmp_path / "missing.png"))
  (tmp_path / "fake.png").write_bytes(b"not a png")
  assert not report.is_png(str(tmp_path / "fake.png"))


def test_plot_panels_refuses_an_unknown_palette(tmp_path):
  with pytest.raises(ValueError, match="rainbow"):
    report.plot_panels(str(tmp_path / "x.png"), {"a": []}, xlabel="x", ylabel="y",
                       palette="rainbow")


# The main script's report (`write_sweep_report`), on a sweep built by hand: its numbers are
# chosen so that the two selection rules disagree and divergence takes two forms.

from types import SimpleNamespace  # noqa: E402

from hand_made import result_of  # noqa: E402  (tests/ is on sys.path under pytest)

LRS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# [seed, point] best validation accuracy; NaN where the run diverged. The best mean is at 0.01
# (0.9133, SE 0.0088); 0.1 (0.9083) is within one SE of it, so the one-SE rule picks 0.1. At 1.0
# two of three runs diverged: its survivor's 0.95 must not win. At 10 all three diverged.
ACC_SxP = np.array([[0.80, 0.90, 0.900, 0.95, np.nan],
                    [0.82, 0.93, 0.910, np.nan, np.nan],
                    [0.81, 0.91, 0.915, np.nan, np.nan]])


def hand_made_sweep(select="best"):
  """A one-group `SweepResult` of 5 learning rates x 3 seeds, aggregated by the real code."""
  num_seeds, num_points = ACC_SxP.shape
  n, epochs = num_seeds * num_points, 6
  diverged = np.isnan(ACC_SxP).reshape(n)
  acc = ACC_SxP.reshape(n)
  rows = {"group": np.zeros(n, np.int64), "learning_rate": np.tile(LRS, num_seeds),
          "seed": np.repeat(np.arange(num_seeds), num_points), "fold": np.zeros(n, np.int64),
          "best_val_accuracy": acc, "best_val_loss": np.where(diverged, np.nan, 1.0 - acc),
          "diverged": diverged, "epochs_run": np.where(diverged, 1, epochs),
          "epochs_to_target": np.zeros(n, np.int64), "steps_to_target": np.zeros(n, np.int64)}
  e = np.arange(1, epochs + 1)
  history = {"train_loss": np.stack([2.0 / (e * (1 + i % num_points)) for i in range(n)]),
             "val_loss": np.stack([2.2 / (e * (1 + i % num_points)) for i in range(n)]),
             "train_accuracy": np.stack([1 - 0.9 / e for _ in range(n)]),
             "val_accuracy": np.stack([0.95 - 0.8 / e for _ in range(n)])}
  for h in history.values():
    h[diverged, 1:] = np.nan  # A diverged run stops after its first epoch.
  group = SimpleNamespace(dataset=SimpleNamespace(task="classification"),
                          points={"learning_rate": np.array(LRS)},
                          experiment=SimpleNamespace(optim=SimpleNamespace(name="adam")))
  return result_of(rows, history, group, select)


def _table_row(text, lr):
  rows = [line for line in text.splitlines() if line.startswith(f"| {lr} |")]
  assert len(rows) == 1, (lr, text)
  return _cells(rows[0])


def test_sweep_report_files_table_rules_and_divergence(tmp_path):
  out = str(tmp_path)
  paths = report.write_sweep_report(hand_made_sweep(), out, command="python -m x --seeds=3")
  names = [os.path.basename(p) for p in paths]
  assert names == ["lr_accuracy.png", "lr_loss.png", "curves_loss.png", "curves_accuracy.png",
                   "report.md"]
  assert all(report.is_png(p) for p in paths[:-1])
  text = open(paths[-1]).read()
  for name in names[:-1]:
    assert f"]({name})" in text  # Embedded, relative to the report.
  # The chosen point and the other rule's, in the selection and the table.
  assert "- selected: **lr 0.01** by `--select=best`" in text
  assert "0.9133 ± 0.0379 (n=3)" in text  # std 0.01528 / sqrt(3) x t(0.975, df=2) 4.303
  assert "the `one_se` rule (largest learning rate within one standard error" in text
  assert "picks lr 0.1: 0.9083" in text
  header = [line for line in text.splitlines() if line.startswith("| learning rate |")][0]
  assert _cells(header) == ["learning rate", "val_accuracy at the monitored best epoch, mean ± 95% CI", "n", "P(best)",
                            "not worse", "epochs run", "diverged", "notes"]
  assert _table_row(text, "0.01")[-1] == "**selected** (highest mean)"
  assert _table_row(text, "0.1")[-1] == "one-SE rule"
  assert [_table_row(text, lr)[4] for lr in ("1e-3", "0.01", "0.1")] == ["", "~", "~"]
  p_best = [float(_table_row(text, lr)[3]) for lr in ("1e-3", "0.01", "0.1")]
  assert abs(sum(p_best) - 1.0) < 0.011 and p_best[1] > p_best[2] > p_best[0] == 0.0
  # Diverged points: ineligible, the survivor's mean named as such, no P(best).
  one, ten = _table_row(text, "1"), _table_row(text, "10")
  assert one[1:4] == ["0.9500, n=1", "1", "-"] and one[6] == "2/3"
  assert one[-1] == "diverged 2/3, ineligible; mean over 1 survivor"
  assert ten[1:4] == ["n/a", "0", "-"] and ten[-1] == "diverged 3/3, ineligible"
  assert "- ineligible, a run diverged: lr 1: 2/3 runs, lr 10: 3/3 runs" in text
  assert "not significantly worse than the highest mean (a one-sided paired test by seed, fold" in text
  assert "```text\ngroup 0: adam / constant / mlp(16) on digits" in text  # as printed
  assert "## Estimate" not in text
  assert "python -m x --seeds=3" in text


def test_sweep_report_with_one_se_selected_marks_both(tmp_path):
  text = open(report.write_sweep_report(hand_made_sweep("one_se"), str(tmp_path))[-1]).read()
  assert "- selected: **lr 0.1** by `--select=one_se`" in text
  assert "the `best` rule (highest mean) picks lr 0.01: 0.9133" in text
  assert _table_row(text, "0.1")[-1] == "**selected** (one-SE rule)"
  assert _table_row(text, "0.01")[-1] == "highest mean"


def test_sweep_figures_mark_points_and_leave_diverged_ones_unjoined():
  result = hand_made_sweep()
  panels, markers = report._sensitivity_panels(result, [0], "best_val_accuracy")
  (title, curves), = panels.items()
  assert title == "group 0: adam / constant / mlp(16) on digits"
  np.testing.assert_allclose(curves[0].y, [0.81, 0.91333, 0.90833, np.nan, np.nan], atol=1e-4)
  marks = {m.kind: m for m in markers[title]}
  assert marks["selected"].x == [0.01] and marks["alternative"].x == [0.1]
  np.testing.assert_array_equal(marks["diverged"].x, [1.0, 10.0])
  np.testing.assert_allclose(marks["diverged"].y, [0.95, np.nan])  # NaN: drawn on the edge
  assert marks["diverged"].edge == "bottom"
  _, loss_marks = report._sensitivity_panels(result, [0], "best_val_loss")
  assert [m.edge for m in loss_marks[title] if m.kind == "diverged"] == ["top"]
  # Curves: the selected point and its grid neighbours, the selected one emphasised.
  curves = report._curve_panels(result, [0], "loss")
  assert list(curves) == ["training", "validation"]
  assert [(c.label, c.emphasis) for c in curves["validation"]] == [
      ("lr 1e-3", False), ("lr 0.01 (selected)", True), ("lr 0.1", False)]
  np.testing.assert_allclose(curves["validation"][1].y, 2.2 / (2 * np.arange(1, 7)))


def test_a_cross_fitted_sweep_draws_its_loss_at_the_monitored_epoch_and_says_so(tmp_path,
                                                                                monkeypatch):
  # A run keeps each validation row's outcome for its score alone (accuracy here), so it has
  # no cross-fitted loss: lr_loss.png draws the loss at the monitored best epoch instead of an
  # empty panel, and its title says which.
  import dataclasses
  from lr_jax import results
  from lr_jax.report import sweep as sweep_module
  made = hand_made_sweep()
  n = len(made.rows["seed"])
  rows = dict(made.rows, crossfit_val_accuracy=made.rows["best_val_accuracy"],
              crossfit_val_loss=np.full(n, np.nan))
  group = SimpleNamespace(dataset=SimpleNamespace(task="classification"),
                          points={"learning_rate": np.array(LRS)},
                          experiment=SimpleNamespace(optim=SimpleNamespace(name="adam")))
  aggregates = results.aggregate(rows, [group], [], score="crossfit")
  crossfit = dataclasses.replace(made, rows=rows, aggregates=aggregates,
                                 best=results.best_points(aggregates, 1, "best"))
  drawn = {}

  def keep(path, panels, **kwargs):
    drawn[os.path.basename(path)] = (panels, kwargs["suptitle"])
    return path

  monkeypatch.setattr(sweep_module, "plot_panels", keep)
  sweep_module._sensitivity_figures(crossfit, [0], True, str(tmp_path))
  assert drawn["lr_accuracy.png"][1].startswith(
      "Validation accuracy cross-fitted against learning rate")
  panels, title = drawn["lr_loss.png"]
  assert title.startswith("Validation loss at the monitored best epoch against learning rate")
  (loss,), = panels.values()
  # The eligible points' mean loss, 1 - accuracy in the hand-made rows.
  np.testing.assert_allclose(np.asarray(loss.y, float)[:3],
                             1.0 - np.nanmean(ACC_SxP[:, :3], axis=0))


def test_sweep_report_estimate_section_from_a_hand_made_dict(tmp_path):
  estimate = {"kind": "test", "metric": "accuracy", "score": 0.88, "n": 60,
              "validation_score": 0.9133, "learning_rate": 0.01, "refit_epochs": 12}
  text = open(report.write_sweep_report(hand_made_sweep(), str(tmp_path),
                                        estimate=estimate)[-1]).read()
  section = text.split("## Estimate of the chosen configuration")[1].split("\n## ")[0]
  assert ("The chosen configuration (lr 0.01) scores accuracy **0.8800** on the held-out test "
          "set (60 test rows).") in section
  assert "validation score in the sweep was 0.9133" in section
  assert "gap (validation minus test score) is **+0.0333**" in section
  assert "| refit_epochs | 12 |" in section  # Keys it does not know are listed, not dropped.
  assert text.index("## Selection") < text.index("## Estimate") < text.index("## Figures")

  nested = report.estimate_markdown({
      "kind": "nested_cv", "metric": "loss", "score": 0.30, "ci95": 0.05, "n": 3,
      "validation_score": 0.25, "outer_scores": [0.25, 0.30, 0.35],
      "selected_learning_rates": {"0.1": 1, "0.01": 2}})
  assert "scores loss **0.3000 ± 0.0500** by nested cross-validation (3 outer folds)" in nested
  assert "is **+0.0500**" in nested  # a loss: nested-CV minus validation
  assert "| 0.01 | 2 |\n| 0.1 | 1 |" in nested  # selection counts, by learning rate
  with pytest.raises(ValueError, match="score"):
    report.estimate_markdown({"metric": "accuracy"})


def test_plot_panels_refuses_an_unknown_marker_kind(tmp_path):
  with pytest.raises(ValueError, match="circle"):
    report.plot_panels(str(tmp_path / "x.png"), {"a": []}, xlabel="x", ylabel="y",
                       markers={"a": [report.Marker("m", [1.0], [1.0], "circle")]})


# The main script writes the report with its results, into the same committed set.

@pytest.fixture
def sweep_script(monkeypatch, capsys):
  """Runs lr_sweep's main in-process, the engine replaced by the hand-made sweep."""
  from absl import flags
  from experiments import lr_sweep
  from lr_jax import engine
  monkeypatch.setattr(engine, "run_planned", lambda *a, **k: hand_made_sweep())

  def run(*args):
    argv = ["lr_sweep.py", *args, "--train_size=100", "--lrs=1e-3,1e-2,1e-1,1,10"]
    monkeypatch.setattr(sys, "argv", argv)  # The report shows the command.
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    lr_sweep.main(["lr_sweep"])
    return capsys.readouterr()

  yield run
  flags.FLAGS.unparse_flags()


def test_lr_sweep_writes_the_report_and_noreport_writes_none(sweep_script, tmp_path):
  out = tmp_path / "out"
  sweep_script(f"--out={out}")
  figures = {"lr_accuracy.png", "lr_loss.png", "curves_loss.png", "curves_accuracy.png"}
  assert {"report.md", *figures} <= set(os.listdir(out))
  text = (out / "report.md").read_text()
  assert "- selected: **lr 0.01**" in text
  assert f"```\npython -m experiments.lr_sweep --out={out} --train_size=100" in text
  sweep_script(f"--out={out}", "--noreport")  # The same sweep: replaces its own files.
  left = set(os.listdir(out))
  assert "report.md" not in left and not figures & left, left
  assert {"results.csv", "history.npz", "summary.json"} <= left
