"""A trained model out of a sweep: refit the chosen configuration, test it once, save it.

    result = run_sweep(Experiment(data=DataConfig(test_fraction=0.2)), grid)
    model = refit(result)            # the selected point, retrained on every row the sweep saw
    model.estimate["line"]           # "validation 0.962 (...; best of 16 eligible points ...) vs test ..."
    save_model(model, "runs/model")  # params.msgpack + model.json
    load_model("runs/model").predict(x_raw)

The refit reuses the engine (`run_sweep` on the sweep's rows, a fixed number of epochs), so
there is one training loop. Parameters are saved with `flax.serialization` (msgpack): one small
file, bit-exact float32, read back without any async machinery; Orbax's checkpoint directories
solve sharded, asynchronous saving, which a model of a few thousand parameters does not need.

The package's modules, one idea each (each imports only those above it):

    folder   the model folder: `model_folder`, `write_model`, `save_model`, `load_model` (checked),
             `saved_model_name`; params.msgpack's plain form (`plain_params`, `params_like`)
    rows     `refit_rows`: the rows a refit trains on, in words, count, indices and hash
    gaps     `example_scores`/`scores` on rows, `honest_gaps`: selection-only gap, refit gain
    chosen   `refit` of the chosen configuration, `estimate_of` (validation vs test)
    nested   `nested_estimates`: nested cross-validation's outer folds refit and scored
    predict  `read_features` (a .csv or .npz a model predicts on), `predictions_csv`

This face re-exports the names the rest of the repository uses; the submodules never import it,
so a patch of `export.refit` reaches the callers that look it up here (`commands.lr_sweep`).
"""

from lr_jax.export.chosen import estimate_of, refit
from lr_jax.export.gaps import example_scores, honest_gaps, scores
from lr_jax.export.rows import refit_rows
from lr_jax.export.folder import (FORMAT, load_model, model_folder, saved_model_name,
                                   save_model, write_model)
from lr_jax.export.nested import nested_estimates
from lr_jax.export.predict import predictions_csv, read_features
from lr_jax.models.saved import read_params  # Where a pretrained start reads: below the engine.
from lr_jax.trained import TrainedModel
# Private, for `export_test`: the rows of the selected point (what the refit's epochs come from).
from lr_jax.export.chosen import _chosen_rows

__all__ = [
    "FORMAT", "TrainedModel", "read_params", "estimate_of", "example_scores", "honest_gaps", "load_model", "model_folder", "nested_estimates",
    "predictions_csv", "read_features", "refit", "refit_rows", "save_model", "saved_model_name",
    "scores",
    "write_model",
]
