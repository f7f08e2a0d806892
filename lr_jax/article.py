"""The article's three Keras configurations, each swept around its own learning rate.

    plan = plan_examples(ExamplesConfig(dataset="digits", seeds=5))
    sweeps, wall_s = run_examples(plan)          # one compile group per configuration
    write_examples_report(plan, sweeps, wall_s, "runs/seed_examples")

Each configuration (A, B, C of `ARTICLE_CONFIGS`) runs at the article's learning rate and as a
sweep from 1/span to span times it, over several seeds; the report ranks the article's choice
against the best learning rate with 95% intervals and a paired difference by seed. The
sentences (`compare_to_reference`, `comparison_sentence`) are pure functions of plain arrays,
tested on synthetic inputs. Groups run through `study.run_groups` (progress and ETA).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lr_jax import report
from lr_jax.config import (DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig,
                           check_choice, check_positive, log_spaced)
from lr_jax.errors import ConfigError
from lr_jax.study import (ci_band, format_duration, format_ratio, index_of, keras_batch,
                          run_groups)

if TYPE_CHECKING:  # The engine imports JAX: only the functions that run anything import it.
  from lr_jax.engine import Grid, Group
  from lr_jax.results import SweepResult


@dataclasses.dataclass(frozen=True)
class ArticleConfig:
  """One of the article's three Keras configurations.

  Attributes:
    name: "A", "B" or "C".
    description: the configuration as the article writes it.
    width: hidden width of Dense(width, relu) -> Dense(10).
    optimizer: optimizer family.
    learning_rate: the article's learning rate (peak of the schedule for C).
    epochs: the article's epochs.
    patience: EarlyStopping patience on the validation loss; 0 = none.
    schedule: "constant" or "exponential" (Keras ExponentialDecay).
    decay_steps: ExponentialDecay's decay_steps.
    decay_rate: ExponentialDecay's decay_rate.
  """

  name: str
  description: str
  width: int
  optimizer: str
  learning_rate: float
  epochs: int
  patience: int = 0
  schedule: str = "constant"
  decay_steps: int = 1000
  decay_rate: float = 0.9


ARTICLE_CONFIGS: dict[str, ArticleConfig] = {
    "A": ArticleConfig("A", "Dense(128, relu) -> Dense(10), Adam, lr 1e-4, 100 epochs",
                       128, "adam", 1e-4, 100),
    "B": ArticleConfig("B", "Dense(64, relu) -> Dense(10), RMSprop, lr 1e-3, 50 epochs, "
                       "EarlyStopping(patience=5)", 64, "rmsprop", 1e-3, 50, patience=5),
    "C": ArticleConfig("C", "Dense(128, relu) -> Dense(10), Adam with ExponentialDecay(1e-3, "
                       "decay_steps=1000, decay_rate=0.9), 50 epochs", 128, "adam", 1e-3, 50,
                       schedule="exponential"),
}


@dataclasses.dataclass(frozen=True)
class ExamplesConfig:
  """The article's configurations, each swept around its own learning rate.

  Attributes:
    configs: which of the article's configurations A, B and C (`ARTICLE_CONFIGS`).
    dataset: a classification data set.
    train_size: training examples (None = the whole pool; holdout validation).
    seeds: training seeds.
    num_lrs: grid points from lr/span to lr*span, log-spaced; odd, so the article's rate is
      the middle point.
    span: the grid's factor either side of the article's rate.
    max_epochs: cap on every configuration's epochs (None = the article's), for quick runs.
    batch_size: Keras' default 32.
    data_seed: seed of the split.
  """

  configs: tuple[str, ...] = ("A", "B", "C")
  dataset: str = "digits"
  train_size: int | None = None
  seeds: int = 5
  num_lrs: int = 13
  span: float = 100.0
  max_epochs: int | None = None
  batch_size: int = 32
  data_seed: int = 0

  def __post_init__(self):
    # "a" is configuration "A", as the article and the report name it.
    configs = tuple(str(c).strip().upper() for c in self.configs)
    if not configs:
      raise ConfigError("configs is empty; valid choices: " + ", ".join(ARTICLE_CONFIGS))
    for c in configs:
      check_choice("configuration", c, ARTICLE_CONFIGS)
    object.__setattr__(self, "configs", tuple(dict.fromkeys(configs)))
    check_positive("seeds", self.seeds, integer=True)
    check_positive("num_lrs", self.num_lrs, integer=True)
    if self.num_lrs % 2 == 0:
      raise ConfigError(f"num_lrs must be odd so that the article's learning rate is the middle "
                        f"grid point, got {self.num_lrs}; valid: e.g. {self.num_lrs + 1}")
    check_positive("span", self.span)
    if self.span <= 1:
      raise ConfigError(f"span must be > 1, got {self.span!r}")
    if self.max_epochs is not None:
      check_positive("max_epochs", self.max_epochs, integer=True)

  @classmethod
  def quick(cls, **changes) -> "ExamplesConfig":
    """A small version: 400 training examples, 3 seeds, 7 learning rates, at most 30 epochs."""
    base = dict(train_size=400, seeds=3, num_lrs=7, max_epochs=30)
    base.update(changes)
    return cls(**base)


def article_lrs(lr: float, num: int, span: float) -> tuple[float, ...]:
  """`num` (odd) learning rates log-spaced from lr/span to lr*span, the middle exactly `lr`."""
  lrs = list(log_spaced(lr / span, lr * span, num))
  lrs[num // 2] = lr  # Exactly the article's value, not lr * (1 + 1e-16).
  return tuple(lrs)


def article_experiment(cfg: ExamplesConfig, article: ArticleConfig, train_examples: int
                       ) -> Experiment:
  """The `Experiment` of one article configuration on `cfg`'s data.

  Args:
    cfg: the examples' settings.
    article: the configuration.
    train_examples: the size of the training set (for Keras' batch on tiny data).
  """
  epochs = min(article.epochs, cfg.max_epochs or article.epochs)
  return Experiment(
      data=DataConfig(dataset=cfg.dataset, train_size=cfg.train_size, data_seed=cfg.data_seed),
      model=ModelConfig(name="mlp", hidden=(article.width,)),
      optim=OptimConfig(name=article.optimizer, schedule=article.schedule,
                        decay_steps=article.decay_steps, decay_rate=article.decay_rate),
      train=TrainConfig(epochs=epochs,
                        batch_size=keras_batch(cfg.batch_size, train_examples, train_examples),
                        patience=article.patience, monitor="val_loss"))


@dataclasses.dataclass(frozen=True)
class ExamplesPlan:
  """Checked article examples: one compile group and one grid per configuration."""

  config: ExamplesConfig
  articles: tuple[ArticleConfig, ...]
  groups: tuple[Group, ...]
  grids: tuple[Grid, ...]


def plan_examples(cfg: ExamplesConfig) -> ExamplesPlan:
  """Checks the examples against the data and plans their compile groups (nothing compiles).

  Raises:
    ConfigError: on bad input.
  """
  from lr_jax import data as data_lib
  from lr_jax import engine
  dataset = data_lib.load_dataset(DataConfig(dataset=cfg.dataset))
  if dataset.task != "classification":
    raise ConfigError(
        f"the article's models are classifiers, and {cfg.dataset!r} is a regression data set; "
        "valid choices: a classification data set, e.g. digits, iris, wine, breast_cancer")
  splits = data_lib.make_splits(dataset, DataConfig(
      dataset=cfg.dataset, train_size=cfg.train_size, data_seed=cfg.data_seed))
  train_examples = int(splits.train_sizes[0])
  articles, groups, grids = [], [], []
  for name in cfg.configs:
    article = ARTICLE_CONFIGS[name]
    grid = engine.Grid(learning_rates=article_lrs(article.learning_rate, cfg.num_lrs, cfg.span),
                       seeds=tuple(range(cfg.seeds)))
    groups += engine.plan_sweep(article_experiment(cfg, article, train_examples), grid)
    articles.append(article)
    grids.append(grid)
  return ExamplesPlan(cfg, tuple(articles), tuple(groups), tuple(grids))


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The article's learning rate against the rest of its sweep.

  Attributes:
    lrs: [P] learning rates, increasing.
    mean: [P] mean best validation accuracy over the seeds that did not diverge.
    ci95: [P] 95% half-widths.
    final_mean: [P] mean validation accuracy at the last epoch trained (what Keras leaves
      without restore_best_weights).
    diverged: [P] diverged runs.
    rank: the reference LR's rank by mean accuracy among the eligible points (1 = best; 0 =
      not eligible: a run diverged there).
    num_eligible: points where no run diverged (all of them if every point had a divergence).
    best_lr, best_mean, best_ci: the best point (no divergence).
    ref_lr, ref_mean, ref_ci: the reference point.
    diff_mean, diff_ci: best minus reference, paired by seed (same init and batches).
    runs: runs per point.
    score_words: what a run's score is, in words ("" for plain arrays: the best accuracy).
    covers: what the intervals cover ("" for plain arrays: the runs).
    paired_by: what the difference pairs by ("" for plain arrays: the seed).
  """

  lrs: tuple[float, ...]
  mean: tuple[float, ...]
  ci95: tuple[float, ...]
  final_mean: tuple[float, ...]
  diverged: tuple[int, ...]
  rank: int
  num_eligible: int
  best_lr: float
  best_mean: float
  best_ci: float
  ref_lr: float
  ref_mean: float
  ref_ci: float
  diff_mean: float
  diff_ci: float
  runs: int
  score_words: str = ""
  covers: str = ""
  paired_by: str = ""


def _last_finite(curve_VxE: np.ndarray) -> np.ndarray:
  finite = np.isfinite(curve_VxE)
  last = np.where(finite.any(axis=1), curve_VxE.shape[1] - 1 - finite[:, ::-1].argmax(axis=1), 0)
  return np.where(finite.any(axis=1), curve_VxE[np.arange(len(curve_VxE)), last], np.nan)


def compare_to_reference(lr_V: np.ndarray, stream_V: np.ndarray, score_V: np.ndarray,
                         final_V: np.ndarray, diverged_V: np.ndarray,
                         reference_lr: float) -> Comparison:
  """Ranks a reference learning rate in a sweep and compares it with the best, paired by stream.

  Args:
    lr_V: [V] learning rate of each run.
    stream_V: [V] stream id (seed, or seed x fold) pairing runs across learning rates.
    score_V: [V] best validation accuracy.
    final_V: [V] validation accuracy at the last epoch trained.
    diverged_V: [V] bool.
    reference_lr: must be one of the learning rates.

  Returns:
    The `Comparison`.
  """
  from lr_jax.results import mean_ci
  score_V = np.where(diverged_V, np.nan, score_V)  # A diverged run's best is no result.
  lrs = sorted({float(x) for x in lr_V})
  stats = []
  for lr in lrs:
    sel = np.isclose(lr_V, lr, rtol=1e-9)
    stats.append((mean_ci(score_V[sel]), mean_ci(final_V[sel])[0], int(diverged_V[sel].sum()),
                  int(sel.sum())))
  mean = np.array([s[0][0] for s in stats])
  diverged = np.array([s[2] for s in stats])
  r = index_of(lrs, reference_lr)
  if r is None:
    raise ConfigError(f"reference learning rate {reference_lr:g} is not in the sweep")
  eligible = np.isfinite(mean) & (diverged == 0)
  if not eligible.any():
    eligible = np.isfinite(mean)
  best = int(np.flatnonzero(eligible)[np.argmax(mean[eligible])]) if eligible.any() else r
  # Ranked among the eligible points (as the best is chosen); ties share the better rank.
  rank = (1 + int(np.sum(eligible & (mean > mean[r]))) if eligible[r] else 0)

  def by_stream(lr):
    sel = np.isclose(lr_V, lr, rtol=1e-9)
    return dict(zip(stream_V[sel].tolist(), score_V[sel].tolist()))

  a, b = by_stream(lrs[best]), by_stream(lrs[r])
  diffs = np.array([a[s] - b[s] for s in a if s in b])
  diff_mean, _, diff_ci = mean_ci(diffs)
  return Comparison(
      lrs=tuple(lrs), mean=tuple(map(float, mean)), ci95=tuple(float(s[0][2]) for s in stats),
      final_mean=tuple(float(s[1]) for s in stats), diverged=tuple(map(int, diverged)),
      rank=rank, num_eligible=int(eligible.sum()), best_lr=lrs[best], best_mean=float(mean[best]),
      best_ci=float(stats[best][0][2]), ref_lr=lrs[r], ref_mean=float(mean[r]),
      ref_ci=float(stats[r][0][2]), diff_mean=diff_mean, diff_ci=diff_ci,
      runs=max(s[3] for s in stats))


def compare_sweep(sweep: SweepResult, reference_lr: float) -> Comparison:
  """`compare_to_reference` on a one-group `SweepResult`, with the sweep's own statistics.

  The ranking is `compare_to_reference`'s, on the sweep's score; each point's mean and
  interval are the sweep's aggregates' and the best-minus-reference difference is
  `stats.paired` on its design (seeds, folds and validation rows): the same statistics as the
  sweep's table, with no code of their own.
  """
  from lr_jax import stats
  from lr_jax.results import score_column
  from lr_jax.results.aggregates import point_runs
  rows = sweep.rows
  entries = [a for a in sweep.aggregates if a.group == 0]
  score = entries[0].score if entries else "best_epoch"
  column = np.asarray(rows[score_column("val_accuracy", score)], np.float64)
  stream = rows["seed"].astype(np.int64) * 10_000 + rows["fold"].astype(np.int64)
  c = compare_to_reference(
      rows["learning_rate"], stream, column, _last_finite(sweep.history["val_accuracy"]),
      rows["diverged"].astype(bool), reference_lr)
  by_lr = {a.learning_rate: a for a in entries}
  if not all(lr in by_lr for lr in c.lrs):
    return c
  outcomes = sweep.outcomes.get(score) if sweep.outcomes else None

  def runs(lr):
    idx = np.flatnonzero(np.isclose(rows["learning_rate"], lr, rtol=1e-9))
    idx = idx[np.lexsort((rows["fold"][idx], rows["seed"][idx]))]
    return point_runs(rows, idx, column[idx], outcomes, True)

  d = stats.paired(runs(c.best_lr), runs(c.ref_lr))
  diff_ci = (stats.t_quantile_975(d.df) * d.se if math.isfinite(d.se) and d.se > 0 else
             math.nan)
  from lr_jax.results.table import SCORE_WORDS
  best = by_lr[c.best_lr]
  return dataclasses.replace(
      c, score_words=f"validation accuracy {SCORE_WORDS.get(score, score)}",
      covers=best.covers, paired_by=("seed and validation row" if best.n_rows else "seed"),
      mean=tuple(by_lr[lr].mean for lr in c.lrs), ci95=tuple(by_lr[lr].ci95 for lr in c.lrs),
      best_mean=by_lr[c.best_lr].mean, best_ci=by_lr[c.best_lr].ci95,
      ref_mean=by_lr[c.ref_lr].mean, ref_ci=by_lr[c.ref_lr].ci95, diff_mean=d.mean,
      diff_ci=diff_ci)


def mean_curves(sweep: SweepResult, metric: str = "val_loss") -> tuple[np.ndarray, np.ndarray]:
  """Per-epoch mean over seeds of each learning rate's curve.

  Args:
    sweep: a `SweepResult`.
    metric: a history key.

  Returns:
    lrs [L] (increasing) and curves [L, E]: the mean over the runs still training at that
    epoch (NaN once every run of the LR has stopped).
  """
  lrs = np.array(sorted({float(x) for x in sweep.rows["learning_rate"]}))
  hist = sweep.history[metric]
  curves = np.full((len(lrs), hist.shape[1]), np.nan)
  for i, lr in enumerate(lrs):
    sel = np.isclose(sweep.rows["learning_rate"], lr, rtol=1e-9)
    block = hist[sel]
    counts = np.isfinite(block).sum(axis=0)
    sums = np.where(np.isfinite(block), block, 0.0).sum(axis=0)
    curves[i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
  return lrs, curves


def comparison_sentence(article: ArticleConfig, c: Comparison, tolerance: float = 0.01) -> str:
  """What the sweep says about the article's learning rate, every number from `c`.

  Args:
    article: the configuration.
    c: its sweep's comparison.
    tolerance: accuracy within which a learning rate counts as near the best.
  """
  ref = report.format_lr(c.ref_lr)
  excluded = len(c.lrs) - c.num_eligible
  standing = (f"ranks {c.rank} of {c.num_eligible} learning rates" if c.rank else
              f"is not ranked (a run diverged there) among {len(c.lrs)} learning rates")
  if excluded and c.rank:
    standing += (" (1 more excluded: a run diverged there)" if excluded == 1 else
                 f" ({excluded} more excluded: runs diverged at each)")
  text = (f"Configuration {article.name} ({article.optimizer}, MLP({article.width}), "
          f"{article.schedule}): the article's lr={ref} {standing}, mean "
          f"{c.score_words or 'best validation accuracy'} "
          f"{report.format_ci(c.ref_mean, c.ref_ci)} (95% CI over {c.covers or f'{c.runs} runs'})")
  near = [lr for lr, m, d in zip(c.lrs, c.mean, c.diverged)
          if math.isfinite(m) and m >= c.best_mean - tolerance and (d == 0 or not c.rank)]
  pt = f"{tolerance:g}"
  within = (f" The learning rates within {pt} of the best run from "
            f"{report.format_lr(min(near))} to {report.format_lr(max(near))} ({len(near)} of "
            f"{len(c.lrs)}); the article's is {'' if c.ref_lr in near else 'not '}among them."
            if near else "")
  if math.isclose(c.best_lr, c.ref_lr, rel_tol=1e-9):
    return text + "; it is the best learning rate of the sweep." + within
  edge = ""
  if math.isclose(c.best_lr, c.lrs[-1]) or math.isclose(c.best_lr, c.lrs[0]):
    end = "top" if math.isclose(c.best_lr, c.lrs[-1]) else "bottom"
    edge = f"; the {end} of the sweep: the optimum may lie beyond it"
  text += (f"; the best is lr={report.format_lr(c.best_lr)} "
           f"({format_ratio(c.best_lr / c.ref_lr)}{edge}) at "
           f"{report.format_ci(c.best_mean, c.best_ci)}. Paired by {c.paired_by or 'seed'}, the "
           f"best beats the article's by {report.format_ci(c.diff_mean, c.diff_ci)}")
  if math.isfinite(c.diff_ci):
    text += (", significant at 95%." if c.diff_mean - c.diff_ci > 0 else
             ", not significant at 95%.")
  else:
    text += "."
  return text + within


def examples_table(c: Comparison) -> str:
  """One configuration's sweep as a Markdown table, the article's rate and the best marked."""
  body = []
  mean = np.nan_to_num(np.array(c.mean), nan=-np.inf)
  eligible = np.array(c.diverged) == 0
  if c.num_eligible == len(c.lrs):  # Every point diverged somewhere: all are ranked.
    eligible = np.ones(len(mean), bool)
  ranks = [1 + int(np.sum(eligible & (mean > m))) if ok else "–" for m, ok in zip(mean, eligible)]
  for i, lr in enumerate(c.lrs):
    mark = []
    if math.isclose(lr, c.ref_lr, rel_tol=1e-9):
      mark.append("article")
    if math.isclose(lr, c.best_lr, rel_tol=1e-9):
      mark.append("best")
    body.append([report.format_lr(lr) + (f" ({', '.join(mark)})" if mark else ""),
                 report.format_ci(c.mean[i], c.ci95[i]), ranks[i],
                 report.format_ci(c.final_mean[i], math.nan), f"{c.diverged[i]}/{c.runs}"])
  return report.markdown_table(
      ["learning rate", "best val accuracy ± 95% CI", "rank", "last-epoch val accuracy",
       "diverged"], body)


def run_examples(plan: ExamplesPlan) -> tuple[list[SweepResult], float]:
  """Runs the planned configurations; returns one `SweepResult` per configuration, wall time."""
  from lr_jax.results import SweepResult
  outputs, wall = run_groups(plan.groups)
  sweeps = [SweepResult.from_groups([g], [o], grid=grid)
            for g, o, grid in zip(plan.groups, outputs, plan.grids)]
  return sweeps, wall


def write_examples_report(plan: ExamplesPlan, sweeps: Sequence[SweepResult], wall_s: float,
                          out_dir: str, *,
                          extra: Sequence[tuple[str, str]] = ()) -> str:
  """Writes each configuration's files (in out_dir/<name>/), the figures and report.md.

  Returns:
    The path of report.md.
  """
  from lr_jax.outputs import write_outputs
  cfg = plan.config
  comparisons, curves, sens, refs = [], {}, {}, {}
  for article, sweep in zip(plan.articles, sweeps):
    write_outputs(sweep, os.path.join(out_dir, article.name))
    c = compare_sweep(sweep, article.learning_rate)
    comparisons.append(c)
    title = f"{article.name}: {article.optimizer}, MLP({article.width}), {article.schedule}"
    lrs, loss = mean_curves(sweep, "val_loss")
    curves[title] = (lrs, loss, article.learning_rate)
    sens[title] = [
        report.Curve("best epoch (95% CI)", np.array(c.lrs), np.array(c.mean),
                     *ci_band(c.mean, c.ci95)),
        report.Curve("last epoch", np.array(c.lrs), np.array(c.final_mean))]
    refs[title] = article.learning_rate
  report.plot_curves(os.path.join(out_dir, "loss_curves.png"), curves, logy=True,
                     suptitle="validation loss per epoch, mean over seeds, one line per "
                              "learning rate")
  report.plot_lr_sensitivity(
      os.path.join(out_dir, "sensitivity.png"), sens, reference_lr=refs, ncols=3,
      ylabel="mean validation accuracy", legend_title="accuracy at the",
      suptitle="validation accuracy vs learning rate, mean over seeds (dotted: the article's)")

  dataset = plan.groups[0].dataset
  sections = [("Answer", "\n\n".join(comparison_sentence(a, c)
                                     for a, c in zip(plan.articles, comparisons))
               + "\n\n" + report.image("sensitivity.png", "accuracy vs learning rate"))]
  for article, c, group, sweep in zip(plan.articles, comparisons, plan.groups, sweeps):
    exp = group.experiment
    n_max = group.splits.train_idx.shape[1]
    steps_per_epoch = math.ceil(n_max / (exp.train.batch_size or n_max))
    lines = [f"*{article.description}*; here trained on {int(group.splits.train_sizes.max())} "
             f"examples of `{dataset.name}` for up to {exp.train.epochs} epochs of "
             f"{steps_per_epoch} steps (batch {exp.train.batch_size or 'full'}), validated on "
             f"{int(group.splits.val_sizes.max())} held-out examples, {cfg.seeds} seeds."]
    if article.schedule == "exponential":
      total = steps_per_epoch * exp.train.epochs
      lines.append(f"ExponentialDecay with decay_steps={article.decay_steps} over {total} steps "
                   f"ends at {article.decay_rate ** (total / article.decay_steps):.3g}x the "
                   "initial rate.")
    if article.patience:
      lines.append(f"Early stopping on the validation loss, patience {article.patience}: runs "
                   f"lasted {float(np.mean(sweep.rows['epochs_run'])):.1f} epochs on average. "
                   "(The article's `fit` is given no validation data, so its EarlyStopping, "
                   "which monitors `val_loss`, would never fire there.)")
    sections.append((f"Configuration {article.name}", " ".join(lines) + "\n\n" + examples_table(c)))
  sections.append(("Loss curves", report.image("loss_curves.png", "validation loss curves") +
                   "\n\nMean over seeds of the runs still training at each epoch; a line ends "
                   "when every seed of its learning rate has stopped early or diverged."))
  sections.append(("Run", f"Wall time {format_duration(wall_s)} ({wall_s:.0f} s) on {os.cpu_count()} "
                          f"CPU cores, {len(plan.groups)} compile groups, "
                          f"{sum(s.num_variants for s in sweeps)} training runs. Per-run "
                          "results: `<configuration>/results.csv`, `history.npz`, "
                          "`summary.json`.\n\n"
                          "Score: each run's best validation accuracy, at the epoch of its "
                          "lowest validation loss; the last-epoch accuracy is what a Keras run "
                          "without `restore_best_weights` ends with."))
  sections += list(extra)
  return report.write_report(out_dir, "The article's three configurations, swept", sections)
