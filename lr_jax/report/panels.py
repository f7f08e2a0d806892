"""Panels of line plots: curves, marked points, colours and axes, a PNG saved atomically."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.io import atomic_write


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


class Marker(NamedTuple):
  """Points to mark on a panel, drawn over its curves with one legend entry.

  Attributes:
    label: the legend entry.
    x: [M] abscissae.
    y: [M] ordinates; NaN puts the point on the panel's edge `edge` (e.g. a point with no
      value because every run diverged: the bottom of an accuracy, the top of a loss).
    kind: a key of `MARKER_STYLES`.
    edge: "bottom" or "top".
  """

  label: str
  x: np.ndarray
  y: np.ndarray
  kind: str = "selected"
  edge: str = "bottom"


MARKER_STYLES = {
    # A filled star on top, a larger hollow diamond around it: both stay visible on one point.
    "selected": dict(marker="*", s=190, color="crimson", edgecolors="black", linewidths=0.6,
                     zorder=8),
    "alternative": dict(marker="D", s=120, facecolors="none", edgecolors="darkorange",
                        linewidths=1.8, zorder=7),
    "diverged": dict(marker="X", s=70, color="0.45", edgecolors="none", zorder=6),
}
"""How each kind of `Marker` is drawn (`matplotlib.axes.Axes.scatter` keywords)."""


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str, *, dpi: int = 110) -> str:
  """Saves a matplotlib figure as PNG atomically and closes it; returns `path`.

  The figure lays itself out (`layout="constrained"`: titles, labels, a colorbar and a legend
  outside the panels kept inside the image) in the one draw that renders it; a tight layout
  and a tight bounding box drew each figure three times (half the sweep report's time).
  """
  plt = _pyplot()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  atomic_write(path, buf.getvalue())
  return path


def figure_title(fig, text: str, *, fontsize: float = 11) -> None:
  """The figure's title, wrapped to the figure's width (a constrained layout keeps the figure's
  size, so a line wider than the figure would be cut)."""
  chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
  fig.suptitle(textwrap.fill(text, chars), fontsize=fontsize)


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
                ylim: tuple[float, float] | None = None,
                markers: Mapping[str, Sequence[Marker]] | None = None) -> str:
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
    markers: panel title -> points to mark (`Marker`), e.g. the selected learning rate.

  Returns:
    `path`.
  """
  plt = _pyplot()
  names = list(panels)
  for name in markers or {}:
    for m in markers[name]:
      if m.kind not in MARKER_STYLES:
        raise ValueError(f"unknown marker kind {m.kind!r}; valid choices: "
                         f"{', '.join(MARKER_STYLES)}")
  ncols = max(1, min(ncols, len(names)))
  nrows = math.ceil(len(names) / ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False,
                           layout="constrained")
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
      # Over about a decade matplotlib labels the minor ticks too, and they run together.
      from matplotlib.ticker import NullFormatter
      ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
      _log_y(ax)
    if ylim is not None:
      ax.set_ylim(*ylim)
    _mark(ax, (markers or {}).get(name, ()))
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.set_visible(False)
  if suptitle:
    figure_title(fig, suptitle)
  labels = [tuple(ax.get_legend_handles_labels()[1]) for ax in list(axes.flat)[:len(names)]]
  if len(names) > 1 and len(set(labels)) == 1:
    # Every panel has the same entries: one legend beside the panels, clear of every curve.
    handles, texts = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside right center", fontsize=8.5, title=legend_title,
               title_fontsize=9)
  else:
    for ax in list(axes.flat)[:len(names)]:
      ax.legend(fontsize=7.5, title=legend_title, title_fontsize=8, loc="best")
  return save_figure(fig, path)


def _mark(ax, markers: Sequence[Marker]) -> None:
  """Draws `markers` on `ax`; a NaN ordinate sits on an edge, whatever the y range."""
  import matplotlib.transforms as mtransforms
  edge = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
  for m in markers:
    x, y = np.asarray(m.x, float), np.asarray(m.y, float)
    style = MARKER_STYLES[m.kind]
    known = np.isfinite(y)
    if known.any():
      ax.scatter(x[known], y[known], label=m.label, **style)
    if not known.all():
      # One legend entry for both: a point without a value is still the same kind of point.
      at = 0.97 if m.edge == "top" else 0.03
      ax.scatter(x[~known], np.full((~known).sum(), at), transform=edge, clip_on=False,
                 label=None if known.any() else m.label, **style)
      # A blended transform leaves the x range alone: widen it to show these points.
      ax.update_datalim(np.column_stack([x[~known], np.zeros((~known).sum())]), updatey=False)
      ax.autoscale_view(scaley=False)


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
