"""The pure core: a whole population of training runs as one traced function.

`make_trainer(...)` closes over everything static (model, optimizer family, schedule shape,
batch size, what early stopping monitors) and returns two pure functions:

    params_S = stack of initial_params(model, seed) over the streams' seeds
    state = trainer.init(params_S, hparams_H, folds_S, data)
    state, history_ExSxH = trainer.run(state, hparams_SxH, seeds_S, folds_S, data, budget,
                                       num_epochs)

`init` starts every stream at the grid's points (`hparams_H`, leaves [H]); `run` continues any
population, each stream with its own points (leaves [S, H]: the engine regroups survivors
between calls, each stream's together).

The run's length (`Budget`: epochs, patience, a cap on steps) is traced, not closed over: runs
that differ only in their budget are one compiled program (for the same call length
`num_epochs`, static, and unless the schedule's shape depends on the run's length, `Schedule.horizon`:
then `make_trainer` closes over the experiment's epochs too).

A *stream* is a (seed, fold): it fixes the init and the minibatch order. A *point* is one set
of dynamic hyperparameters (learning rate, weight decay, ...). Every variant is a (stream,
point) pair; the state's leaves have leading axes `[S, H]`. Points of one stream share their
minibatches, so a stream's first-layer matmuls over all its points are one wide matmul.

Epochs are a `lax.scan` whose body is skipped with a real `lax.cond` once every variant has
stopped; minibatches are a `lax.scan` inside it. Early stopping, reduce-on-plateau, best-params
tracking and divergence are per-variant masks (`jnp.where`), never Python control flow. No host
I/O here.

The step of one variant (`train_step`) and its end of an epoch (`end_epoch`) are module-level
pure functions of a static `Rules`; `make_trainer` composes them, and the LR finder calls the
same `train_step`. A point's numbers are `{name: value}`; which names are present decides what
is traced: `dropout_rate` (the model's slice, `Model.apply`'s fifth argument), `label_smoothing`,
`input_noise`, `shift`, `rotate`, `crop`, `flip`, `label_noise`, and the `plateau_*` numbers. An
absent one has no code in the program, so a sweep without them compiles the program it always
did.

The package's modules, one idea each (each imports only those above it):

    state      the traced state and its types: `DataArrays`, `VariantState`, `Plateau`,
               `SweepState`, `History` (`history_type`), `Budget`, `final_params`
    objective  the loss and the metrics: `Loss`, `Metric`, `builtin_loss`, `example_losses`
    streams    a stream's keys and minibatches: `stream_keys`, `initial_params`, `batching`,
               `epoch_order`, `fetch`
    rules      the static `Rules` (`make_rules`), the model's slice of the numbers
    perturb    training-only perturbations: shifts, rotations, crops, flips, input noise,
               label noise, label smoothing
               (`training_losses`, `batch_extras`)
    step       `train_step`, `init_variant`, `eval_params`
    epoch      `end_epoch`: validation, early stopping (`no_improvement`), `plateau_update`
    trainer    `make_trainer` -> `Trainer(init, run)`

This face re-exports every public name; the submodules never import it.
"""

from lr_jax.train.epoch import end_epoch, no_improvement, plateau_update
from lr_jax.train.objective import (Loss, Metric, Metrics, builtin_loss, example_losses,
                                    weighted_mean)
from lr_jax.train.perturb import (Extras, augment, batch_extras, crop_by, crop_images,
                                  flip_images, label_flips, noisy_labels, rotate_by,
                                  rotate_images, shift_images, training_losses)
from lr_jax.spec import hparams_tree
from lr_jax.train.rules import Rules, make_rules
from lr_jax.train.state import (Budget, DataArrays, History, Hparams, Plateau, SweepState,
                                VariantState, final_params, history_type)
from lr_jax.train.step import eval_params, init_variant, train_step, tx_hparams
from lr_jax.train.streams import batching, epoch_order, fetch, initial_params, stream_keys
from lr_jax.train.trainer import Trainer, make_trainer

__all__ = [
    "Budget", "DataArrays", "Extras", "History", "Hparams", "Loss", "Metric", "Metrics",
    "Plateau", "Rules", "SweepState", "Trainer", "VariantState", "augment", "batch_extras",
    "batching", "builtin_loss", "crop_by", "crop_images", "end_epoch", "epoch_order",
    "eval_params", "example_losses", "fetch", "final_params", "flip_images", "hparams_tree",
    "history_type", "init_variant", "initial_params", "label_flips", "make_rules",
    "make_trainer", "no_improvement", "noisy_labels", "plateau_update", "rotate_by",
    "rotate_images", "shift_images", "stream_keys", "train_step", "training_losses",
    "tx_hparams", "weighted_mean",
]
