"""The rows a refit trains on (`refit_rows`): every row the sweep saw, said in words and numbers."""

from __future__ import annotations

import hashlib

import numpy as np


def _seen_rows(splits) -> np.ndarray:
  """Every row some fold trained or validated on: the data the sweep saw."""
  return np.union1d(splits.train_idx[splits.train_mask], splits.val_idx[splits.val_mask])


MAX_LISTED_ROWS = 20_000
"""model.json lists the refit's row indices up to this many (always their SHA-256)."""

ROW_INDEX = ("0-based rows of the data set as loaded: the training file's (or arrays') rows, "
             "then a given validation split's, then a given test split's")


def refit_rows(group) -> tuple[np.ndarray, dict]:
  """The rows a refit of a planned group trains on, and what they are, in words and numbers.

  They are every row some fold of the sweep trained or validated on. Which rows that is
  depends on the design: every non-test row, unless `train_size` drew a subsample (a holdout's
  training rows, or k-fold's or nested CV's pool), whose undrawn rows no fold and no refit
  sees.

  Args:
    group: a planned group (`engine.Group`: its `dataset`, `splits` and `experiment`).

  Returns:
    ([N] sorted row indices (`ROW_INDEX`), their description: `n`, `non_test` (the data set's
    rows that are not test rows), `not_used` (non-test rows the refit leaves out), `which`
    (in words, e.g. "every non-test row (the folds' training and validation rows)"), `sha256`
    (of the indices as little-endian int64), `indices` (the list; None beyond
    `MAX_LISTED_ROWS`), `index` (what an index means)).
  """
  splits, ds = group.splits, group.dataset
  cfg = group.experiment.data
  rows = _seen_rows(splits).astype(np.int64)
  n, non_test = len(rows), len(ds.y) - len(splits.test_idx)
  rest = non_test - n
  nt = "non-test " if len(splits.test_idx) else ""  # Without a test set: every row.
  unused = f"; the other {rest} are not used" if rest else ""
  drawn = f"train_size={cfg.train_size}, drawn from {non_test} {nt}rows{unused}"
  if splits.num_outer:
    which = (f"every {nt}row (the nested cross-validation pool: its outer folds' "
             "training and test parts)" if not rest else
             f"the {n} rows of the nested cross-validation pool ({drawn})")
  elif splits.num_folds > 1:
    which = (f"every {nt}row (the folds' training and validation rows)" if not rest else
             f"the {n} rows of the folds, their training and validation rows ({drawn})")
  else:
    n_train, n_val = int(splits.train_sizes[0]), int(splits.val_sizes[0])
    given = "given " if ds.num_val else ""
    parts = f"{n_train} training and {n_val} {given}validation rows"
    which = (f"every {nt}row (the {parts})" if not rest else
             f"the {parts}, {n} of {non_test} {nt}rows (train_size={cfg.train_size} of the "
             f"{non_test - n_val}-row training pool{unused})")
  about = {"n": n, "non_test": non_test, "not_used": rest, "which": which,
           "sha256": hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest(),
           "indices": rows.tolist() if n <= MAX_LISTED_ROWS else None, "index": ROW_INDEX}
  return rows, about
