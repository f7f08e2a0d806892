"""`Optimizer`: one family's entry in `OPTIMIZERS`: its optax factory, its numbers, the
arguments that select its variant, and its hooks into the update and the validated parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import optax

from lr_jax.spec import HParam


class Optimizer(NamedTuple):
  """An optax optimizer family and its dynamic hyperparameters.

  Attributes:
    factory: the optax alias; called with `learning_rate` plus `hparams`.
    hparams: the per-variant numbers besides the learning rate: name -> default and range.
    fixed: keyword arguments that select the family's variant (e.g. `nesterov=True`).
    extra_args: None, or `loss -> {name: value}`: keyword arguments of `update` beyond the
      gradient, state and params, computed from the minibatch's mean loss (e.g.
      `lambda loss: {"value": loss}` for `optax.contrib.reduce_on_plateau`).
    eval_params: None, or `(state, params) -> params`: the parameters to validate and keep,
      from the family's optimizer state (its own, inside the injection and clipping) and
      the trained parameters, both pytrees (e.g. `optax.contrib.schedule_free_eval_params`).
  """

  factory: Callable[..., optax.GradientTransformation]
  hparams: Mapping[str, HParam]
  fixed: Mapping[str, object]
  extra_args: Callable[[jax.Array], Mapping[str, jax.Array]] | None = None
  eval_params: Callable[[optax.OptState, object], object] | None = None
