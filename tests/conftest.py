"""Test-wide settings: strict rank promotion catches silent broadcasting, and XLA compiles fast.

Dtype promotion stays "standard": optax's `inject_hyperparams` state mixes an int32 step count
with float32 hyperparameters inside optax itself, which "strict" refuses.
"""

import os

# One CPU device here; multi-device behaviour is tested in subprocesses (the XLA flag must be
# set before JAX starts).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The suite's time is compilation (docs/architecture.md). XLA's CPU kernels from its older
# emitters compile ~1 s faster per training program and run ~35% slower, a trade only tests want:
# the suite took 632 s instead of 714-786 s. Set in the environment, so the scripts the tests
# start in subprocesses inherit it. lr_jax itself keeps XLA's default.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
