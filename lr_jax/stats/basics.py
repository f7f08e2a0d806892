"""Student-t quantiles (scipy) and the summary of a plain sample: the numbers under the rest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


def t_quantile(q: float, df: float) -> float:
  """The `q` quantile of Student's t distribution with `df` degrees of freedom (scipy.stats.t)."""
  import scipy.stats  # Here, not at the top: it takes seconds to import, and errors must not wait.
  return float(scipy.stats.t.ppf(q, df))


def t_quantile_975(df: float) -> float:
  """The 97.5% quantile of Student's t with `df` degrees of freedom (a 95% interval's factor)."""
  return t_quantile(0.975, df)


class Summary(NamedTuple):
  """Mean and spread of the finite entries of a sample.

  Attributes:
    n: how many finite values.
    mean: their mean (NaN when n = 0).
    std: sample standard deviation, ddof = 1 (NaN when n < 2: one value says nothing of spread).
    se: standard error of the mean, std / sqrt(n) (NaN when n < 2).
    ci95: half-width of the two-sided 95% Student-t interval of the mean (NaN when n < 2).
  """

  n: int
  mean: float
  std: float
  se: float
  ci95: float


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
  """`Summary` of the finite entries of `values` (NaN and inf are not values)."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  n = int(v.size)
  if n == 0:
    return Summary(0, math.nan, math.nan, math.nan, math.nan)
  if n == 1:
    return Summary(1, float(v[0]), math.nan, math.nan, math.nan)
  std = float(v.std(ddof=1))
  se = std / math.sqrt(n)
  return Summary(n, float(v.mean()), std, se, t_quantile_975(n - 1) * se)
