"""lr_jax: vmapped learning-rate sweeps on small data sets, in one compiled program.

The public surface is here; modules hold the implementation:

    import lr_jax
    exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="adam"))
    result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-4, 1e-3, 1e-2), seeds=(0, 1)))
    print(lr_jax.format_table(result))

Each name is imported from its module on first use, so `import lr_jax.config` (a script's flags)
loads no JAX.
"""

import importlib

_PUBLIC = {
    "lr_jax.api": ("run_sweep",),
    "lr_jax.config": ("DataConfig", "Experiment", "ModelConfig", "OptimConfig", "TrainConfig",
                      "log_spaced"),
    "lr_jax.data": ("DATASETS", "Dataset", "Splits", "load_dataset", "make_splits"),
    "lr_jax.engine": ("Grid", "RunOptions", "plan_sweep"),
    "lr_jax.errors": ("ConfigError",),
    "lr_jax.export": ("TrainedModel", "load_model", "refit", "save_model"),
    "lr_jax.finder": ("FinderResult", "lr_finder", "plot_finder"),
    "lr_jax.models": ("MODELS", "Model", "build_model", "from_linen", "from_nnx", "pretrained",
                      "read_params"),
    "lr_jax.optim": ("OPTIMIZERS", "SCHEDULES", "make_optimizer"),
    "lr_jax.outputs": ("write_outputs",),
    "lr_jax.results": ("SweepResult", "format_table"),
    "lr_jax.train": ("Metric", "make_trainer"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
  if name not in _HOME:  # A module (`lr_jax.optim.register_optimizer`), as an eager import gave.
    try:
      return importlib.import_module(f"lr_jax.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"lr_jax.{name}":
        raise
      raise AttributeError(f"module 'lr_jax' has no attribute {name!r}") from None
  value = getattr(importlib.import_module(_HOME[name]), name)
  globals()[name] = value  # Once: later lookups skip this function.
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
