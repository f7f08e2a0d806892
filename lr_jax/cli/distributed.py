"""`--distributed`: joining the process group, from the flags or the JAX_* variables."""

from __future__ import annotations

import os

from lr_jax.cli.build import _given
from lr_jax.errors import ConfigError


def initialize_distributed(f) -> None:
  """Joins the process group when `--distributed`; flags override the JAX_* variables.

  Afterwards `jax.devices()` lists every process's devices, the engine's mesh spans them all,
  and only process 0 should write files.
  """
  names = ("coordinator_address", "num_processes", "process_id")
  if not f.distributed:
    for name in names:
      if _given(f, name):
        raise ConfigError(f"--{name} does not apply without --distributed; add --distributed, "
                          f"or drop --{name}")
    return
  address = f.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = _process_number(f.num_processes, "num_processes", "JAX_NUM_PROCESSES")
  pid = _process_number(f.process_id, "process_id", "JAX_PROCESS_ID")
  if address is None or num is None or pid is None:
    raise ConfigError("--distributed needs --coordinator_address, --num_processes and "
                      "--process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
  if num < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {num}")
  if not 0 <= pid < num:
    raise ConfigError(f"--process_id must be in 0..{num - 1}, got {pid}")
  import jax
  jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)


def _process_number(value: int | None, flag: str, variable: str) -> int | None:
  """A process count or index: the flag's, else the environment variable's, as an integer."""
  if value is not None:
    return value
  text = os.environ.get(variable)
  if text is None:
    return None
  try:
    return int(text)
  except ValueError:
    raise ConfigError(f"{variable}={text!r} is not an integer; valid: a whole number, as "
                      f"--{flag} takes (which overrides it)") from None
