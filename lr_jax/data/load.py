"""`load_dataset`: the data set a `DataConfig` names, a built-in one, a file or a `Dataset`."""

from __future__ import annotations

import os

from lr_jax.config import DataConfig
from lr_jax.data.builtin import DATASETS
from lr_jax.data.dataset import Dataset, _finish
from lr_jax.data.files import _check_file, _file_labels, _read_file
from lr_jax.errors import ConfigError


def load_dataset(cfg: DataConfig) -> Dataset:
  """Loads the data set named by `cfg.dataset`: a `DATASETS` name or a .npz / .csv path.

  A .npz file holds arrays `x` [N, ...] and `y` [N]. A .csv file has a header row; the label
  column is `cfg.label_column` (a name or 0-based index; default the last) and every other
  column is a numeric feature. Classification labels are mapped to 0..C-1 in sorted order;
  with `cfg.task` None, integer-valued or text labels mean classification, others regression
  (logged once, with the reason: integer targets such as counts need `task="regression"`).

  Args:
    cfg: the data configuration; `train_size`, `folds` and `val_fraction` are not used here.

  Returns:
    The whole data set.

  Raises:
    ConfigError: an unknown name, a missing or malformed file, non-finite features, or fewer
      than 2 classes.
  """
  if isinstance(cfg.dataset, Dataset):
    return cfg.dataset  # Checked when built; `DataConfig` refuses options that do not apply.
  name = os.fspath(cfg.dataset) if isinstance(cfg.dataset, os.PathLike) else cfg.dataset
  if not isinstance(name, str):
    raise ConfigError(f"dataset must be a name, a file path or a lr_jax.Dataset (for arrays: "
                      f"Dataset.from_arrays(x, y)), got a {type(name).__name__}")
  if name in DATASETS:
    if cfg.label_column is not None:
      raise ConfigError(
          f"label_column applies to .csv files only, got {cfg.label_column!r} with built-in "
          f"dataset {name!r}")
    for field in ("val_dataset", "test_dataset"):
      if getattr(cfg, field) is not None:
        raise ConfigError(
            f"{field} needs dataset to be a .npz or .csv file with the same columns, got "
            f"built-in dataset {name!r}")
    dataset = DATASETS[name](cfg)
    if cfg.task is not None and cfg.task != dataset.task:
      raise ConfigError(
          f"dataset {name!r} is a {dataset.task} data set, got task={cfg.task!r}; task applies "
          "to .npz and .csv files only")
    return dataset
  if _check_file(name) not in (".npz", ".csv"):
    raise ConfigError(
        f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}, or the path of a .npz "
        "or .csv file")
  raw = _read_file(name, cfg)
  given = {}  # "val" / "test" -> the file's rows, read with the training file's columns
  for key, path, what in (("val", cfg.val_dataset, "validation file"),
                          ("test", cfg.test_dataset, "test file")):
    if path is None:
      continue
    if _check_file(path, what) not in (".npz", ".csv"):
      raise ConfigError(f"{key}_dataset {path!r} must be a .npz or .csv file")
    given[key] = _read_file(path, cfg, like=raw, what=what)
  y, *labels = _file_labels([raw, *given.values()])
  split = {key: (r.x, b) for (key, r), b in zip(given.items(), labels)}
  return _finish(name, raw.x, y, cfg.task, columns=raw.columns, user_file=True,
                 val=split.get("val"), val_name=cfg.val_dataset or "",
                 test=split.get("test"), test_name=cfg.test_dataset or "")
