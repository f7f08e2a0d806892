"""The named figures: a metric against learning rate, per-epoch curves, best LR against size."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lr_jax.report.markdown import format_lr
from lr_jax.report.panels import (Curve, _draw, _log_y, _pyplot, _truncated, figure_title,
                                  plot_panels, save_figure)


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
                           squeeze=False, layout="constrained")
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
    figure_title(fig, suptitle)
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
