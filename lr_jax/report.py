"""Reports: Markdown tables and pages, matplotlib figures, each file written atomically.

    table = markdown_table(["lr", "accuracy"], [[1e-3, "0.95 ± 0.01"]])
    plot_lr_sensitivity("out/sens.png", {"adam": [Curve("n=25", lrs_P, acc_P)]})
    write_report("out", "My study", [("Results", table + "\n\n" + image("sens.png", "curves"))])

matplotlib is imported only inside the functions that draw (start-up time matters for the
scripts and their bad-input path), always with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.results import atomic_write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Curve(NamedTuple):
  """One line of a figure.

  Attributes:
    label: the legend entry.
    x: [P] abscissae.
    y: [P] values; NaN leaves a gap.
    lo: [P] lower edge of a shaded band (e.g. mean - 95% CI), or None.
    hi: [P] upper edge of the band, or None.
    emphasis: drawn black, dashed and thicker (e.g. the article's learning rate).
  """

  label: str
  x: np.ndarray
  y: np.ndarray
  lo: np.ndarray | None = None
  hi: np.ndarray | None = None
  emphasis: bool = False


# --------------------------------------------------------------------------------- Markdown


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


# ---------------------------------------------------------------------------------- figures


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str, *, dpi: int = 110) -> str:
  """Saves a matplotlib figure as PNG atomically and closes it; returns `path`."""
  plt = _pyplot()
  buf = io.BytesIO()
  # "tight" keeps a colorbar's label or a long title inside the image.
  fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  atomic_write(path, buf.getvalue())
  return path


def sequential_colors(n: int, cmap: str = "viridis") -> list:
  """[n] colours along a sequential colormap, dark to light, for an ordered quantity.

  The lightest tenth is skipped: it is hard to see on white.
  """
  plt = _pyplot()
  colormap = plt.get_cmap(cmap)
  return [colormap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def _draw(ax, curves: Sequence[Curve], colors: Sequence) -> None:
  for curve, color in zip(curves, colors):
    x, y = np.asarray(curve.x, float), np.asarray(curve.y, float)
    if curve.emphasis:
      style = dict(color="black", lw=2.2, ls="--", zorder=5)
    else:
      style = dict(color=color, lw=1.5)
    ax.plot(x, y, marker="o" if len(x) <= 20 else None, ms=3.5, label=curve.label, **style)
    if curve.lo is not None and curve.hi is not None:
      ax.fill_between(x, np.asarray(curve.lo, float), np.asarray(curve.hi, float),
                      color=style["color"], alpha=0.15, lw=0)


def plot_panels(path: str, panels: Mapping[str, Sequence[Curve]], *, xlabel: str, ylabel: str,
                logx: bool = False, logy: bool = False, palette: str = "sequential",
                cmap: str = "viridis",
                vline: tuple[float, str] | Mapping[str, tuple[float, str]] | None = None,
                legend_title: str | None = None, suptitle: str | None = None, ncols: int = 2,
                ylim: tuple[float, float] | None = None) -> str:
  """Draws one or more panels of line plots with shared styling and writes a PNG.

  Args:
    path: the PNG to write.
    panels: panel title -> its curves. Curves in a panel are coloured by their position.
    xlabel: x axis label (every panel).
    ylabel: y axis label (every panel).
    logx: log-scaled x axis (learning rates, training-set sizes).
    logy: log-scaled y axis.
    palette: "sequential" (curves are an ordered quantity: one colormap, dark to light) or
      "categorical" (unordered: a fixed colour per label, the same in every panel).
    cmap: the sequential colormap.
    vline: (x, label) of a dotted vertical reference line, e.g. the article's learning rate;
      or panel title -> (x, label), one per panel.
    legend_title: title of the legend.
    suptitle: title of the whole figure.
    ncols: panels per row.
    ylim: y range of every panel; default matplotlib's.

  Returns:
    `path`.
  """
  plt = _pyplot()
  names = list(panels)
  ncols = max(1, min(ncols, len(names)))
  nrows = math.ceil(len(names) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
  categorical: dict[str, object] = {}
  if palette == "categorical":
    tab10 = plt.get_cmap("tab10")
    for name in names:
      for c in panels[name]:
        categorical.setdefault(c.label, tab10(len(categorical) % 10))
  elif palette != "sequential":
    raise ValueError(f"unknown palette {palette!r}; valid choices: sequential, categorical")
  for ax, name in zip(axes.flat, names):
    curves = list(panels[name])
    if palette == "categorical":
      colors = [categorical[c.label] for c in curves]
    else:
      colors = sequential_colors(len(curves), cmap)
    _draw(ax, curves, colors)
    line = vline.get(name) if isinstance(vline, Mapping) else vline
    if line is not None:
      ax.axvline(line[0], color="0.3", ls=":", lw=1.3, label=line[1])
    if logx:
      ax.set_xscale("log")
    if logy:
      _log_y(ax)
    if ylim is not None:
      ax.set_ylim(*ylim)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.set_visible(False)
  if suptitle:
    fig.suptitle(suptitle, fontsize=11)
  fig.tight_layout()
  labels = [tuple(ax.get_legend_handles_labels()[1]) for ax in list(axes.flat)[:len(names)]]
  if len(names) > 1 and len(set(labels)) == 1:
    # Every panel has the same entries: one legend beside the panels, clear of every curve.
    handles, texts = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8.5,
               title=legend_title, title_fontsize=9)
  else:
    for ax in list(axes.flat)[:len(names)]:
      ax.legend(fontsize=7.5, title=legend_title, title_fontsize=8, loc="best")
  return save_figure(fig, path)


def _log_y(ax) -> None:
  """A log y axis labelled 0.5, 2, 20 rather than 5x10^-1 (losses span a decade or two)."""
  import matplotlib.ticker as mticker
  ax.set_yscale("log")
  ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
  # Minor ticks labelled at 2 and 5 only: all eight crowd each other within a decade.
  ax.yaxis.set_minor_formatter(mticker.FuncFormatter(
      lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _truncated(cmap: str):
  """The colormap without its lightest tenth, matching `sequential_colors`."""
  plt = _pyplot()
  import matplotlib.colors as mcolors
  base = plt.get_cmap(cmap)
  return mcolors.ListedColormap(base(np.linspace(0.0, 0.9, 256)))


def plot_lr_sensitivity(path: str, panels: Mapping[str, Sequence[Curve]], *,
                        ylabel: str = "mean best validation accuracy",
                        reference_lr: float | Mapping[str, float] | None = None,
                        legend_title: str | None = None,
                        suptitle: str | None = None, ncols: int = 2) -> str:
  """Validation metric against learning rate (log x), one sequential colour per curve.

  Args:
    path: the PNG to write.
    panels: panel title -> curves (x: [P] learning rates, y: [P] mean metric, lo/hi: the
      95% band), ordered as their colours should be (e.g. by training-set size).
    ylabel: the metric.
    reference_lr: a learning rate to mark with a dotted line (e.g. 1e-4), or panel title ->
      its own.
    legend_title: e.g. "training examples".
    suptitle: title of the figure.
    ncols: panels per row.

  Returns:
    `path`.
  """
  if isinstance(reference_lr, Mapping):
    vline = {k: (lr, f"lr = {format_lr(lr)}") for k, lr in reference_lr.items()}
  else:
    vline = (reference_lr, f"lr = {format_lr(reference_lr)}") if reference_lr else None
  return plot_panels(path, panels, xlabel="learning rate", ylabel=ylabel, logx=True,
                     vline=vline, legend_title=legend_title, suptitle=suptitle, ncols=ncols)


def plot_curves(path: str, panels: Mapping[str, tuple[np.ndarray, np.ndarray, float | None]], *,
                ylabel: str = "validation loss", logy: bool = False,
                suptitle: str | None = None, ncols: int = 3) -> str:
  """Per-epoch curves, one line per learning rate on a sequential colormap with a colorbar.

  Args:
    path: the PNG to write.
    panels: panel title -> (lrs [L], curves [L, E] (NaN where no run was training), the
      learning rate to emphasise (drawn black and dashed, in the legend) or None).
    ylabel: the metric.
    logy: log-scaled y axis (losses that span decades).
    suptitle: title of the figure.
    ncols: panels per row.

  Returns:
    `path`.
  """
  plt = _pyplot()
  import matplotlib.cm as cm
  import matplotlib.colors as mcolors
  import matplotlib.ticker as mticker
  # One colour scale for the whole figure, by log learning rate, so panels compare.
  values = np.concatenate([np.asarray(lrs, float) for lrs, _, _ in panels.values()])
  lo, hi = float(values.min()), float(values.max())
  norm = mcolors.LogNorm(lo, hi if hi > lo else lo * 10)
  colormap = _truncated("viridis")
  names = list(panels)
  ncols = max(1, min(ncols, len(names)))
  nrows = math.ceil(len(names) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols + 1.2, 3.8 * nrows),
                           squeeze=False)
  for ax, name in zip(axes.flat, names):
    lrs, curves_LxE, emphasis = panels[name]
    lrs = np.asarray(lrs, float)
    epochs = np.arange(1, curves_LxE.shape[1] + 1)
    curves = [Curve(f"lr = {format_lr(lr)}" + (" (article)" if _same(lr, emphasis) else ""),
                    epochs, curves_LxE[i], emphasis=_same(lr, emphasis))
              for i, lr in enumerate(lrs)]
    _draw(ax, curves, [colormap(norm(lr)) for lr in lrs])
    if logy:
      _log_y(ax)
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, c in enumerate(curves) if c.emphasis]  # The colorbar names the rest.
    if keep:
      ax.legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize=8, loc="best")
  for ax in list(axes.flat)[len(names):]:
    ax.set_visible(False)
  if suptitle:
    fig.suptitle(suptitle, fontsize=11)
  fig.tight_layout()
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=colormap), ax=axes.ravel().tolist(),
               label="learning rate", fraction=0.035, pad=0.02)
  return save_figure(fig, path)


def _same(a: float, b: float | None) -> bool:
  return b is not None and math.isclose(a, b, rel_tol=1e-6)


def plot_best_lr(path: str, panels: Mapping[str, Sequence[Curve]], *,
                 lr_range: tuple[float, float] | None = None, suptitle: str | None = None,
                 ncols: int = 2) -> str:
  """Best learning rate against training-set size (log-log), one categorical colour per line.

  Args:
    path: the PNG to write.
    panels: panel title -> curves (x: [N] training-set sizes, y: [N] best learning rates,
      lo/hi: the range of learning rates within tolerance of the best).
    lr_range: (smallest, largest) learning rate of the grid, drawn as the y limits so that a
      best LR at the grid's edge shows as one.
    suptitle: title of the figure.
    ncols: panels per row.

  Returns:
    `path`.
  """
  ylim = None
  if lr_range is not None:
    ylim = (lr_range[0] / 2, lr_range[1] * 2)
  return plot_panels(path, panels, xlabel="training examples", ylabel="best learning rate",
                     logx=True, logy=True, palette="categorical", suptitle=suptitle,
                     ncols=ncols, ylim=ylim, legend_title="optimizer")


def is_png(path: str) -> bool:
  """Whether `path` exists and starts with the PNG signature."""
  try:
    with open(path, "rb") as f:
      return f.read(8) == PNG_MAGIC
  except OSError:
    return False
