"""The fine-tuning experiment: is a small learning rate necessary when fine-tuning on very
small data, and is it different from training from scratch?

    result = run_fine_tune(FineTuneConfig.quick())
    write_fine_tune_report(result, "runs/fine_tune")

A CNN is pretrained on some digits and fine-tuned on the others at a few training sizes, each
arm (from scratch, linear probe, discriminative, full fine-tuning) a full learning-rate sweep
with seeds, compared by the sweep's own statistics (`lr_jax.stats`).

The package's modules, one idea each (each imports only those above it):

    config   `FineTuneConfig`, `ARMS`: tasks, sizes, arms, grid and budget, checked when built
    rows     `ArmRow`, `arm_rows`: one arm's sweep at one size, its best and not-worse set
    run      `run_fine_tune`: the pretraining, then every size's two sweeps (`FineTuneResult`)
    report   `answer`, `table_markdown`, `plot_arms`, `write_fine_tune_report`
"""

from lr_jax.transfer.config import ARMS, FineTuneConfig
from lr_jax.transfer.report import answer, write_fine_tune_report
from lr_jax.transfer.rows import ArmRow, arm_rows
from lr_jax.transfer.run import FineTuneResult, run_fine_tune

__all__ = ["ARMS", "ArmRow", "FineTuneConfig", "FineTuneResult", "answer", "arm_rows",
           "run_fine_tune", "write_fine_tune_report"]
