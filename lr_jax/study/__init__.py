"""The small-data study: many compile groups, one table, a conclusion computed from it.

    plan = plan_study(StudyConfig())  # unions around a reference line; checked, not compiled
    print(cost_text(plan_cost(plan), machine_rate()))  # programs, TFLOP, estimated time
    study = run_study(plan)       # one compile group per (line, size, budget)
    write_study_report(study, "runs/study")
    print(study_conclusion(plan.config, study.rows).text())  # every claim from the table

The default design varies each factor the article names around one reference line (Adam,
MLP(128), constant schedule, trained to convergence) at every training size: the reference
line also runs exponential decay and a fixed-steps budget, and SGD and MLP(16) are one line
each (`study_lines`); `design="product"` runs every combination. A line's budgets at one size
differ only in traced numbers (`train.Budget`), so they are one compiled program. On the
reference line a label-noise arm (scored at the clean-validation best epoch and at the last
epoch) and a regularisation arm (dropout x weight decay, run as AdamW) are compile groups of
their own, traced axes inside them; at the smallest sizes a held-out test set scores the
winner beside its validation score. To convergence, a point with a run still improving at
the cap is unconverged, and no sentence rests on it (`decided`).

`run_groups` runs planned compile groups and logs "cell i/n, elapsed, ETA" across them (the
article's examples, `lr_jax.article`, use it too). The schedule axis of the study costs no
compilation: every cell uses the `exponential` schedule and sweeps its decay rate as a dynamic
hyperparameter, where rate 1.0 *is* the constant schedule. Everything that turns numbers into
sentences (`cell_row`, `conclusion`) is a pure function of plain arrays, tested on synthetic
tables.

The modules, each one idea (none imports this package face, so they form no cycle):

    config      StudyConfig: the axes, grid and budgets, checked when built
    plan        the lines (unions or product), sizes, folds, batches, budgets and grids per
                cell; plan_study; what it costs (plan_cost)
    run         run_groups (progress, ETA), run_study, StudyResult; the machine's rate
    rows        the table from a finished sweep: study_rows
    cells       one cell: CellRow, cell_row, small_lr_ok/needed, direction
    phrases     the words shared by the sentences, the table and the figures
    conclusion  the short answer and the findings per budget
    contrasts   findings of the factors against the reference line, of regularisation,
                label noise (both scores) and the test set
    table       the Markdown table
    figures     the figures per budget
    literature  the findings beside published ones, each stance computed from the table
    report      the report folder: write_study_report

This face re-exports the names the rest of the repository uses.
"""
from lr_jax.study.cells import (cell_row, decided, index_of, reference_line, small_lr_needed,
                                small_lr_ok)
from lr_jax.study.conclusion import conclusion
from lr_jax.study.config import StudyConfig
from lr_jax.study.figures import ci_band
from lr_jax.study.phrases import format_ratio
from lr_jax.study.plan import (STEPS_PER_CALL, Cell, PlanCost, StudyRate, epochs_per_call,
                               keras_batch, plan_cost, plan_study, study_lines)
from lr_jax.study.report import study_conclusion, write_study_report
from lr_jax.study.rows import study_rows
from lr_jax.study.run import (REFERENCE_RATE, cost_text, estimate_remaining, format_duration,
                              machine_rate, matmul_flops, run_groups, run_study, study_options)
from lr_jax.study.table import study_table

__all__ = [
    "REFERENCE_RATE", "STEPS_PER_CALL", "Cell", "PlanCost", "StudyConfig", "StudyRate",
    "cell_row", "ci_band", "conclusion", "cost_text", "decided", "epochs_per_call", "estimate_remaining",
    "format_duration", "format_ratio", "index_of", "keras_batch", "machine_rate",
    "matmul_flops", "plan_cost", "plan_study", "reference_line", "run_groups", "run_study", "small_lr_needed",
    "small_lr_ok", "study_conclusion", "study_lines", "study_options", "study_rows",
    "study_table",
    "write_study_report",
]
