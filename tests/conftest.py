"""Test-wide settings: strict rank promotion catches silent broadcasting.

Dtype promotion stays "standard": optax's `inject_hyperparams` state mixes an int32 step count
with float32 hyperparameters inside optax itself, which "strict" refuses.
"""

import os

# One CPU device here; multi-device behaviour is tested in subprocesses (the XLA flag must be
# set before JAX starts).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from lr_jax import cli  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# One persistent compilation cache for the whole run (`$JAX_COMPILATION_CACHE_DIR`, else the
# checkout's .jax_cache, which the scripts' subprocesses use too): the two xdist workers and the
# subprocess tests compile each program once, not once each. Run time only; no result changes.
cli.enable_compilation_cache(os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache"))
