"""lr_jax: vmapped learning-rate sweeps on small data sets, in one compiled program.

The public surface is here; modules hold the implementation:

    import lr_jax
    exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="adam"))
    result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-4, 1e-3, 1e-2), seeds=(0, 1)))
    print(lr_jax.format_table(result))
"""

from lr_jax.config import (DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig,
                           log_spaced)
from lr_jax.data import DATASETS, Dataset, Splits, load_dataset, make_splits
from lr_jax.engine import Grid, RunOptions, plan_sweep, run_sweep
from lr_jax.errors import ConfigError
from lr_jax.export import TrainedModel, load_model, refit, save_model
from lr_jax.finder import FinderResult, lr_finder, plot_finder
from lr_jax.models import MODELS, Model, build_model, from_linen, from_nnx
from lr_jax.optim import OPTIMIZERS, SCHEDULES, make_optimizer
from lr_jax.results import SweepResult, format_table, write_outputs
from lr_jax.train import Metric, make_trainer

__all__ = [
    "ConfigError", "DATASETS", "FinderResult", "lr_finder", "plot_finder", "DataConfig", "Dataset", "Experiment", "Grid", "MODELS", "Model",
    "ModelConfig", "OPTIMIZERS", "OptimConfig", "RunOptions", "SCHEDULES", "Splits", "SweepResult",
    "TrainConfig", "Metric", "build_model", "format_table", "from_linen", "from_nnx", "load_dataset",
    "log_spaced", "make_optimizer", "make_splits", "make_trainer", "plan_sweep", "run_sweep",
    "write_outputs", "TrainedModel", "load_model", "refit", "save_model",
]
