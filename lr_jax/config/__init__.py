"""Static configuration: frozen, hashable dataclasses, validated when built.

A leaf: it imports no registry, so every layer can import it lightly. What a config names in a
registry (a model, optimizer or schedule, the ranges of the numbers it defaults) is checked when
an experiment is planned (`lr_jax.hparams.check_experiment`), before anything loads or compiles.

Each distinct `Experiment` is a *compile group*. Most fields decide shapes or code; groups
that differ only in fields the program traces (the epochs, patience and step cap of
`train.Budget`, the defaults of dynamic numbers such as `OptimConfig.decay_rate`) share one
compiled program (`engine.programs._compile_key`). Numbers that only change values -- learning rate,
seed, fold, weight decay, momentum -- are swept as dynamic hyperparameters (`lr_jax.hparams`).

The package's modules, one idea each (each imports only those above it):

    checks      the checks of a value: `check_choice`, `check_distinct`, `check_positive`
                (`INT32_MAX`), `Interval`; `tuple_fields` (an application config's axes)
    fields      `check_fields`, `check_type`: every field's type checked and normalized;
                `DatasetLike`
    registry    `Registry`: an unknown name is one `ConfigError` line listing the valid ones
    applies     `APPLIES`: the fields only some values of another field read; `unused_fields`,
                `why_unused`
    data        `DataConfig`
    model       `ModelConfig`, `ACTIVATIONS`
    optim       `OptimConfig`
    train       `TrainConfig`, `MONITORS`
    experiment  `Experiment`: the four parts, `replace`
    grid        the learning-rate grid: `log_spaced`, `check_learning_rates`

This face re-exports the names the rest of the repository uses; the submodules never import it.
"""

from lr_jax.config.applies import (APPLIES, SYNTHETIC_DATASETS, Applies, Unused, unused_fields,
                                   why_unused)
from lr_jax.config.checks import (INT32_MAX, Interval, check_choice, check_distinct,
                                  check_positive, tuple_fields)
from lr_jax.config.data import DataConfig
from lr_jax.config.experiment import Experiment
from lr_jax.config.fields import DatasetLike, check_fields, check_type
# Private, for `cli.flags`: each field's annotation, as `check_fields` reads it.
from lr_jax.config.fields import _field_types
from lr_jax.config.grid import check_learning_rates, log_spaced
from lr_jax.config.model import ACTIVATIONS, ModelConfig
from lr_jax.config.optim import OptimConfig
from lr_jax.config.registry import Registry
from lr_jax.config.train import MONITORS, TrainConfig

__all__ = [
    "ACTIVATIONS", "APPLIES", "INT32_MAX", "MONITORS", "SYNTHETIC_DATASETS", "Applies",
    "DataConfig", "DatasetLike", "Experiment", "Interval", "ModelConfig", "OptimConfig",
    "Registry", "TrainConfig", "Unused", "check_choice", "check_distinct", "check_fields",
    "check_learning_rates", "check_positive", "check_type", "log_spaced", "tuple_fields",
    "unused_fields",
    "why_unused",
]
