"""The end of an epoch (`end_epoch`): validation, early stopping, the plateau, the best params."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from lr_jax.errors import ConfigError
from lr_jax.optim import PLATEAU, current_learning_rate
from lr_jax.train.objective import example_losses, weighted_mean
from lr_jax.train.rules import Rules
from lr_jax.train.state import Hparams, Plateau, VariantState, _tree_where
from lr_jax.train.step import eval_params, val_outcomes


def no_improvement(score, best, wait, min_delta, counts, hold=False):
  """Keras' "no improvement for k epochs" count, shared by early stopping and the plateau.

  Args:
    score: [] this epoch's monitored score, lower is better.
    best: [] the best score so far.
    wait: [] epochs since the last improvement.
    min_delta: an improvement must beat `best - min_delta`.
    counts: [] bool, this epoch counts (the variant trained and did not diverge).
    hold: [] bool, count no epoch (a plateau's cooldown): the wait stays.

  Returns:
    `(improved, best, wait)`: the wait is 0 after an improvement, one more otherwise.
  """
  improved = counts & (score < best - min_delta)
  best = jnp.where(improved, score, best)
  wait = jnp.where(improved, 0, wait + (counts & ~hold).astype(jnp.int32))
  return improved, best, wait


def _plateau_number(numbers: Mapping[str, jax.Array], name: str) -> jax.Array:
  return jnp.asarray(numbers.get(name, PLATEAU[name].default), jnp.float32)


def plateau_update(p: Plateau, score, counts, numbers: Mapping[str, jax.Array]) -> Plateau:
  """Keras' `ReduceLROnPlateau.on_epoch_end` on one variant's monitored score, traced.

  In cooldown the wait is reset and the counter decremented; an improvement (beating the best
  by `plateau_min_delta`) resets the wait; otherwise, out of cooldown, the wait grows, and at
  `plateau_patience` a rate above `plateau_min_lr` is multiplied by `plateau_factor` (not below
  `plateau_min_lr`), starting `plateau_cooldown` epochs of cooldown.

  Args:
    p: the plateau's state.
    score: [] the monitored score, lower is better (accuracy negated).
    counts: [] bool, the epoch counts (a stopped or diverged variant's state is left as is).
    numbers: the variant's schedule numbers (`hp["schedule"]`); a `plateau_*` one absent
      takes its declared default (`optim.PLATEAU`, Keras').

  Returns:
    The new state; `learning_rate` is the peak rate of the next epoch.
  """
  factor = _plateau_number(numbers, "plateau_factor")
  patience = _plateau_number(numbers, "plateau_patience")
  cooldown = _plateau_number(numbers, "plateau_cooldown").astype(jnp.int32)
  min_lr = _plateau_number(numbers, "plateau_min_lr")
  min_delta = _plateau_number(numbers, "plateau_min_delta")
  was_cooling = counts & (p.cooldown > 0)
  counter = jnp.where(was_cooling, p.cooldown - 1, p.cooldown)
  wait = jnp.where(was_cooling, 0, p.wait)
  improved, best, wait = no_improvement(score, p.best, wait, min_delta, counts, hold=counter > 0)
  reduce = (counts & ~improved & (counter <= 0) & (wait.astype(jnp.float32) >= patience)
            & (p.learning_rate > min_lr))
  return Plateau(
      learning_rate=jnp.where(reduce, jnp.maximum(p.learning_rate * factor, min_lr),
                              p.learning_rate),
      best=best, wait=jnp.where(reduce, 0, wait), cooldown=jnp.where(reduce, cooldown, counter))


def monitored_score(rules: Rules, val_loss_B, val_correct_B, out_VxK, y_val, w_val,
                    values=None) -> jax.Array:
  """The monitored value on the validation rows weighted `w_val`, lower is better (a
  higher-is-better metric negated). `values`: the user metrics already computed with `w_val`."""
  if rules.monitor == "val_loss":
    return weighted_mean(val_loss_B, w_val)
  if rules.monitor == "val_accuracy":
    return -weighted_mean(val_correct_B, w_val)
  name = rules.monitor[len("val_"):]
  value = (values[name] if values is not None else
           jnp.asarray(dict(rules.metrics)[name].fn(out_VxK, y_val, w_val), jnp.float32))
  return -value if rules.monitored.higher_is_better else value


def end_epoch(rules: Rules, v: VariantState, hp: Hparams, was_training, epoch, sums, x_val, y_val,
              w_val, *, patience: jax.Array | int, min_delta: jax.Array | float):
  """Validation, early stopping, the plateau and best-params tracking at an epoch's end.

  Args:
    rules: the static rules.
    v: the variant's state after the epoch's steps.
    hp: its numbers (the plateau's are read here).
    was_training: [] bool, the variant trained this epoch.
    epoch: [] int32, the 1-based epoch that ends.
    sums: `train_step`'s outputs summed over the epoch.
    x_val, y_val, w_val: the fold's standardized validation set and its weights.
    patience: early stopping after this many epochs without improvement (`Budget.patience`);
      0: never.
    min_delta: an improvement must beat the best by more than this (`Budget.min_delta`).

  Returns:
    `(v, history)`: the history's entries of this epoch, NaN where the variant did not train.
  """
  loss_sum, acc_sum, weight = sums
  current = eval_params(rules, v.params, v.opt_state)
  val_loss_B, val_correct_B, out_VxK = example_losses(
      rules.model, rules.classification, current, x_val, y_val, None,
      False, loss=rules.loss, with_outputs=True, hparams=hp["model"])
  val_loss = weighted_mean(val_loss_B, w_val)
  val_acc = weighted_mean(val_correct_B, w_val)
  values = {n: jnp.asarray(m.fn(out_VxK, y_val, w_val), jnp.float32) for n, m in rules.metrics}
  for n, value in values.items():
    if value.shape != ():
      raise ConfigError(f"metric {n!r} must return a scalar, got shape {value.shape}")
  score = monitored_score(rules, val_loss_B, val_correct_B, out_VxK, y_val, w_val, values)
  counts = was_training & ~v.diverged
  improved, best_score, wait = no_improvement(score, v.best_score, v.wait, min_delta, counts)
  # Cross-fitting (`VariantState.crossfit_outcomes`): each half of the validation rows picks
  # its own best epoch, and the other half's outcomes are kept there.
  half_a = (jnp.arange(w_val.shape[0]) % 2) == 0
  w_halves = [w_val * half_a, w_val * ~half_a]
  halves = [monitored_score(rules, val_loss_B, val_correct_B, out_VxK, y_val, w, None)
            for w in w_halves]
  # A user metric is not a mean over rows: each half's value, kept at the other half's best.
  half_values = {n: jnp.stack([jnp.asarray(m.fn(out_VxK, y_val, w), jnp.float32)
                               for w in w_halves]) for n, m in rules.metrics}
  improved_a, best_a, _ = no_improvement(halves[0], v.crossfit_best[0], 0, min_delta,
                                         counts)
  improved_b, best_b, _ = no_improvement(halves[1], v.crossfit_best[1], 0, min_delta,
                                         counts)
  stop = counts & (patience > 0) & (wait >= patience)
  names = tuple(n for n, _ in rules.metrics)
  # The rate this epoch's updates used, before the plateau changes the next epoch's.
  learning_rate = current_learning_rate(v.opt_state)
  outcomes = val_outcomes(rules, val_loss_B, val_correct_B)
  v = v._replace(
      best_params=_tree_where(improved, current, v.best_params),
      best_score=best_score,
      best_epoch=jnp.where(improved, epoch, v.best_epoch),
      best_val_loss=jnp.where(improved, val_loss, v.best_val_loss),
      best_val_accuracy=jnp.where(improved, val_acc, v.best_val_accuracy),
      wait=wait,
      stopped=v.stopped | stop,
      epochs_run=v.epochs_run + was_training.astype(jnp.int32),
      eval_params=None if rules.family.eval_params is None else current,
      best_metrics={n: jnp.where(improved, values[n], v.best_metrics[n]) for n in names},
      plateau=None if not rules.plateau else plateau_update(v.plateau, score, counts, hp["schedule"]),
      best_outcomes=jnp.where(improved, outcomes, v.best_outcomes),
      last_outcomes=jnp.where(counts, outcomes, v.last_outcomes),
      crossfit_best=jnp.stack([best_a, best_b]),
      crossfit_outcomes=jnp.where((improved_a & ~half_a) | (improved_b & half_a), outcomes,
                                  v.crossfit_outcomes),
      crossfit_metrics={n: jnp.where(jnp.stack([improved_b, improved_a]), half_values[n],
                                     v.crossfit_metrics[n]) for n in names})
  nan = jnp.float32(jnp.nan)
  seen = was_training & (weight > 0)
  history = rules.history(
      train_loss=jnp.where(seen, loss_sum / jnp.maximum(weight, 1.0), nan),
      train_accuracy=jnp.where(seen, acc_sum / jnp.maximum(weight, 1.0), nan),
      # The epoch a variant diverges in does not count, in the history as in best_*: a
      # diverged variant must not "reach a target" its best metrics never show.
      val_loss=jnp.where(counts, val_loss, nan),
      val_accuracy=jnp.where(counts, val_acc, nan),
      learning_rate=jnp.where(was_training, learning_rate, nan),
      **{f"val_{n}": jnp.where(counts, values[n], nan) for n in names})
  return v, history
