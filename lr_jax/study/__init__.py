"""The small-data study: many compile groups, one table, a conclusion computed from it.

    plan = plan_study(StudyConfig(train_sizes=(25, 100, None), optimizers=("sgd", "adam")))
    study = run_study(plan)       # one compile group per (optimizer, width, size, budget)
    write_study_report(study, "runs/study")
    print(conclusion(study.rows).text())    # every claim computed from the table

Every cell runs under three budgets (`cells.BUDGETS`): the same epochs at every size, the same
optimizer steps at every size, and to convergence (early stopping, a generous step cap), so
the answer can be told apart from the budget; a cell's budgets differ only in traced
numbers (`train.Budget`), so they are one compiled program. Beside the learning rate, one
line (Adam at the largest width, run as AdamW) tunes dropout and weight decay, and the small
sizes sweep label noise — both traced axes of the same compile groups, so they add runs,
not programs; at the smallest sizes a held-out test set scores the winner beside its
validation score.

`run_groups` runs planned compile groups and logs "cell i/n, elapsed, ETA" across them (the
article's examples, `lr_jax.article`, use it too). The schedule axis of the study costs no
compilation: every cell uses the `exponential` schedule and sweeps its decay rate as a dynamic
hyperparameter, where rate 1.0 *is* the constant schedule. Everything that turns numbers into
sentences (`cell_row`, `conclusion`) is a pure function of plain arrays, tested on synthetic
tables.

The modules, each one idea (none imports this package face, so they form no cycle):

    config      StudyConfig: the axes, grid and budgets, checked when built
    plan        sizes, folds, batches, budgets and grids per cell; plan_study
    run         run_groups (progress, ETA), run_study, StudyResult
    rows        the table from a finished sweep: study_rows
    cells       one cell: CellRow, cell_row, small_lr_ok/needed, direction
    phrases     the words shared by the sentences, the table and the figures
    conclusion  the short answer and the findings per budget
    contrasts   findings of regularisation, label noise and the test set
    table       the Markdown table
    figures     the figures per budget
    report      the report folder: write_study_report

This face re-exports the names the rest of the repository uses.
"""
from lr_jax.study.cells import cell_row, index_of, small_lr_needed, small_lr_ok
from lr_jax.study.conclusion import conclusion
from lr_jax.study.config import StudyConfig
from lr_jax.study.figures import ci_band
from lr_jax.study.phrases import format_ratio
from lr_jax.study.plan import STEPS_PER_CALL, Cell, epochs_per_call, keras_batch, plan_study
from lr_jax.study.report import write_study_report
from lr_jax.study.rows import study_rows
from lr_jax.study.run import (estimate_remaining, format_duration, run_groups, run_study,
                              study_options)
from lr_jax.study.table import study_table

__all__ = [
    "STEPS_PER_CALL", "Cell", "StudyConfig", "cell_row", "ci_band", "conclusion",
    "epochs_per_call", "estimate_remaining", "format_duration", "format_ratio", "index_of",
    "keras_batch", "plan_study", "run_groups", "run_study", "small_lr_needed", "small_lr_ok",
    "study_options", "study_rows", "study_table", "write_study_report",
]
