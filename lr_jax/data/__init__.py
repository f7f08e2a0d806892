"""Data sets and their splits, on the host in numpy.

    dataset = load_dataset(DataConfig(dataset="digits"))
    splits = make_splits(dataset, DataConfig(train_size=200, folds=5))
    mine = Dataset.from_arrays(x, y, x_val, y_val)  # arrays, with a given validation split
    images = Dataset.from_folder("pets/", image_size=32, color="rgb")  # pets/<class>/*.png

A data set is held once, whole, as `[N, D]` float32 features. A split is only indices into it,
padded per fold to a common length and masked, so that every fold of a sweep has the same shapes
and shares one compiled program. scikit-learn is imported only by the loaders that need it, so
that importing lr_jax stays fast.

The package's modules, one idea each: `dataset` (the `Dataset` type, built from arrays),
`builtin` (`DATASETS`), `files` (.csv and .npz files), `folders` (folders of images,
`read_folder`; `read_images`, the images a saved model predicts on), `load` (`load_dataset`),
`splits` (`Splits`, `make_splits`) and `record` (what a run records of its data).
"""

from lr_jax.config import DataConfig
from lr_jax.data.builtin import DATASETS
from lr_jax.data.dataset import CLASSIFICATION, REGRESSION, Dataset
from lr_jax.data.files import check_header
from lr_jax.data.folders import (IMAGE_EXTENSIONS, ImageFolder, image_files, read_folder,
                                 read_images)
# Private, for `export`: the files a model predicts on get a data file's checks.
from lr_jax.data.files import _NPY_MAGIC, _ZIP_MAGICS, _check_file, _not_pickle
from lr_jax.data.load import load_dataset
from lr_jax.data.record import config_dict, content_fingerprint
from lr_jax.data.splits import Splits, fold_splits, make_splits, stratified_draw

__all__ = [
    "CLASSIFICATION", "DATASETS", "DataConfig", "Dataset", "IMAGE_EXTENSIONS", "ImageFolder",
    "REGRESSION", "Splits", "check_header", "config_dict", "content_fingerprint", "fold_splits",
    "image_files", "load_dataset", "make_splits", "stratified_draw", "read_folder", "read_images",
]
