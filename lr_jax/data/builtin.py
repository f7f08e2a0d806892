"""The built-in data sets by name (`DATASETS`): scikit-learn's real ones and synthetic ones."""

from __future__ import annotations

import functools
import importlib.metadata
import io
import math
import os
import zipfile
from collections.abc import Callable, Sequence

import numpy as np

from lr_jax.config import DataConfig
from lr_jax.data.dataset import CLASSIFICATION, REGRESSION, Dataset, _finish
from lr_jax.data.splits import _check_seed
from lr_jax.errors import ConfigError
from lr_jax.io import atomic_write

# Seeds the target function of "linear" and "teacher", so that every data_seed samples the
# same task; data_seed only draws the examples and the noise.
_FUNCTION_SEED = 20240601


def _cache_path(name: str) -> str | None:
  """Where scikit-learn's data set `name` is kept between runs, by scikit-learn's version:
  `$LR_JAX_DATA_CACHE` or `~/.cache/lr_jax/data`; None without an installed scikit-learn."""
  try:
    version = importlib.metadata.version("scikit-learn")
  except importlib.metadata.PackageNotFoundError:
    return None
  root = os.environ.get("LR_JAX_DATA_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "lr_jax", "data")
  return os.path.join(root, f"{name}-scikit-learn-{version}.npz")


def _read_cached(path: str) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
  """The arrays a previous run kept at `path`, or None where there are none whole."""
  try:
    with np.load(path) as f:
      x, y, columns = f["x"], f["y"], [str(c) for c in f["columns"]]
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
    return None
  if x.ndim != 2 or y.shape != x.shape[:1] or len(columns) != x.shape[1]:
    return None
  return x, y, columns


@functools.lru_cache(maxsize=None)
def _sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """scikit-learn's data set `name`: features, labels and column names, the same arrays as
  `sklearn.datasets.load_<name>()`.

  Importing scikit-learn and parsing its CSV take about a second, more than a small sweep's
  compile; so the arrays are kept in a file by scikit-learn's version (`_cache_path`) and read
  from there (milliseconds) by the next run. A file that cannot be written (a read-only home)
  or read whole is no error: the arrays come from scikit-learn again.
  """
  path = _cache_path(name)
  cached = None if path is None else _read_cached(path)
  if cached is not None:
    return cached
  import sklearn.datasets
  bunch = getattr(sklearn.datasets, f"load_{name}")()
  x, y, columns = bunch.data, bunch.target, [str(c) for c in bunch.feature_names]
  if path is not None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=y, columns=np.asarray(columns))
    try:
      atomic_write(path, buf.getvalue())
    except OSError:
      pass
  return x, y, columns


def _real(name: str,
          feature_shape: tuple[int, ...] | None = None) -> Callable[[DataConfig], Dataset]:
  def load(cfg: DataConfig) -> Dataset:
    del cfg  # Fixed data: num_samples and noise are for the synthetic sets.
    x, y, columns = _sklearn_arrays(name)
    return _finish(name, x, y, CLASSIFICATION, feature_shape, columns)
  load.__doc__ = f"scikit-learn's {name} data set (shipped with it, no download)."
  return load


def _rng(cfg: DataConfig) -> np.random.Generator:
  _check_seed(cfg.data_seed)
  # A stream of its own: drawing from default_rng(data_seed), as the split does, would tie
  # which examples are held out to how they were generated.
  return np.random.default_rng((cfg.data_seed, 1))


def _class_sizes(cfg: DataConfig, name: str, num_classes: int) -> list[int]:
  n = cfg.num_samples
  if n < 2 * num_classes:
    raise ConfigError(
        f"num_samples={n} is too small for {name!r} ({num_classes} classes, each needs one "
        f"training and one validation example); valid: >= {2 * num_classes}")
  return [n // num_classes + (c < n % num_classes) for c in range(num_classes)]


def _labels(sizes: Sequence[int]) -> np.ndarray:
  return np.repeat(np.arange(len(sizes)), sizes)


def _moons(cfg: DataConfig) -> Dataset:
  """Two interleaving half circles (as scikit-learn's make_moons), with Gaussian noise."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "moons", 2)
  t0, t1 = np.pi * rng.random(sizes[0]), np.pi * rng.random(sizes[1])
  x = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                      np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
  return _finish("moons", x + cfg.noise * rng.standard_normal(x.shape), _labels(sizes),
                 CLASSIFICATION)


def _spirals(cfg: DataConfig) -> Dataset:
  """Two interleaved spirals of 1.5 turns within the unit disc, with Gaussian noise."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "spirals", 2)
  arms = []
  for c, n in enumerate(sizes):
    t = 3 * np.pi * np.sqrt(rng.random(n))  # sqrt: an even density along the arm.
    angle = t + c * np.pi
    arms.append(t[:, None] / (3 * np.pi) * np.stack([np.cos(angle), np.sin(angle)], 1))
  x = np.concatenate(arms)
  return _finish("spirals", x + cfg.noise * rng.standard_normal(x.shape), _labels(sizes),
                 CLASSIFICATION)


def _blobs(cfg: DataConfig) -> Dataset:
  """Four isotropic Gaussian blobs of std `noise`, centred on the corners (+-1, +-1)."""
  rng, sizes = _rng(cfg), _class_sizes(cfg, "blobs", 4)
  centres = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float64)
  y = _labels(sizes)
  return _finish("blobs", centres[y] + cfg.noise * rng.standard_normal((len(y), 2)), y,
                 CLASSIFICATION)


def _regression_inputs(cfg: DataConfig, name: str) -> tuple[np.random.Generator, np.ndarray]:
  if cfg.num_samples < 2:
    raise ConfigError(f"num_samples={cfg.num_samples} is too small for {name!r}; valid: >= 2")
  rng = _rng(cfg)
  return rng, rng.standard_normal((cfg.num_samples, 8))


def _linear(cfg: DataConfig) -> Dataset:
  """y = x.w + noise, x ~ N(0, I_8), a fixed w ~ N(0, I/8) so that x.w has unit variance."""
  rng, x = _regression_inputs(cfg, "linear")
  w = np.random.default_rng(_FUNCTION_SEED).standard_normal(8) / math.sqrt(8)
  return _finish("linear", x, x @ w + cfg.noise * rng.standard_normal(len(x)), REGRESSION)


def _teacher(cfg: DataConfig) -> Dataset:
  """y = tanh(x W1 + b1) w2 + noise: a fixed random net of 16 tanh units, x ~ N(0, I_8)."""
  rng, x = _regression_inputs(cfg, "teacher")
  net = np.random.default_rng(_FUNCTION_SEED + 1)
  # Pre-activations of std ~2 put the units in tanh's curved range: a non-linear target.
  w1 = net.standard_normal((8, 16)) * 2 / math.sqrt(8)
  b1 = net.standard_normal(16) * 0.5
  w2 = net.standard_normal(16) / math.sqrt(16)
  y = np.tanh(x @ w1 + b1) @ w2
  return _finish("teacher", x, y + cfg.noise * rng.standard_normal(len(x)), REGRESSION)


# name -> loader(DataConfig) -> Dataset. Register a loader here to add a data set by name.
DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": _real("digits", (8, 8, 1)),
    "iris": _real("iris"),
    "wine": _real("wine"),
    "breast_cancer": _real("breast_cancer"),
    "moons": _moons,
    "spirals": _spirals,
    "blobs": _blobs,
    "linear": _linear,
    "teacher": _teacher,
}
