"""The learning-rate range test ("LR finder"), one run per seed, all seeds in one program.

    result = lr_finder(Experiment(optim=OptimConfig(name="adam")), seeds=(0, 1, 2))
    result.suggestions["steepest"]["mean"]     # an LR read off the mean smoothed curve
    plot_finder(result, "finder.png")

Each seed trains once while the learning rate grows exponentially every minibatch step, from
`lr_min` at step 0 to `lr_max` at step K-1, recording the minibatch loss (Smith 2015, "Cyclical
learning rates for training neural networks", section 3.3; fastai's `lr_find`). The loss is
smoothed with a bias-corrected exponential moving average (beta 0.98, as fastai); a seed stops
counting once its smoothed loss exceeds 4x its minimum so far, or is not finite.

The pure core (`make_finder`) is a `lax.scan` over steps; the host wrapper (`lr_finder`)
vmaps it over seeds and jits it. The growing learning rate is the library's own optimizer:
the experiment's family (and clipping) with the `exponential` schedule, decay rate > 1 per
step, so the finder shares `lr_jax.optim` with the trainer. The seed contract is the
trainer's: seed s initialises the model as the trainer's seed s does and sees the minibatches
of the trainer's first epochs, in the same order.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lr_jax import engine
from lr_jax.config import Experiment, OptimConfig, check_positive, log_spaced
from lr_jax.data import config_dict
from lr_jax.errors import ConfigError
from lr_jax.models import Model, build_model
from lr_jax import hparams as hparams_lib
from lr_jax import optim as optim_lib
from lr_jax.optim import make_optimizer
from lr_jax.io import atomic_write, jsonable
from lr_jax.results import SweepResult, mean_ci
from lr_jax import train as train_lib
from lr_jax.train import DataArrays
from lr_jax.trained import num_outputs

# fastai's `lr_find` drops the first tenth of the steps (the moving average is still
# warming up and the learning rate does nothing yet) and the last five before the stop.
SKIP_START_FRACTION = 0.1
SKIP_END = 5
MIN_STEPS = 10


class FinderTrace(NamedTuple):
  """One seed's range test; from the vmapped program each leaf is [S, K].

  Attributes:
    loss: [K] minibatch loss at step k, before step k's update (which uses learning rate k);
      NaN after the step that stopped the run.
    smoothed: [K] bias-corrected moving average of `loss`; NaN from the stopping step on.
  """

  loss: jax.Array
  smoothed: jax.Array


def finder_learning_rates(lr_min: float, lr_max: float, num_steps: int) -> np.ndarray:
  """[K] float64: the learning rate of each step, `lr_min * (lr_max / lr_min) ** (k / (K-1))`."""
  return lr_min * (lr_max / lr_min) ** (np.arange(num_steps) / (num_steps - 1))


def finder_optim(optim: OptimConfig) -> OptimConfig:
  """The optimizer the range test runs: the same family and clipping, the exponential schedule.

  The experiment's own schedule is not used: the range test looks for the peak learning rate
  of a schedule, and its ramp replaces the schedule. Every other field is reset, so that two
  experiments differing only in their schedule share one compiled finder.
  """
  return OptimConfig(name=optim.name, schedule="exponential", decay_steps=1,
                     clip_norm=optim.clip_norm)


def make_finder(experiment: Experiment, model: Model, *, task: str, n_max: int, num_steps: int,
                beta: float = 0.98, stop_factor: float = 4.0,
                feature_shape: tuple[int, ...] | None = None,
                namespaces: Mapping[str, str] | None = None
                ) -> Callable[[Mapping[str, jax.Array], jax.Array, DataArrays], FinderTrace]:
  """Builds the pure range test of one static configuration.

  Each step is the trainer's `train.train_step` (the same loss, regularisation, augmentation
  and health check: a non-finite loss or gradient stops a seed), under the trainer's rules with
  the finder's optimizer; the range test's own rule (the smoothed loss above `stop_factor`
  times its minimum) stops a seed too.

  Args:
    experiment: the static configuration; its optimizer family, clipping and batch size are
      used (see `finder_optim`), epochs and early stopping are not.
    model: the model as pure `init`/`apply` functions.
    task: "classification" (softmax cross-entropy) or "regression" (squared error), as the
      trainer.
    n_max: the padded number of training examples (`Splits.train_idx.shape[1]`).
    num_steps: K, the number of steps (and learning rates).
    beta: the moving average's decay.
    stop_factor: a seed stops once its smoothed loss exceeds this multiple of its minimum.
    feature_shape: one example's shape, for random shifts (as `make_trainer`'s).
    namespaces: `{name: namespace}` of the numbers in `hparams` (as `make_trainer`'s).

  Returns:
    `find(hparams, seed, data) -> FinderTrace`: `hparams` holds scalar `lr_min`, `lr_max`
    and the variant's other numbers (momentum, weight decay, dropout rate, ...); `seed` is an
    int32 scalar; `data` the data set and its splits, of which fold 0's training rows are
    used. Vmap it over seeds.
  """
  rules = train_lib.make_rules(
      experiment, model, task=task, n_max=n_max, feature_shape=feature_shape,
      namespaces=namespaces, make_tx=make_optimizer(finder_optim(experiment.optim), num_steps))
  # The ramp replaces the schedule (no plateau) and runs its K steps (no step cap).
  rules = rules._replace(plateau=False)
  batch, steps_per_epoch = rules.batch, rules.steps_per_epoch
  num_epochs = math.ceil(num_steps / steps_per_epoch)

  def epoch_batches(order_key, epoch, idx_N, mask_N):
    return train_lib.epoch_order(order_key, epoch, idx_N, mask_N, batch, steps_per_epoch)

  def find(hparams: Mapping[str, jax.Array], seed: jax.Array, data: DataArrays) -> FinderTrace:
    init_key, order_key, dropout_key = train_lib.stream_keys(seed)
    lr_min = jnp.asarray(hparams["lr_min"], jnp.float32)
    lr_max = jnp.asarray(hparams["lr_max"], jnp.float32)
    # The exponential schedule is lr * decay_rate ** step: a rate > 1 makes it the ramp.
    opt_hparams = {k: v for k, v in hparams.items() if k not in ("lr_min", "lr_max")}
    opt_hparams.update(learning_rate=lr_min,
                       decay_rate=jnp.exp(jnp.log(lr_max / lr_min) / (num_steps - 1)))
    # No divergence reference (an infinite initial loss): the range test's own stop rule
    # below decides when a rising loss ends a seed; the step still stops it at a non-finite one.
    v = train_lib.init_variant(rules, opt_hparams, rules.flat.to_flat(model.init(init_key)),
                               jnp.float32(jnp.inf))
    flips = (train_lib.label_flips(seed, data.x.shape[0]) if "label_noise" in opt_hparams
             else None)

    idx_N, mask_N = data.train_idx[0], data.train_mask[0]
    idx_ExMxB, w_ExMxB = jax.vmap(epoch_batches, in_axes=(None, 0, None, None))(
        order_key, jnp.arange(num_epochs), idx_N, mask_N)
    idx_KxB = idx_ExMxB.reshape(num_epochs * steps_per_epoch, batch)[:num_steps]
    w_KxB = w_ExMxB.reshape(num_epochs * steps_per_epoch, batch)[:num_steps]

    def step(carry, inputs):
      v, avg, best = carry
      idx_B, w_B, k = inputs
      x_BxD, y_B = train_lib.fetch(data, 0, idx_B)
      extras = train_lib.batch_extras(opt_hparams, data, 0, idx_B, flips)
      alive = ~v.stopped & ~v.diverged
      v, (loss_sum, _, weight) = train_lib.train_step(
          rules, v, opt_hparams, x_BxD, y_B, w_B, jax.random.fold_in(dropout_key, k), extras,
          max_steps=0)
      nan = jnp.float32(jnp.nan)
      # The step's loss, before its update; NaN where the step stopped the seed (non-finite).
      loss = jnp.where(weight > 0, loss_sum / jnp.maximum(weight, 1.0), nan)
      avg = beta * avg + (1.0 - beta) * loss
      smoothed = avg / (1.0 - jnp.power(beta, (k + 1).astype(jnp.float32)))
      best = jnp.minimum(best, smoothed)  # fastai updates the minimum before the check.
      keep = alive & ~v.diverged & jnp.isfinite(smoothed) & (smoothed <= stop_factor * best)
      # A stopped seed is frozen (`train_step` skips it): its later steps are masked out.
      v = v._replace(stopped=v.stopped | ~keep)
      out = FinderTrace(loss=jnp.where(alive, loss, nan), smoothed=jnp.where(keep, smoothed, nan))
      return (v, avg, best), out

    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    carry = (v, f32(0.0), f32(jnp.inf))
    _, trace = jax.lax.scan(step, carry, (idx_KxB, w_KxB, jnp.arange(num_steps, dtype=jnp.int32)))
    return trace

  return find


# ----------------------------------------------------------------------------- suggestions


def _window(smoothed_K: np.ndarray, skip_start: int, skip_end: int) -> np.ndarray:
  """Indices of the kept steps a rule reads: the first stretch of finite values, trimmed."""
  finite = np.isfinite(smoothed_K)
  stop = int(np.argmin(finite)) if not finite.all() else len(smoothed_K)
  return np.arange(skip_start, max(skip_start, stop - skip_end))


def suggest_steepest(lrs_K: np.ndarray, smoothed_K: np.ndarray, *, skip_start: int,
                     skip_end: int = SKIP_END) -> float:
  """The LR where the smoothed loss falls fastest against log LR; NaN with under 3 points.

  Central differences (`np.gradient`, as fastai v1) of the smoothed loss over log LR.
  """
  w = _window(smoothed_K, skip_start, skip_end)
  if len(w) < 3:
    return math.nan
  slope = np.gradient(smoothed_K[w], np.log(lrs_K[w]))
  return float(lrs_K[w][np.argmin(slope)])


def suggest_min_div_10(lrs_K: np.ndarray, smoothed_K: np.ndarray, *, skip_start: int,
                       skip_end: int = SKIP_END) -> float:
  """A tenth of the LR at the minimum smoothed loss (fastai's `minimum`); NaN with no point."""
  w = _window(smoothed_K, skip_start, skip_end)
  if len(w) < 1:
    return math.nan
  return float(lrs_K[w][np.argmin(smoothed_K[w])] / 10.0)


# name -> rule(lrs_K, smoothed_K, skip_start=, skip_end=) -> learning rate.
SUGGESTIONS: dict[str, Callable[..., float]] = {
    "steepest": suggest_steepest, "min_div_10": suggest_min_div_10}


def suggest(lrs_K: np.ndarray, smoothed_SxK: np.ndarray) -> dict[str, dict]:
  """Every rule of `SUGGESTIONS` on each seed's curve and on the mean curve.

  Args:
    lrs_K: [K] learning rates.
    smoothed_SxK: [S, K] smoothed losses, NaN after each seed stopped.

  Returns:
    rule -> {"mean": LR on the mean curve (NaN from the first seed's stop on),
    "per_seed": [S] LRs}.
  """
  skip_start = int(SKIP_START_FRACTION * len(lrs_K))
  mean_K = smoothed_SxK.mean(axis=0)
  return {name: {"mean": rule(lrs_K, mean_K, skip_start=skip_start),
                 "per_seed": [rule(lrs_K, s, skip_start=skip_start) for s in smoothed_SxK]}
          for name, rule in SUGGESTIONS.items()}


# ----------------------------------------------------------------------------- host


@dataclasses.dataclass
class FinderResult:
  """The outcome of a range test.

  Attributes:
    lrs: [K] learning rate of each step.
    losses: [S, K] raw minibatch losses, NaN after a seed stopped.
    smoothed: [S, K] smoothed losses, NaN from the step a seed stopped (diverged) on.
    seeds: [S] the seeds.
    suggestions: rule -> {"mean": LR on the mean curve, "per_seed": [S] LRs}.
    config: JSON-ready experiment and finder settings.
    timings: `compile_run_s`, the seconds of the one compiled call.
  """

  lrs: np.ndarray
  losses: np.ndarray
  smoothed: np.ndarray
  seeds: tuple[int, ...]
  suggestions: dict[str, dict]
  config: dict
  timings: dict

  @property
  def mean_smoothed(self) -> np.ndarray:
    """[K] the mean smoothed loss over seeds, NaN from the first seed's stop on."""
    return self.smoothed.mean(axis=0)

  @property
  def steps_kept(self) -> np.ndarray:
    """[S] int: steps before each seed stopped (K if it never did)."""
    return np.isfinite(self.smoothed).sum(axis=1)

  def to_dict(self) -> dict:
    """JSON-ready: settings, suggestions, and the curves (NaN as null)."""
    return jsonable({
        "config": self.config, "seeds": list(self.seeds), "suggestions": self.suggestions,
        "steps_kept": self.steps_kept.tolist(), "timings": self.timings,
        "lrs": self.lrs.tolist(), "losses": self.losses.tolist(),
        "smoothed": self.smoothed.tolist()})


def check_finder_args(lr_min: float, lr_max: float, num_steps: int, beta: float, *,
                      names: Sequence[str] = ("lr_min", "lr_max", "num_steps", "beta")) -> None:
  """Raises `ConfigError` for a bad range, step count or smoothing.

  Args:
    lr_min, lr_max, num_steps, beta: as `lr_finder`'s.
    names: how the message names the four values (a script passes its flag names).
  """
  n_min, n_max, n_steps, n_beta = names
  check_positive(n_min, lr_min)
  check_positive(n_max, lr_max)
  if lr_min >= lr_max:
    raise ConfigError(f"{n_min} must be < {n_max}, got {n_min}={lr_min!r} {n_max}={lr_max!r}")
  check_positive(n_steps, num_steps, integer=True)
  if num_steps < MIN_STEPS:
    raise ConfigError(f"{n_steps} must be >= {MIN_STEPS} (the suggestions skip the first "
                      f"tenth and the last {SKIP_END} steps), got {num_steps!r}")
  if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
    raise ConfigError(f"{n_beta} must be in [0, 1), got {beta!r}")


@functools.lru_cache(maxsize=16)
def _compiled(key: tuple, model: Model | None):
  """The jitted, seed-vmapped finder of a static signature, built once per process."""
  (model_cfg, optim, batch_size, task, num_outputs, feature_shape, n_max, num_steps, beta,
   namespaces) = key
  if model is None:
    model = build_model(model_cfg, num_outputs, feature_shape)
  exp = Experiment(model=model_cfg, optim=optim).replace(train__batch_size=batch_size)
  find = make_finder(exp, model, task=task, n_max=n_max, num_steps=num_steps, beta=beta,
                     feature_shape=feature_shape, namespaces=dict(namespaces))
  return jax.jit(jax.vmap(find, in_axes=(None, 0, None)), compiler_options=engine.compiler_options())


optim_lib.on_reregister(_compiled.cache_clear)


def lr_finder(experiment: Experiment, *, lr_min: float = 1e-7, lr_max: float = 10.0,
              num_steps: int = 200, seeds: Sequence[int] = (0, 1, 2), beta: float = 0.98,
              model: Model | None = None,
              hparams: Mapping[str, float] | None = None) -> FinderResult:
  """Runs the LR range test: one run per seed, all seeds in one compiled program.

  Args:
    experiment: data, model, optimizer family and batch size (see `finder_optim`; epochs and
      early stopping are not used). Fold 0's training rows are trained on.
    lr_min: the learning rate of the first step.
    lr_max: the learning rate of the last step.
    num_steps: K, minibatch steps (one learning rate each); at batch size B on N training
      examples they cover K * B / N epochs.
    seeds: training seeds; seed s starts from the trainer's initial parameters of seed s.
    beta: the decay of the loss's moving average.
    model: a user model (`lr_jax.models.from_linen` / `from_nnx`) instead of the experiment's.
    hparams: the experiment's other numbers (`lr_jax.hparams.axes`), short or qualified, e.g.
      `{"momentum": 0.95, "model.dropout_rate": 0.2}`: one value each, as a sweep's variant;
      unset ones take the experiment's defaults. Not the learning rate (the ramp) nor a
      schedule's numbers (the ramp replaces the schedule).

  Returns:
    A `FinderResult` with the curves and the suggested learning rates.

  Raises:
    ConfigError: on bad input, before anything is compiled.
  """
  check_finder_args(lr_min, lr_max, num_steps, beta)
  hparams = dict(hparams or {})
  catalog = hparams_lib.catalog()
  for name in hparams:  # The rest is checked by the planner, as a sweep's grid.
    axis = catalog.get(name.rpartition(".")[2]) if isinstance(name, str) else None
    if axis is not None and (axis.name == "learning_rate" or axis.namespace == "schedule"):
      raise ConfigError(
          f"the LR finder takes no {axis.namespace}.{axis.name}: its ramp sets the learning "
          "rate and replaces the schedule; valid choices: the experiment's optimizer, loss, "
          "model and data numbers")
  grid = engine.Grid(learning_rates=(lr_min,), seeds=tuple(seeds),
                     hparams=tuple((k, (v,)) for k, v in hparams.items()))
  # The planner makes every check the sweep makes (batch size, model against data, unknown
  # hyperparameters) and loads the data through the sweep's cache.
  group = engine.plan_sweep(experiment, grid, model)[0]
  dataset, splits = group.dataset, group.splits
  outputs = num_outputs(dataset.task, dataset.num_classes)
  # Every number the points trace (an off one is not there), but the ramp's and the schedule's.
  axes = hparams_lib.axes(experiment, task=dataset.task, feature_shape=dataset.feature_shape,
                          model=model)
  extras = {k: np.float32(v[0]) for k, v in group.points.items()
            if k != "learning_rate" and axes[k].namespace != "schedule"}
  key = (experiment.model, finder_optim(experiment.optim), experiment.train.batch_size,
         dataset.task, outputs, dataset.feature_shape, splits.train_idx.shape[1],
         num_steps, float(beta), tuple((k, axes[k].namespace) for k in extras))
  run = _compiled(key, model)
  find_hparams = {"lr_min": np.float32(lr_min), "lr_max": np.float32(lr_max), **extras}
  data = DataArrays.of(dataset, splits, slice(0, 1))  # Fold 0's training rows.
  logging.info("LR finder: %s on %s, %d seeds x %d steps, lr %.3g -> %.3g",
               experiment.optim.name, dataset.name, len(grid.seeds), num_steps, lr_min, lr_max)
  t0 = time.perf_counter()
  trace = jax.device_get(run(find_hparams, np.asarray(grid.seeds, np.int32), data))
  elapsed = time.perf_counter() - t0
  lrs = finder_learning_rates(lr_min, lr_max, num_steps)
  smoothed = np.asarray(trace.smoothed, np.float64)
  result = FinderResult(
      lrs=lrs, losses=np.asarray(trace.loss, np.float64), smoothed=smoothed, seeds=grid.seeds,
      suggestions=suggest(lrs, smoothed),
      config={"experiment": jsonable(config_dict(experiment)),
              "model": model.name if model is not None else experiment.model.name,
              "lr_min": lr_min, "lr_max": lr_max, "num_steps": num_steps, "beta": beta,
              "hparams": {k: float(v) for k, v in extras.items()},
              "train_size": int(splits.train_sizes[0])},
      timings={"compile_run_s": elapsed})
  logging.info("LR finder: done in %.1fs; steps kept per seed %s; steepest %.3g, min/10 %.3g",
               elapsed, result.steps_kept.tolist(), result.suggestions["steepest"]["mean"],
               result.suggestions["min_div_10"]["mean"])
  return result


# ----------------------------------------------------------------------------- the check


def check_grid(result: FinderResult, *, num: int = 9,
               span: float = 30.0) -> tuple[float, ...] | None:
  """Learning rates for a real sweep that checks the suggestions.

  `num` log-spaced learning rates from `span`x below the smallest mean-curve suggestion to
  `span`x above the largest.

  Returns:
    The grid, or None when no rule gave a suggestion (every seed stopped too early).
  """
  check_positive("check_num_lrs", num, integer=True)
  check_positive("check_span", span)
  if span <= 1:
    raise ConfigError(f"check_span must be > 1, got {span!r}")
  found = [s["mean"] for s in result.suggestions.values() if math.isfinite(s["mean"])]
  if not found:
    return None
  return log_spaced(min(found) / span, max(found) * span, num)


def compare_with_sweep(result: FinderResult, sweep: SweepResult) -> list[dict]:
  """Where each mean-curve suggestion lands in a real sweep (its first compile group).

  For each rule: the suggestion, the sweep's best learning rate (`SweepResult.best`, which
  excludes points where a run diverged) and their ratio; the grid learning rate nearest the
  suggestion (in log distance) with its mean validation metric and 95% CI over seeds and
  folds; the same for the best; and the gap nearest - best, paired by (seed, fold) -- both
  start from the same weights and see the same minibatches -- with its 95% CI.

  Returns:
    One dict per rule of `SUGGESTIONS`.
  """
  rows = sweep.rows
  in_group = rows["group"] == 0
  best = sweep.best[0]
  metric = "best_val_accuracy" if best.get("higher_is_better", True) else "best_val_loss"
  lrs = np.unique(rows["learning_rate"][in_group])

  def scores(lr):
    sel = in_group & np.isclose(rows["learning_rate"], lr, rtol=1e-6)
    order = np.lexsort((rows["fold"][sel], rows["seed"][sel]))
    # A diverged run has no score: its pre-divergence best would flatter its learning rate.
    score = np.where(rows["diverged"][sel], np.nan, rows[metric][sel])
    return score[order], int(rows["diverged"][sel].sum())

  out = []
  best_lr = float(best.get("learning_rate", math.nan))
  for rule, suggestion in result.suggestions.items():
    lr = suggestion["mean"]
    entry = {"rule": rule, "suggestion": lr, "sweep_best_lr": best_lr,
             "metric": metric.removeprefix("best_"), "ratio_to_best": lr / best_lr}
    if math.isfinite(lr) and math.isfinite(best_lr):
      nearest = float(lrs[np.argmin(np.abs(np.log(lrs) - math.log(lr)))])
      near_v, near_div = scores(nearest)
      best_v, _ = scores(best_lr)
      entry.update(nearest_lr=nearest, nearest_diverged=near_div,
                   grid_steps_from_best=int(np.flatnonzero(lrs == nearest)[0]
                                            - np.flatnonzero(np.isclose(lrs, best_lr))[0]))
      entry.update(zip(("nearest_mean", "nearest_std", "nearest_ci95"), mean_ci(near_v)))
      entry.update(zip(("best_mean", "best_std", "best_ci95"), mean_ci(best_v)))
      entry.update(zip(("gap_mean", "gap_std", "gap_ci95"), mean_ci(near_v - best_v)))
    out.append(entry)
  return out


# ----------------------------------------------------------------------------- figures, report


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


def _model_name(config: dict) -> str:
  """"mlp (128,)", "linear", "user": the widths only where the model has them."""
  name = config["model"]
  hidden = tuple(config["experiment"]["model"]["hidden"])
  return f"{name} {hidden}" if name in ("mlp", "cnn") else name


def _lr(x: float) -> str:
  return f"{x:.3g}" if math.isfinite(x) else "n/a"


def _ci(mean: float, ci: float) -> str:
  if not math.isfinite(mean):
    return "n/a"
  return f"{mean:.4f} ± {ci:.4f}" if math.isfinite(ci) else f"{mean:.4f}"


def finder_markdown(result: FinderResult, *, figure: str = "finder.png",
                    comparison: Sequence[dict] | None = None,
                    sweep: SweepResult | None = None) -> str:
  """The Markdown report: the figure, the suggestions, and (if given) the check sweep."""
  cfg, exp = result.config, result.config["experiment"]
  seeds = ", ".join(map(str, result.seeds))
  lines = [
      f"# LR range test: {exp['optim']['name']} on {exp['data']['dataset']}", "",
      f"![LR range test]({figure})", "",
      f"Model {_model_name(cfg)}, {cfg['train_size']} training "
      f"examples, batch size {exp['train']['batch_size'] or 'full'}; the learning rate grew "
      f"exponentially from {cfg['lr_min']:.3g} to {cfg['lr_max']:.3g} over "
      f"{cfg['num_steps']} steps; seeds {seeds}. Loss smoothed with a bias-corrected moving "
      f"average (beta {cfg['beta']}); a seed stops at 4x its minimum smoothed loss "
      f"(steps kept: {', '.join(map(str, result.steps_kept.tolist()))}).", "",
      "## Suggestions", "",
      "| rule | mean curve | " + " | ".join(f"seed {s}" for s in result.seeds) + " |",
      "| --- | ---: | " + " | ".join("---:" for _ in result.seeds) + " |"]
  for rule, s in result.suggestions.items():
    lines.append(f"| {rule} | {_lr(s['mean'])} | "
                 + " | ".join(_lr(x) for x in s["per_seed"]) + " |")
  lines += ["", "steepest: where the smoothed loss falls fastest against log LR. min_div_10: a "
            "tenth of the LR at the smoothed loss's minimum. Both read the mean curve, "
            "skipping the first tenth of the steps and the last 5 before the stop (fastai).", ""]
  if comparison is not None and sweep is not None:
    sexp = sweep.config["experiments"][0]
    grid = sweep.config["grid"]
    metric = comparison[0]["metric"]
    best = sweep.best[0]
    lines += [
        "## Check: a real sweep", "",
        f"{len(grid['learning_rates'])} learning rates from {min(grid['learning_rates']):.3g} to "
        f"{max(grid['learning_rates']):.3g}, seeds {', '.join(map(str, grid['seeds']))}, up to "
        f"{sexp['train']['epochs']} epochs ({sexp['optim']['schedule']} schedule, patience "
        f"{sexp['train']['patience']}). " + (
            f"Best learning rate: {best['reason']}." if "reason" in best else
            f"Best learning rate {_lr(best.get('learning_rate', math.nan))}: {metric} "
            f"{_ci(best.get('mean', math.nan), best.get('ci95', math.nan))} (mean ± 95% CI)."),
        "",
        f"| rule | suggestion | suggestion / best LR | nearest grid LR | {metric} there | "
        f"{metric} at best LR | gap to best, paired |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in comparison:
      if "nearest_lr" not in c:
        lines.append(f"| {c['rule']} | {_lr(c['suggestion'])} | n/a | n/a | n/a | n/a | n/a |")
        continue
      div = f" ({c['nearest_diverged']} diverged)" if c["nearest_diverged"] else ""
      gap = ("0 (it is the best)" if c["nearest_lr"] == c["sweep_best_lr"]
             else _ci(c["gap_mean"], c["gap_ci95"]))
      lines.append(
          f"| {c['rule']} | {_lr(c['suggestion'])} | {c['ratio_to_best']:.2f} | "
          f"{_lr(c['nearest_lr'])} | {_ci(c['nearest_mean'], c['nearest_ci95'])}{div} | "
          f"{_ci(c['best_mean'], c['best_ci95'])} | {gap} |")
    lines += ["", f"Per learning rate ({metric}, mean ± 95% CI over seeds):", "",
              f"| learning rate | {metric} | diverged | |", "| ---: | ---: | ---: | --- |"]
    marks = {}
    for c in comparison:
      if "nearest_lr" in c:
        marks.setdefault(c["nearest_lr"], []).append(f"nearest {c['rule']}")
    for a in (a for a in sweep.aggregates if a["group"] == 0):
      note = (["best"] if a is best else []) + marks.get(a["learning_rate"], [])
      lines.append(f"| {a['learning_rate']:.3g} | {_ci(a['mean'], a['ci95'])} | "
                   f"{a['diverged']}/{a['n_total']} | {', '.join(note)} |")
    lines.append("")
  return "\n".join(lines)


def write_finder_outputs(result: FinderResult, out_dir: str, *, sweep: SweepResult | None = None,
                         comparison: Sequence[dict] | None = None) -> list[str]:
  """Writes `finder.png`, `finder.json` and `report.md` into `out_dir`, each atomically.

  `finder.json` holds `FinderResult.to_dict()` and, under "check", the comparison with the
  check sweep, its best point, grid and timings (null without a sweep).

  Returns:
    The paths written.
  """
  paths = [os.path.join(out_dir, name) for name in ("finder.png", "finder.json", "report.md")]
  plot_finder(result, paths[0])
  summary = result.to_dict()
  summary["check"] = None if sweep is None else jsonable(
      {"comparison": list(comparison or ()), "best": sweep.best[0], "grid": sweep.config["grid"],
       "timings": sweep.timings})
  atomic_write(paths[1], (json.dumps(summary, indent=2) + "\n").encode())
  report = finder_markdown(result, figure=os.path.basename(paths[0]), comparison=comparison,
                           sweep=sweep)
  atomic_write(paths[2], report.encode())
  return paths
