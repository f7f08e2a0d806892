"""`plot_finder`: the range test's figure, a PNG."""

from __future__ import annotations

import io
import math

import numpy as np

from lr_jax.io import atomic_write
from lr_jax.finder.result import FinderResult, _model_name


def plot_finder(result: FinderResult, path: str) -> str:
  """Draws the range test and writes it as a PNG.

  The smoothed loss against the learning rate (log x), per seed and their mean, with the mean
  curve's suggestions (and the minimum min_div_10 is a tenth of) marked.

  Returns:
    `path`.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
  for seed, curve in zip(result.seeds, result.smoothed):
    ax.plot(result.lrs, curve, lw=1.0, alpha=0.6, label=f"seed {seed}")
  mean = result.mean_smoothed
  ax.plot(result.lrs, mean, color="black", lw=2.0, label="mean over seeds")
  styles = {"steepest": ("tab:red", "v"), "min_div_10": ("tab:green", "o")}
  for rule, s in result.suggestions.items():
    lr = s["mean"]
    if not math.isfinite(lr):
      continue
    color, marker = styles.get(rule, ("tab:purple", "s"))
    ax.axvline(lr, color=color, ls="--", lw=1.0)
    y = np.interp(math.log(lr), np.log(result.lrs[np.isfinite(mean)]), mean[np.isfinite(mean)])
    ax.plot([lr], [y], marker=marker, color=color, ms=8, ls="none",
            label=f"{rule}: {lr:.2g}")
    if rule == "min_div_10":  # Also the minimum it is a tenth of.
      y_min = np.interp(math.log(10 * lr), np.log(result.lrs[np.isfinite(mean)]),
                        mean[np.isfinite(mean)])
      ax.plot([10 * lr], [y_min], marker=marker, mfc="none", color=color, ms=10, ls="none",
              label=f"minimum: {10 * lr:.2g}")
  finite = result.smoothed[np.isfinite(result.smoothed)]
  if finite.size:
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
  ax.set_xscale("log")
  ax.set_xlabel("learning rate (grows every step)")
  ax.set_ylabel(f"training loss, smoothed (beta={result.config['beta']})")
  exp = result.config["experiment"]
  ax.set_title(f"LR range test: {exp['optim']['name']}, {_model_name(result.config)} on "
               f"{exp['data']['dataset']}, {result.config['num_steps']} steps", fontsize=10)
  ax.grid(True, which="major", alpha=0.3)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  plt.close(fig)
  atomic_write(path, buf.getvalue())
  return path
