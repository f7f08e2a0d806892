"""The selection rules: which eligible point a group's learning rate is (`select_index`)."""

from __future__ import annotations

import math
import numpy as np

from lr_jax.errors import ConfigError

SELECT_RULES = ("best", "one_se")
"""How a compile group's learning rate is chosen among its eligible points (see `select_index`)."""

DEFAULT_SELECT = "best"


def best_mean_text(higher_is_better: bool, metric: str) -> str:
  """What the `best` rule picks, in words: 'highest mean', or 'lowest mean loss' for a loss.

  Args:
    higher_is_better: the score's direction (`Aggregate.higher_is_better`).
    metric: the score (`Aggregate.metric`, e.g. "val_loss"); a user metric where lower is
      better is named: 'lowest mean val_mae'.
  """
  if higher_is_better:
    return "highest mean"
  return "lowest mean loss" if metric in ("val_loss", "loss") else f"lowest mean {metric}"


def rule_text(select: str, top: str, short: bool = False) -> str:
  """What a rule picks, in words: `top` is the best mean's ("highest mean", "lowest mean loss");
  `short` abbreviates for a table line ("largest LR within one SE of ...")."""
  one_se = ("largest LR within one SE of the " if short else
            "largest learning rate within one standard error of the ")
  return {"best": top, "one_se": one_se + top}.get(select, select)


def rule_mark(select: str, top: str) -> str:
  """A rule's mark beside the point it picks: the best mean's words, or "one-SE rule"."""
  return {"best": top, "one_se": "one-SE rule"}.get(select, select)


def check_select(select: str) -> str:
  """`select` if it names a rule of `SELECT_RULES`; else a `ConfigError` listing them."""
  if select not in SELECT_RULES:
    raise ConfigError(f"select must be one of {', '.join(SELECT_RULES)}, got {select!r}")
  return select


def best_index(mean_P: np.ndarray, eligible_P: np.ndarray, higher_is_better: bool) -> int | None:
  """Index of the eligible point with the best mean (the first on a tie); None if none is."""
  idx = np.flatnonzero(np.asarray(eligible_P, bool) & np.isfinite(mean_P))
  if idx.size == 0:
    return None
  sign = 1.0 if higher_is_better else -1.0
  return int(idx[np.argmax(sign * np.asarray(mean_P, np.float64)[idx])])


def select_index(select: str, lr_P: np.ndarray, mean_P: np.ndarray, se_P: np.ndarray,
                 eligible_P: np.ndarray, higher_is_better: bool) -> int | None:
  """The grid point a selection rule chooses among the eligible ones.

  Rules:
    best: the highest mean (lowest for a loss).
    one_se: the largest learning rate whose mean is within one standard error of the best
      mean (the best point's SE) -- the "one standard error rule" of Breiman, Friedman, Olshen
      and Stone, *Classification and Regression Trees* (1984), as in Hastie, Tibshirani and
      Friedman, *The Elements of Statistical Learning* (2009), §7.10, and glmnet's
      `lambda.1se`. Among points of that learning rate (other hyperparameters differing), the
      best mean. With n < 2 at the best point its SE is unknown and the rule picks the best.

  The default is `best` (as scikit-learn's `GridSearchCV`): its score is what the table reports,
  and the uncertainty is shown beside it (P(best), the points not significantly worse) rather
  than traded for a different point. The one-SE rule's premise -- prefer the simpler model when
  the data cannot tell them apart -- has no exact analogue for a learning rate: the larger one
  trains faster and often generalizes as well, but it sits nearer the divergence edge, and with
  the 3-5 runs per point of a small-data sweep the SE it leans on is itself estimated from 3-5
  values. Use `one_se` on a flat, noisy curve where the best is a one-point spike.

  Args:
    select: one of `SELECT_RULES`.
    lr_P: [P] learning rates.
    mean_P: [P] mean scores.
    se_P: [P] standard errors of the means (NaN where n < 2).
    eligible_P: [P] bool: may be chosen (no run diverged, every run has a score).
    higher_is_better: accuracy (True) or loss (False).

  Returns:
    The chosen index, or None if no point is eligible.
  """
  check_select(select)
  best = best_index(mean_P, eligible_P, higher_is_better)
  if best is None or select == "best":
    return best
  sign = 1.0 if higher_is_better else -1.0
  score_P = sign * np.asarray(mean_P, np.float64)
  se = float(se_P[best]) if math.isfinite(se_P[best]) else 0.0
  within = np.asarray(eligible_P, bool) & np.isfinite(score_P) & (score_P >= score_P[best] - se)
  idx = np.flatnonzero(within)
  lr_P = np.asarray(lr_P, np.float64)
  top = idx[lr_P[idx] == lr_P[idx].max()]
  return int(top[np.argmax(score_P[top])])
