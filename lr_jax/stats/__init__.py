"""Statistics of a sweep: intervals, paired comparisons, P(best), selection rules, ties.

Plain numpy and scipy on the host, over small tables. A grid point's runs are laid out by the
design of the experiment (`Runs`): one score per (seed, fold), and, for the task's built-in
score, each validation row's outcome (correct or not; its loss for regression). Three sources
of variation make a point's mean score uncertain, and every number here counts each:

- **seeds**: another seed draws other initial weights, minibatch orders and dropout;
- **validation rows**: the score is a mean over a finite sample of rows: another sample from
  the same source would score differently (a holdout of 360 rows alone makes an accuracy of
  0.98 uncertain by +-0.015);
- **folds**: the seeds of one fold share its training and validation rows, so they are not
  independent replications of the whole design.

The method (`estimate`, `paired`): the variance of the mean score is the seed part -- the
variance of the per-seed mean (over folds) divided by the number of seeds -- plus the row part
-- for each fold, the variance over its validation rows of the row's outcome averaged over
seeds, divided by the fold's rows, summed over folds and divided by folds squared -- with
Satterthwaite's degrees of freedom for the Student-t quantile. Given the models trained, the
rows are independent draws, so the row part is the validation set's sampling error of the
score of *these* models (one pooled over all folds' rows, which k-fold validates once each);
the seed part adds what another seed would change. Both add up to a slight overcount (the
seed x row interaction is in both), which errs wide. Two points are compared on the same
seeds and rows: the same variance of their row-by-row differences, which is far smaller than
either point's own when the two models agree on most rows. P(best) is a two-way bootstrap:
seeds and each fold's rows resampled together for every point. A proportion's rows take
one pseudo-row right and one wrong in their variance (`PSEUDO_ROWS`, after Agresti and Coull),
so a point that gets every row right still has an interval; a row that several folds validate
(nested CV) counts with its covariance; every interval is clipped
to the metric's range. `benchmarks/coverage.py` measures how often the intervals contain the
accuracy on untouched rows (benchmarks/BENCHMARKS.md, "Coverage").

Without per-row outcomes (a user metric that is not a mean over rows, such as AUC, or a
selection by another metric than the task's), the unit of replication is the fold: seeds are
averaged within each fold and the interval and tests run over the fold means (over the seeds
with a single holdout, which then covers seed variation only, and says so in `Estimate.covers`).

The package's modules, one idea each (each imports only those above it):

    basics     Student-t quantiles (scipy), `summarize` of a plain sample
    selection  the selection rules `best` and `one_se` (`select_index`)
    design     `Runs`, the variance parts, `estimate`, `paired`: the one paired comparison
    comparison ties (`resolution`, `tied_best`), `compare`: P(best) and the not-worse set
"""

from lr_jax.stats.basics import Summary, summarize, t_quantile, t_quantile_975
from lr_jax.stats.comparison import (ALPHA, NUM_RESAMPLES, RESAMPLE_SEED, Comparison, compare,
                                      resolution, streams_runs, tied_best)
from lr_jax.stats.design import (PSEUDO_ROWS, Difference, Estimate, Runs, combine, estimate,
                                     half_width, paired, row_variance, seed_variance)
from lr_jax.stats.selection import (DEFAULT_SELECT, SELECT_RULES, best_index, best_mean_text,
                                        check_select, rule_mark, rule_text, select_index)

__all__ = [
    "ALPHA", "DEFAULT_SELECT", "NUM_RESAMPLES", "PSEUDO_ROWS", "RESAMPLE_SEED", "SELECT_RULES",
    "Comparison", "Difference", "Estimate", "Runs", "Summary", "best_index", "best_mean_text",
    "check_select", "combine", "compare", "estimate", "half_width", "paired", "resolution",
    "row_variance", "rule_mark", "rule_text", "seed_variance", "select_index", "streams_runs",
    "summarize", "t_quantile", "t_quantile_975", "tied_best",
]
