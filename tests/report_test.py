"""Report helpers: Markdown tables and pages, number formats, figures that are real PNGs."""

import math
import os
import re

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
