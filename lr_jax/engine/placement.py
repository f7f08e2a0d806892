"""Where arrays live and the room there is: the mesh, placing and fetching, memory and cache."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _size(num_bytes: float) -> str:
  """Bytes for a message: '47.7 GiB', '12.0 MiB'."""
  for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if num_bytes >= scale:
      return f"{num_bytes / scale:.1f} {unit}"
  return f"{int(num_bytes)} bytes"


def _mesh() -> Mesh | None:
  """A 1-D mesh over every device of every process, or None on a single device."""
  devices = jax.devices()
  return Mesh(np.array(devices), ("points",)) if len(devices) > 1 else None


def _put(x: np.ndarray, mesh: Mesh | None, spec: P):
  """Places a host array (the same on every process) on the mesh with `spec`."""
  if mesh is None:
    return jax.device_put(x)
  sharding = NamedSharding(mesh, spec)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _put_shape(x, mesh: Mesh | None, spec: P) -> jax.ShapeDtypeStruct:
  """What `_put(x, mesh, spec)` would place, as a shape: the signature of a program built
  before its arguments exist (`jit(f).lower(...)`)."""
  return jax.ShapeDtypeStruct(x.shape, jax.dtypes.canonicalize_dtype(x.dtype),
                              sharding=NamedSharding(mesh, spec) if mesh is not None else None)


def _to_host(tree):
  """Fetches a (possibly multi-process sharded) pytree to numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _device_memory_bytes() -> int:
  """One device's memory: an accelerator's limit, else (a CPU) the machine's."""
  stats = jax.local_devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return _host_memory_bytes() or 2**63


def _host_memory_bytes() -> int | None:
  """This machine's memory: the physical memory, or a smaller cgroup (v2) limit of this
  process's container; None where neither can be read."""
  sizes = []
  try:
    sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
  except (OSError, ValueError, AttributeError):
    pass
  try:
    with open("/sys/fs/cgroup/memory.max") as f:
      text = f.read().strip()
    if text.isdigit():
      sizes.append(int(text))
  except OSError:
    pass
  return min(sizes) if sizes else None


def _cache_bytes() -> int:
  """The CPU's largest cache (Linux sysfs), or 32 MiB where it cannot be read."""
  base = "/sys/devices/system/cpu/cpu0/cache"
  units = {"K": 2**10, "M": 2**20, "G": 2**30}
  sizes = []
  try:
    for index in os.listdir(base):
      with open(os.path.join(base, index, "size")) as f:
        text = f.read().strip()
      sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
  except (OSError, ValueError):
    pass
  return max(sizes, default=32 * 2**20)
