"""Results: one row per variant, per-epoch histories, aggregates over seeds and folds, files.

A `SweepResult` is plain numpy on the host: `rows` (column -> [V]), `history`
(metric -> [V, E], NaN after a variant stopped), and `aggregates` (one row per compile group
and grid point, over its seeds and folds). It keeps each group's plan (splits, standardization
statistics, class names), so a variant's parameters can be applied to raw features:
`result.predict(row, x)`.

The package's modules, one idea each:

    result      `SweepResult`: rows, histories, parameters, plans; `from_groups`, `predict`
    aggregates  `Aggregate`: each grid point over seeds and folds, P(best), the selection
    nested      nested cross-validation's records and one outer fold's selection
    subsets     `subset_selection`: P(best) and the not-worse set among some of a group's points
    files       `results.csv`, `history.npz`, `summary.json`
    table       the text table (`format_table`)
"""

from lr_jax.results.aggregates import (DEFAULT_SCORE, SCORES, Aggregate, aggregate, best_points,
                                      mean_ci, score_column, subset_aggregates)
from lr_jax.results.files import results_csv, summary_dict, write_files
from lr_jax.results.nested import NestedEstimate, OuterFold, outer_selection
from lr_jax.results.result import SweepResult, first_reaching, sweep_config
from lr_jax.results.subsets import subset_selection
from lr_jax.results.table import (format_interval, format_score, format_table, group_title,
                                 point_notes)

__all__ = [
    "DEFAULT_SCORE", "SCORES", "Aggregate", "NestedEstimate", "OuterFold", "SweepResult", "aggregate", "best_points",
    "first_reaching", "format_interval", "format_score", "format_table", "group_title", "mean_ci",
    "outer_selection", "point_notes", "results_csv", "summary_dict", "sweep_config",
    "score_column", "subset_aggregates", "subset_selection", "write_files",
]
