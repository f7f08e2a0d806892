"""Test-wide settings: strict rank promotion catches silent broadcasting.

Dtype promotion stays "standard": optax's `inject_hyperparams` state mixes an int32 step count
with float32 hyperparameters inside optax itself, which "strict" refuses.
"""

import os

# One CPU device here; multi-device behaviour is tested in subprocesses (the XLA flag must be
# set before JAX starts).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
