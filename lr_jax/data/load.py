"""`load_dataset`: the data set a `DataConfig` names: a built-in one, a file, a folder of images
or a `Dataset`."""

from __future__ import annotations

import dataclasses
import os

from lr_jax.config import APPLIES, DataConfig, Unused, why_unused
from lr_jax.data.builtin import DATASETS
from lr_jax.data.dataset import Dataset, _finish
from lr_jax.data.files import _check_file, _file_labels, _read_file
from lr_jax.errors import ConfigError


def load_dataset(cfg: DataConfig) -> Dataset:
  """Loads the data set named by `cfg.dataset`: a `DATASETS` name, a .npz / .csv path or a
  folder of images (`Dataset.from_folder`, read with `cfg.image_size` and `cfg.color`).

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
    ConfigError: an unknown name, a missing or malformed file or image folder, non-finite
      features, fewer than 2 classes, or a setting that does not apply to the data set.
  """
  if isinstance(cfg.dataset, Dataset):
    _check_image_fields(cfg)
    return cfg.dataset  # Checked when built; `DataConfig` refuses options that do not apply.
  name = os.fspath(cfg.dataset) if isinstance(cfg.dataset, os.PathLike) else cfg.dataset
  if not isinstance(name, str):
    raise ConfigError(f"dataset must be a name, a file path or a lr_jax.Dataset (for arrays: "
                      f"Dataset.from_arrays(x, y)), got a {type(name).__name__}")
  if name in DATASETS:  # Before folders: a name means the same in every working directory.
    _check_image_fields(cfg)
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
  if os.path.isdir(name) and os.path.splitext(name)[1].lower() not in (".npz", ".csv"):
    return _load_folder(name, cfg)  # A folder named like a data file is refused as one, below.
  if _check_file(name) not in (".npz", ".csv"):
    raise ConfigError(
        f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}, or the path of a .npz "
        "or .csv file or of a folder of images")
  _check_image_fields(cfg)
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


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DataConfig)}


def _check_image_fields(cfg: DataConfig) -> None:
  """Refuses `image_size` or `color` set for a data set that is not a folder of images, in the
  words of its rule in `lr_jax.config.APPLIES` (which the flags' check reads)."""
  for field in ("image_size", "color"):
    value = getattr(cfg, field)
    if value != _DEFAULTS[field]:
      rule = next(r for r in APPLIES["DataConfig"] if field in r.fields)
      raise ConfigError(f"{field}={value!r} does not apply "
                        f"{why_unused(Unused(rule, cfg.dataset))}; drop {field}")


def _load_folder(path: str, cfg: DataConfig) -> Dataset:
  """A folder of images, its settings checked against what it gives (classes, splits)."""
  if cfg.label_column is not None:
    raise ConfigError(f"label_column applies to .csv files only, got {cfg.label_column!r} with "
                      f"image folder {path!r}, whose class folders are the labels")
  if cfg.task == "regression":
    raise ConfigError(f"image folder {path!r} is a classification data set (its class folders "
                      "are the labels), got task='regression'")
  for field, split in (("val_dataset", "val"), ("test_dataset", "test")):
    if getattr(cfg, field) is not None:
      raise ConfigError(
          f"{field}={getattr(cfg, field)!r} applies to .npz and .csv files; give an image "
          f"folder's {split} images as {os.path.join(path, split)}/<class>/ beside "
          f"{os.path.join(path, 'train')}/<class>/")
  dataset = Dataset.from_folder(path, image_size=cfg.image_size, color=cfg.color)
  given = [os.path.join(path, s) for s, n in (("val", dataset.num_val),
                                              ("test", dataset.num_test)) if n]
  if cfg.outer_folds is not None and given:
    raise ConfigError(
        f"outer_folds={cfg.outer_folds} does not apply to {path!r}: its {' and '.join(given)} "
        "images are given; nested cross-validation makes its own splits")
  if dataset.num_val and cfg.val_fraction != _DEFAULTS["val_fraction"]:
    raise ConfigError(
        f"val_fraction={cfg.val_fraction!r} does not apply with a given validation split "
        f"({given[0]}); drop val_fraction")
  return dataset
