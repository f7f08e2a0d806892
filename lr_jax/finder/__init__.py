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

The package's modules, one idea each (each imports only those above it):

    ramp         `finder_learning_rates`, `finder_optim`: each step's learning rate, the optimizer
    program      `FinderTrace`, `make_finder`: the pure range test; `_compiled`, once per signature
    suggestions  the rules read off a smoothed curve: `suggest_steepest`, `suggest_min_div_10`,
                 `SUGGESTIONS`, `suggest` (per seed and on the mean curve)
    result       `FinderResult`: the curves, the suggestions, the settings and timings
    run          `check_finder_args`, `lr_finder`: the arguments checked, the program run
    check        the check sweep: `check_grid` (its learning rates), `compare_with_sweep`
    figure       `plot_finder`: the PNG
    markdown     `finder_markdown`: the report, with the check sweep's tables
    files        `write_finder_outputs`: finder.png, finder.json and report.md, each atomically

This face re-exports the names the rest of the repository uses; the submodules never import it,
so a patch of `finder.lr_finder` reaches the callers that look it up here (`commands.lr_finder`).
A patch of what `_compiled` builds goes where it looks the name up: `finder.program.make_finder`.
"""

from lr_jax.finder.ramp import finder_learning_rates, finder_optim
from lr_jax.finder.program import FinderTrace, make_finder
from lr_jax.finder.suggestions import (SKIP_END, SKIP_START_FRACTION, SUGGESTIONS, suggest,
                                       suggest_min_div_10, suggest_steepest)
from lr_jax.finder.result import FinderResult
from lr_jax.finder.run import MIN_STEPS, check_finder_args, lr_finder
from lr_jax.finder.check import check_grid, compare_with_sweep
from lr_jax.finder.figure import plot_finder
from lr_jax.finder.markdown import finder_markdown
from lr_jax.finder.files import write_finder_outputs
# Private, for `finder_test` and `library_safety_test`: the compiled programs' cache.
from lr_jax.finder.program import _compiled

__all__ = [
    "MIN_STEPS", "SKIP_END", "SKIP_START_FRACTION", "SUGGESTIONS", "FinderResult", "FinderTrace",
    "check_finder_args", "check_grid", "compare_with_sweep", "finder_learning_rates",
    "finder_markdown", "finder_optim", "lr_finder", "make_finder", "plot_finder", "suggest",
    "suggest_min_div_10", "suggest_steepest", "write_finder_outputs",
]
