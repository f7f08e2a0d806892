"""The schedule shapes: functions `(step, hparams)` of the step, 1.0 at the peak, whose numbers
(decay rate, cosine floor, warmup fraction, one-cycle rise) are traced -- optax's, in jnp."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def _fixed(schedule: optax.Schedule):
  return lambda step, hparams: schedule(step)


def _exponential(cfg, total_steps: int):
  # Keras ExponentialDecay: lr * decay_rate ** (step / decay_steps). Written here rather than
  # with optax.exponential_decay, whose Python checks of decay_rate cannot take a traced value.
  del total_steps

  def shape(step, hparams):
    p = step.astype(jnp.float32) / cfg.decay_steps
    if cfg.staircase:
      p = jnp.floor(p)
    return jnp.power(hparams["decay_rate"], p)

  return shape


# The shapes below are optax's (cosine_decay_schedule, warmup_cosine_decay_schedule,
# cosine_onecycle_schedule, at peak 1) written in jnp, because optax's take Python ints for
# their boundaries and these boundaries are per-variant numbers times the horizon.

def _cosine_decay(count, decay_steps, alpha):
  """optax.cosine_decay_schedule(1, decay_steps, alpha) at `count`: all float arrays."""
  count = jnp.minimum(count, decay_steps)
  return (1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * count / decay_steps))) + alpha


def _cosine(cfg, total_steps: int):
  del cfg

  def shape(step, hparams):
    return _cosine_decay(step.astype(jnp.float32), float(total_steps), hparams["alpha"])

  return shape


def _whole(x):
  # int() of a fraction of the horizon, as optax takes it of the float64 product: float32 puts
  # 0.21 * 300 just below 63, so nudge up by far less than a step. Where float64 itself falls
  # just below a whole number (0.29 * 100), the boundary here is one step later than optax's.
  return jnp.floor(x * (1 + 1e-6))


def _warmup_cosine(cfg, total_steps: int):
  # optax.warmup_cosine_decay_schedule(0, 1, warmup, max(total, warmup + 1), end_value=alpha)
  # with warmup = max(1, round(warmup_fraction * total)): a linear rise, then cosine decay.
  del cfg

  def shape(step, hparams):
    t = step.astype(jnp.float32)
    # round() halves to even as Python's does; a product within float32 rounding of a half
    # (0.07 * 150) may round the other way: warmup one step shorter or longer than optax's.
    warmup = jnp.maximum(1.0, jnp.round(hparams["warmup_fraction"] * total_steps))
    decay_steps = jnp.maximum(float(total_steps), warmup + 1) - warmup
    rise = 1 - jnp.clip(t, 0, warmup) / warmup  # optax.linear_schedule's (1 - frac).
    return jnp.where(t < warmup, (0.0 - 1.0) * rise + 1.0,
                     _cosine_decay(t - warmup, decay_steps, hparams["alpha"]))

  return shape


def _onecycle(cfg, total_steps: int):
  # optax.cosine_onecycle_schedule(total, 1, pct_start): cosine from 1/25 up to 1 over
  # int(pct_start * total) steps, then cosine down to 1/(25 * 1e4) / 25 * 25 at `total`.
  del cfg
  div, final_div = 25.0, 1e4
  start, peak = 1.0 / div, 1.0
  end = peak / (div * final_div)

  def shape(step, hparams):
    t = step.astype(jnp.float32)
    top = _whole(hparams["pct_start"] * total_steps)
    total = float(total_steps)

    def interpolate(a, b, pct):  # optax's _cosine_interpolate.
      return b + (a - b) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)

    up = interpolate(start, peak, t / jnp.maximum(top, 1))
    down = interpolate(peak, end, (t - top) / jnp.maximum(total - top, 1))
    return jnp.where(t < top, up, jnp.where(t < total, down, end))

  return shape
