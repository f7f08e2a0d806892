"""Markdown: learning rates and intervals as text, tables, images, a page written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from lr_jax.io import atomic_write


def format_lr(lr: float) -> str:
  """A learning rate, short and exact enough to find it in the grid: 1e-4, 3.2e-5, 0.032, 1."""
  if lr is None or not math.isfinite(lr):
    return "n/a"
  if lr == 0 or 1e-2 <= abs(lr) < 1e3:
    return f"{lr:.2g}"
  mantissa, exponent = f"{lr:.1e}".split("e")
  return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def format_ci(mean: float, ci: float, digits: int = 3) -> str:
  """'mean ± ci' (ci omitted when not finite, e.g. a single run); 'n/a' for no value."""
  if mean is None or not math.isfinite(mean):
    return "n/a"
  if ci is None or not math.isfinite(ci):
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def _cell(value: object) -> str:
  if isinstance(value, (float, np.floating)):
    value = float(value)
    text = "n/a" if not math.isfinite(value) else f"{value:.4g}"
  else:
    text = str(value)
  # A pipe would end the cell and a newline the row.
  return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                   align: Sequence[str] | None = None) -> str:
  """A GitHub-flavoured Markdown table.

  Args:
    headers: [C] column titles.
    rows: [R][C] cells; floats are shown with 4 significant digits, other values with `str`.
    align: [C] of "l", "r" or "c"; default left for the first column, right for the others.

  Returns:
    The table, lines joined by newlines, no trailing newline.

  Raises:
    ValueError: when a row's length differs from the headers'.
  """
  headers = list(headers)
  if align is None:
    align = ["l"] + ["r"] * (len(headers) - 1)
  if len(align) != len(headers):
    raise ValueError(f"align has {len(align)} entries for {len(headers)} columns")
  rule = {"l": ":---", "r": "---:", "c": ":---:"}
  lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
           "| " + " | ".join(rule[a] for a in align) + " |"]
  for i, row in enumerate(rows):
    row = list(row)
    if len(row) != len(headers):
      raise ValueError(f"row {i} has {len(row)} cells for {len(headers)} columns: {row!r}")
    lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
  return "\n".join(lines)


def image(path: str, alt: str) -> str:
  """Markdown that embeds the image at `path` (relative to the report)."""
  return f"![{alt.replace(']', ')')}]({path})"


def write_report(out_dir: str, title: str, sections: Sequence[tuple[str, str]], *,
                 filename: str = "report.md") -> str:
  """Writes a Markdown page: `# title`, then one `## heading` and its body per section.

  Args:
    out_dir: the folder; figures referenced by the bodies should be relative to it.
    title: the page title.
    sections: (heading, Markdown body) pairs, in order.
    filename: the page's file name.

  Returns:
    The path written.
  """
  parts = [f"# {title}\n"]
  for heading, body in sections:
    parts.append(f"## {heading}\n\n{body.strip()}\n")
  path = os.path.join(out_dir, filename)
  atomic_write(path, "\n".join(parts).encode())
  return path
