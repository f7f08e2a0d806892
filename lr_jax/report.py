"""Reports: Markdown tables and pages, matplotlib figures, each file written atomically.

    table = markdown_table(["lr", "accuracy"], [[1e-3, "0.95 ± 0.01"]])
    plot_lr_sensitivity("out/sens.png", {"adam": [Curve("n=25", lrs_P, acc_P)]})
    write_report("out", "My study", [("Results", table + "\n\n" + image("sens.png", "curves"))])
    write_sweep_report(result, "out")  # the main script's report.md and figures of a sweep

matplotlib is imported only inside the functions that draw (start-up time matters for the
scripts and their bad-input path), always with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from lr_jax.io import atomic_write

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
    _mark(ax, (markers or {}).get(name, ()))
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


# ------------------------------------------------------------------- the main script's report

_MARK = {"best": "highest mean", "one_se": "one-SE rule"}
_RULE_TEXT = {"best": "highest mean",
              "one_se": "largest learning rate within one standard error of the highest mean"}


def group_title(result, group: int) -> str:
  """'adam / constant / mlp(128) on digits': a compile group's optimizer, schedule, model, data.

  `lr_jax.results.group_title`: from the group's `Experiment`.
  """
  from lr_jax.results import group_title as title
  return title(result, group)


def _extra_keys(entries: Sequence) -> list[str]:
  """The swept hyperparameters besides the learning rate (weight decay, momentum)."""
  return [k for k, _ in entries[0].hparams] if entries else []


def rule_points(result, group: int) -> dict[str, dict | None]:
  """The aggregate entry each selection rule picks in a compile group, whatever rule selected.

  Args:
    result: a `SweepResult`.
    group: the compile group.

  Returns:
    `stats.SELECT_RULES` -> the entry it picks, or None where the group has no selection
    (no eligible point, or all tie: `SweepResult.best`'s "reason").
  """
  from lr_jax import stats
  entries = [a for a in result.aggregates if a.group == group]
  eligible = [a for a in entries if a.eligible]
  best = result.best[group] if group < len(result.best) else {}
  if not eligible or not math.isfinite(getattr(best, "learning_rate", math.nan)):
    return {rule: None for rule in stats.SELECT_RULES}
  picked = {}
  for rule in stats.SELECT_RULES:
    i = stats.select_index(
        rule, np.array([a.learning_rate for a in eligible], np.float64),
        np.array([a.mean for a in eligible], np.float64),
        np.array([a.se for a in eligible], np.float64), np.ones(len(eligible), bool),
        eligible[0].higher_is_better)
    picked[rule] = eligible[i] if i is not None else None
  return picked


def _point_rows(result, group: int, entry, keys: Sequence[str]) -> np.ndarray:
  """[runs] indices of the rows (variants) of one aggregate entry."""
  sel = np.asarray(result.rows["group"]) == group
  for k in keys:
    column = np.asarray(result.rows[k], np.float64)
    value = entry.value(k)
    sel &= (column == value) | (np.isnan(column) & np.isnan(value))
  return np.flatnonzero(sel)


def _lines(entries: Sequence[dict], extra: Sequence[str]) -> list[tuple[str, list[dict]]]:
  """A group's entries split by their other hyperparameters, each line sorted by learning rate."""
  combos: dict[tuple, list[dict]] = {}
  for a in entries:
    combos.setdefault(tuple(a.value(k) for k in extra), []).append(a)
  out = []
  for combo, line in sorted(combos.items(), key=lambda kv: np.nan_to_num(kv[0], nan=-1.0).tolist()):
    label = ", ".join(f"{k} {v:g}" for k, v in zip(extra, combo)) or "mean, 95% CI"
    out.append((label, sorted(line, key=lambda a: a.learning_rate)))
  return out


def _run_summary(result, group: int, entry, keys: Sequence[str], column: str):
  """`stats.Summary` of a point's `column` over its runs with a score (not diverged, finite)."""
  from lr_jax import stats
  idx = _point_rows(result, group, entry, keys)
  values = np.asarray(result.rows[column], np.float64)[idx]
  diverged = np.asarray(result.rows["diverged"], bool)[idx]
  return stats.summarize(values[~diverged])


def _sensitivity_panels(result, groups: Sequence[int], column: str
                        ) -> tuple[dict[str, list[Curve]], dict[str, list[Marker]]]:
  """Per group: mean `column` against learning rate with its 95% band, and the marked points.

  The line joins eligible points only: a point where a run diverged is marked as such, at its
  survivors' mean (or on the worst edge when every run diverged), not joined as a result.
  """
  edge = "top" if "loss" in column else "bottom"
  panels, markers = {}, {}
  for gi in groups:
    entries = [a for a in result.aggregates if a.group == gi]
    extra = _extra_keys(entries)
    keys = ["learning_rate", *extra]
    summary = {id(a): _run_summary(result, gi, a, keys, column) for a in entries}
    curves = []
    for label, line in _lines(entries, extra):
      lr = np.array([a.learning_rate for a in line])
      mean = np.array([summary[id(a)].mean if a.eligible else math.nan for a in line])
      ci = np.array([summary[id(a)].ci95 for a in line])
      curves.append(Curve(label, lr, mean, mean - ci, mean + ci))
    title = f"group {gi}: {group_title(result, gi)}"
    panels[title] = curves
    marks = []
    picked = rule_points(result, gi)
    # The selected point first: the legend reads in drawing order.
    for rule in sorted(picked, key=lambda rule: rule != result.select):
      a = picked[rule]
      if a is None:
        continue
      y = [summary[id(a)].mean]
      if rule == result.select:
        marks.append(Marker(f"selected ({rule}): lr {format_lr(a.learning_rate)}",
                            [a.learning_rate], y, "selected"))
      else:
        marks.append(Marker(f"the {rule} rule's: lr {format_lr(a.learning_rate)}",
                            [a.learning_rate], y, "alternative"))
    bad = [a for a in entries if not a.eligible]
    if bad:
      label = ("a run diverged: ineligible" if all(a.n_diverged for a in bad)
               else "a run diverged or has no score: ineligible")
      marks.append(Marker(label, [a.learning_rate for a in bad],
                          [summary[id(a)].mean for a in bad], "diverged", edge))
    markers[title] = marks
  return panels, markers


def _trajectory(curves_RxE: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, min and max over runs per epoch, while at least half the runs are still training.

  A run stops early and its history turns NaN; a mean over the runs that are left would jump
  as they drop out, so the curve ends where fewer than half remain.
  """
  c = np.asarray(curves_RxE, np.float64)
  running = np.isfinite(c).sum(axis=0)
  enough = running * 2 >= max(c.shape[0], 1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # An epoch no run reached: NaN is right.
    mean, lo, hi = np.nanmean(c, axis=0), np.nanmin(c, axis=0), np.nanmax(c, axis=0)
  return (np.where(enough, mean, np.nan), np.where(enough, lo, np.nan),
          np.where(enough, hi, np.nan))


def _curve_panels(result, groups: Sequence[int], metric: str) -> dict[str, list[Curve]]:
  """Per group: training and validation `metric` per epoch of the selected point and its
  neighbours on the learning-rate grid (mean over runs, band from the lowest to the highest)."""
  panels = {}
  for gi in groups:
    entries = [a for a in result.aggregates if a.group == gi]
    chosen = rule_points(result, gi).get(result.select)
    if chosen is None:
      continue
    extra = _extra_keys(entries)
    keys = ["learning_rate", *extra]
    line = next(line for _, line in _lines(entries, extra) if any(a is chosen for a in line))
    at = next(i for i, a in enumerate(line) if a is chosen)
    shown = line[max(at - 1, 0):at + 2]
    for phase in ("train", "val"):
      history = result.history.get(f"{phase}_{metric}")
      if history is None:
        continue
      curves = []
      for a in shown:
        runs = np.asarray(history)[_point_rows(result, gi, a, keys)]
        mean, lo, hi = _trajectory(runs)
        last = np.flatnonzero(np.isfinite(mean))
        if last.size == 0:
          continue
        end = last[-1] + 1
        note = " (selected)" if a is chosen else (
            f" (diverged {a.n_diverged}/{a.n_total})" if a.n_diverged else "")
        curves.append(Curve(f"{_point_name(a, extra)}{note}",
                            np.arange(1, end + 1), mean[:end], lo[:end], hi[:end],
                            emphasis=a is chosen))
      if curves:
        name = "training" if phase == "train" else "validation"
        panels[f"group {gi}, {name}" if len(groups) > 1 else name] = curves
  return panels


def _point_name(a, extra: Sequence[str]) -> str:
  """'lr 0.01' or 'lr 0.01 (weight_decay 0.1)': a grid point as the text names it."""
  others = ", ".join(f"{k} {a.value(k):g}" for k in extra)
  return f"lr {format_lr(a.learning_rate)}" + (f" ({others})" if others else "")


def _score_cell(a) -> str:
  from lr_jax.results import format_score
  return format_score(a.mean, a.ci95, a.n)


def sweep_table(result, group: int) -> str:
  """A compile group's points as a Markdown table: score with its n, P(best), marks, notes."""
  from lr_jax.results import point_notes
  entries = [a for a in result.aggregates if a.group == group]
  extra = _extra_keys(entries)
  picked = rule_points(result, group)
  metric = entries[0].metric
  headers = ["learning rate", *extra, f"best {metric}, mean ± 95% CI", "n", "P(best)",
             "not worse", "epochs run", "diverged", "notes"]
  body = []
  for a in entries:
    p = a.p_best
    marks = [f"**selected** ({_MARK[rule]})" if rule == result.select else _MARK[rule]
             for rule, b in picked.items() if b is a]
    notes = "; ".join(marks + ([point_notes(a)] if point_notes(a) else []))
    body.append([format_lr(a.learning_rate), *[f"{a.value(k):g}" for k in extra], _score_cell(a),
                 a.n, f"{p:.2f}" if a.eligible and p is not None and math.isfinite(p)
                 else "-",
                 {True: "~", False: "", None: "?"}[a.not_worse],
                 f"{a.mean_epochs_run:.1f}", f"{a.n_diverged}/{a.n_total}", notes])
  return markdown_table(headers, body, align=["l"] * (1 + len(extra)) + ["r"] * 3 + ["c"]
                        + ["r"] * 2 + ["l"])


def _selection_markdown(result, group: int) -> str:
  """What was chosen in a group, what the other rule would choose, and how sure it is."""
  entries = [a for a in result.aggregates if a.group == group]
  best = result.best[group]
  picked = rule_points(result, group)
  chosen = picked.get(result.select)
  extra = _extra_keys(entries)
  lines = [f"**group {group}** — {group_title(result, group)}:", ""]
  if chosen is None:
    lines.append(f"- no learning rate selected: {best.reason or 'no eligible point'}")
  else:
    metric = chosen.metric
    p = chosen.p_best
    p_text = f", P(best) {p:.2f}" if p is not None and math.isfinite(p) else ""
    lines.append(f"- selected: **{_point_name(chosen, extra)}** by "
                 f"`--select={result.select}` ({_RULE_TEXT.get(result.select, result.select)}): "
                 f"best {metric} {_score_cell(chosen)} (n={chosen.n}){p_text}")
    for rule, a in picked.items():
      if rule != result.select and a is not None:
        same = " (the same point)" if a is chosen else ""
        lines.append(f"- the `{rule}` rule ({_RULE_TEXT.get(rule, rule)}) picks "
                     f"{_point_name(a, extra)}{same}: {_score_cell(a)}")
    eligible = [a for a in entries if a.eligible]
    near = [a for a in eligible if a.not_worse]
    if any(a.not_worse is None for a in eligible):
      lines.append("- points not significantly worse than the highest mean: unknown (runs "
                   "not paired by seed and fold)")
    else:
      lines.append(f"- not significantly worse than the highest mean (paired by seed and "
                   f"fold): {len(near)} of {len(eligible)} eligible points: "
                   + ", ".join(_point_name(a, extra) for a in near))
  bad = [a for a in entries if a.n_diverged]
  if bad:
    lines.append("- ineligible, a run diverged: " + ", ".join(
        f"{_point_name(a, extra)}: {a.n_diverged}/{a.n_total} runs" for a in bad))
  return "\n".join(lines)


def estimate_markdown(estimate: Mapping[str, object]) -> str:
  """The section on the chosen configuration's honest estimate: a test set, or nested CV.

  The selected point's validation score is the best of many means, so it flatters the chosen
  configuration (the winner's curse); a score on data the selection never saw does not.

  Args:
    estimate: `score` (required): the test score, or the mean of the outer folds' scores;
      optional: `kind` ("test" or "nested_cv"), `metric` (e.g. "accuracy", "loss"),
      `higher_is_better` (default: unless the metric is a loss), `ci95` (the score's 95%
      half-width), `n` (test rows, or outer folds), `validation_score` (the winner's mean
      validation score), `learning_rate` (the chosen one), `outer_scores` ([K] per outer
      fold), `selected_learning_rates` ({learning rate: times selected} over outer folds).
      Other keys are listed as they are.

  Returns:
    Markdown.

  Raises:
    ValueError: `score` is missing.
  """
  if "score" not in estimate:
    raise ValueError(f"an estimate needs a 'score'; got keys {', '.join(map(str, estimate))}")
  kind = estimate.get("kind", "test")
  metric = str(estimate.get("metric", "score"))
  higher = bool(estimate.get("higher_is_better", "loss" not in metric))
  score = float(estimate["score"])
  n = estimate.get("n")
  ci = estimate.get("ci95")
  where = {"test": "on the held-out test set", "nested_cv": "by nested cross-validation"
           }.get(kind, f"({kind})")
  size = ""
  if n is not None:
    size = f" ({n} test rows)" if kind == "test" else f" ({n} outer folds)"
  score_text = format_ci(score, float(ci) if ci is not None else math.nan, digits=4)
  lr = estimate.get("learning_rate")
  lr_text = f" (lr {format_lr(float(lr))})" if lr is not None else ""
  lines = [f"The chosen configuration{lr_text} scores {metric} **{score_text}** {where}{size}."]
  val = estimate.get("validation_score")
  if val is not None and math.isfinite(float(val)):
    optimism = (float(val) - score) if higher else (score - float(val))
    lines.append(
        f"Its validation score in the sweep was {float(val):.4f}: the winner's-curse gap "
        f"(validation minus {'test' if kind == 'test' else 'nested-CV'} score"
        f"{'' if higher else ', for a loss test minus validation'}) is **{optimism:+.4f}**"
        + (" — the sweep's best validation score was optimistic." if optimism > 0 else
           " — no optimism showed here."))
  body = "\n".join(lines)
  outer = estimate.get("outer_scores")
  if outer is not None:
    body += "\n\n" + markdown_table(["outer fold", metric],
                                    [[i, float(v)] for i, v in enumerate(outer)])
  counts = estimate.get("selected_learning_rates")
  if counts:
    body += "\n\n" + markdown_table(
        ["learning rate", "selected in outer folds"],
        [[format_lr(float(k)), v] for k, v in sorted(counts.items(), key=lambda kv: float(kv[0]))])
  known = {"kind", "metric", "higher_is_better", "score", "ci95", "n", "validation_score",
           "learning_rate", "outer_scores", "selected_learning_rates"}
  rest = [[k, v] for k, v in estimate.items() if k not in known]
  if rest:
    body += "\n\n" + markdown_table(["", "value"], rest)
  return body


def result_estimates(result) -> list[tuple[int, dict]]:
  """The estimates a sweep result carries, as `estimate_markdown` reads them: (group, estimate).

  Nested cross-validation's (`SweepResult.nested`, one per group) and a refit's test score
  (`SweepResult.estimate`, when it has a test set).
  """
  out = []
  for e in getattr(result, "nested", ()) or ():
    out.append((e.group, {
        "kind": "nested_cv", "metric": e.metric, "higher_is_better": e.higher_is_better,
        "score": e.mean, "ci95": e.ci95, "n": len(e.folds), "validation_score": e.validation,
        "outer_scores": [f.score for f in e.folds],
        "selected_learning_rates": dict(e.selected), "rule": e.rule}))
  est = getattr(result, "estimate", None)
  if est and est.get("test") is not None:
    out.append((int(est["group"]), {
        "kind": "test", "metric": est["metric"], "score": est["test"], "n": est["test_n"],
        "validation_score": est["validation"],
        "learning_rate": result.best[int(est["group"])].get("learning_rate"),
        "rule": est.get("rule"), "refit rows": est.get("refit_n")}))
  return out


def write_sweep_report(result, out_dir: str, *, estimate: Mapping[str, object] | None = None,
                       command: str | None = None, title: str = "Learning-rate sweep"
                       ) -> list[str]:
  """Writes the main script's `report.md` and its figures into `out_dir`.

  Figures (PNG), one panel per compile group: `lr_accuracy.png` (classification) and
  `lr_loss.png`: the best validation accuracy / loss against learning rate, mean with its 95%
  Student-t band over the runs, the selected point and the other rule's point marked
  (`rule_points`), points where a run diverged marked as such; `curves_loss.png` and
  `curves_accuracy.png`: training and validation curves of the selected point and its
  neighbours on the grid. The page has the selection per group, the estimate (if given),
  the figures and the table (`sweep_table`, and `results.format_table` as printed).

  Args:
    result: a `SweepResult`.
    out_dir: the folder (a staging folder, for a run's output folder).
    estimate: the chosen configuration's score on data the sweep never saw (test set or
      nested CV; see `estimate_markdown`); None uses those the result carries
      (`result_estimates`: nested CV, a refit's test score), if any.
    command: the command that ran, shown at the end.
    title: the page title.

  Returns:
    The paths written: the figures, then report.md.
  """
  from lr_jax.results import format_table
  groups = [gi for gi in range(len(result.best))
            if any(a["group"] == gi for a in result.aggregates)]
  classification = any(a["higher_is_better"] for a in result.aggregates)
  paths, figures = [], []
  runs = sorted({a["n_total"] for a in result.aggregates})
  band = (f"band: 95% CI over {runs[0]} run{'s' if runs[0] > 1 else ''} per point"
          if len(runs) == 1 else "band: 95% CI over each point's runs")
  sensitivity = [("best_val_loss", "lr_loss.png", "validation loss")]
  if classification:
    sensitivity.insert(0, ("best_val_accuracy", "lr_accuracy.png", "validation accuracy"))
  for column, name, what in sensitivity if groups else ():
    panels, marks = _sensitivity_panels(result, groups, column)
    paths.append(plot_panels(
        os.path.join(out_dir, name), panels, xlabel="learning rate", ylabel=f"best {what}",
        logx=True, markers=marks, suptitle=f"Best {what} against learning rate ({band})"))
    figures.append(image(name, f"best {what} against learning rate"))
  for metric in (("loss", "accuracy") if classification else ("loss",)) if groups else ():
    panels = _curve_panels(result, groups, metric)
    if not panels:
      continue
    name = f"curves_{metric}.png"
    # Losses span decades: a log axis, where every value is positive.
    logy = metric == "loss" and all(np.nanmin(c.y) > 0 for cs in panels.values() for c in cs)
    paths.append(plot_panels(
        os.path.join(out_dir, name), panels, xlabel="epoch", ylabel=metric, logy=logy,
        suptitle=f"{metric.capitalize()} per epoch: the selected learning rate and its "
                 "neighbours (mean over runs; band: lowest to highest run)"))
    figures.append(image(name, f"{metric} per epoch, selected learning rate and neighbours"))
  selection = "\n\n".join(_selection_markdown(result, gi) for gi in groups) or (
      "No compile group has results.")
  sections = [("Selection", selection)]
  estimates = [(None, estimate)] if estimate is not None else result_estimates(result)
  if estimates:
    sections.append(("Estimate of the chosen configuration", "\n\n".join(
        (f"### group {gi}: {group_title(result, gi)}\n\n" if gi is not None and len(groups) > 1
         else "") + estimate_markdown(e) for gi, e in estimates)))
  if figures:
    sections.append(("Figures", "\n\n".join(figures)))
  tables = "\n\n".join(f"### group {gi}: {group_title(result, gi)}\n\n{sweep_table(result, gi)}"
                       for gi in groups)
  printed = format_table(result).rstrip()
  if printed:
    tables += ("\n\n<details><summary>The table as the script printed it</summary>\n\n"
               f"```text\n{printed}\n```\n\n</details>")
  sections.append(("Table", tables or "No results."))
  sections.append(("How to read it", "\n".join([
      "- **score**: a run's best validation accuracy (loss, for regression) over its epochs; a "
      "point's mean and 95% Student-t interval are over its runs (seeds × folds) with a score; "
      "n = 1 has no interval.",
      "- **eligible**: no run of the point diverged; only eligible points can be selected, and "
      "the figures join only them (a point where a run diverged is marked ✕, at its survivors' "
      "mean, or on the edge of the worst scores when every run diverged).",
      "- **P(best)**: the share of paired bootstrap resamples of the runs (by seed and fold) in "
      "which the point has the best mean.",
      "- **not worse** (~): not significantly worse than the highest mean, by a one-sided "
      "paired t-test by seed and fold.",
      "- **rules**: `best` picks the highest mean; `one_se` the largest learning rate whose "
      "mean is within one standard error of the highest (Breiman et al., 1984). Both are "
      "marked; `--select` says which one chose.",
  ])))
  if command:
    sections.append(("Command", f"```\n{command}\n```"))
  paths.append(write_report(out_dir, title, sections))
  return paths
