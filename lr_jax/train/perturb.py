"""What training alone does to a minibatch: image shifts, input noise, label noise, smoothing."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lr_jax.errors import ConfigError
from lr_jax.models import apply_model
from lr_jax.train.objective import example_losses
from lr_jax.train.rules import Rules
from lr_jax.train.state import DataArrays, Hparams


# Salts of the augmentation keys: `fold_in` of the minibatch key, far from the small counts a
# model folds into the same key (`from_nnx` folds in 0, 1, 2, ... per rng stream).
_NOISE_SALT, _SHIFT_SALT, _FLIP_SALT = 0x6E6F6973, 0x73686966, 0x666C6970
_ROTATE_SALT, _CROP_SALT = 0x726F7461, 0x63726F70


class Extras(NamedTuple):
  """A minibatch's inputs that only data axes read; each None where its axis is not swept.

  Attributes:
    background_D: the standardized value of a raw 0 (blank) pixel, `-mean / std` of the fold:
      what a random shift moves into the image.
    flip_u_B: [B] uniform in [0, 1), fixed per (seed, row): a row's label is replaced where
      `flip_u_B < label_noise`.
    flip_r_B: [B] uniform in [0, 1), fixed per (seed, row): which other class replaces it.
  """

  background_D: jax.Array | None = None
  flip_u_B: jax.Array | None = None
  flip_r_B: jax.Array | None = None


def label_flips(seed: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """`([N], [N])` uniforms of a stream's label noise, one pair per data row, fixed per seed.

  Drawn once per seed, not per epoch: a row flipped at rate r is flipped every epoch, and is
  flipped at every rate above r (the flipped sets are nested).
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), 3)
  return (jax.random.uniform(jax.random.fold_in(key, 0), (n,)),
          jax.random.uniform(jax.random.fold_in(key, 1), (n,)))


def noisy_labels(y_B: jax.Array, u_B: jax.Array, r_B: jax.Array, rate: jax.Array,
                 num_classes: int) -> jax.Array:
  """The labels with those of rows `u_B < rate` replaced by a uniformly random other class.

  Args:
    y_B: [B] int labels.
    u_B, r_B: [B] the rows' `label_flips` (uniform in [0, 1)).
    rate: [] the fraction of labels to replace.
    num_classes: K.
  """
  # Another class than the row's own: the label moved by 1..K-1, mod K.
  other_B = (y_B + 1 + jnp.minimum(jnp.floor(r_B * (num_classes - 1)).astype(y_B.dtype),
                                   num_classes - 2)) % num_classes
  return jnp.where(u_B < rate, other_B, y_B)


def shift_images(raw_BxD: jax.Array, feature_shape: tuple[int, ...], shift: jax.Array,
                 key: jax.Array, fill_D: jax.Array | None = None) -> jax.Array:
  """Moves each image by (dy, dx), each uniform in {-shift..shift}, filling with zeros.

  Args:
    raw_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    shift: [] the largest move k in pixels (an integer value; traced).
    key: the minibatch's shift key: the same moves for every variant of a stream.
    fill_D: what fills the pixels moved in from outside, per pixel; None is 0.

  Returns:
    [B, D]: pixel (i, j) of an example is the pixel (i - dy, j - dx), 0 (`fill_D`) where
    that is outside the image.
  """
  b = raw_BxD.shape[0]
  height, width = feature_shape[0], feature_shape[1]
  img = raw_BxD.reshape((b, height, width, -1))
  u_Bx2 = jax.random.uniform(key, (b, 2))
  k = jnp.round(shift).astype(jnp.int32)
  d_Bx2 = jnp.minimum(jnp.floor(u_Bx2 * (2 * k + 1)).astype(jnp.int32), 2 * k) - k
  src_BxH = jnp.arange(height)[None, :] - d_Bx2[:, :1]
  src_BxW = jnp.arange(width)[None, :] - d_Bx2[:, 1:]
  img = jnp.take_along_axis(img, jnp.clip(src_BxH, 0, height - 1)[:, :, None, None], axis=1)
  img = jnp.take_along_axis(img, jnp.clip(src_BxW, 0, width - 1)[:, None, :, None], axis=2)
  inside = (((src_BxH >= 0) & (src_BxH < height))[:, :, None, None]
            & ((src_BxW >= 0) & (src_BxW < width))[:, None, :, None])
  fill = 0.0 if fill_D is None else fill_D.reshape((1, height, width, -1))
  return jnp.where(inside, img, fill).reshape(raw_BxD.shape)


def flip_images(x_BxD: jax.Array, feature_shape: tuple[int, ...], rate: jax.Array,
                key: jax.Array) -> jax.Array:
  """Mirrors each image left to right with probability `rate` (traced), drawn from `key`.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    rate: [] the probability of a mirror image (0: none; 1: every one).
    key: the minibatch's flip key: the same draws for every variant of a stream.

  Returns:
    [B, D]: each example as it was, or its columns reversed.
  """
  b = x_BxD.shape[0]
  img = x_BxD.reshape((b, feature_shape[0], feature_shape[1], -1))
  flip_B = jax.random.uniform(key, (b,)) < rate
  return jnp.where(flip_B[:, None, None, None], img[:, :, ::-1], img).reshape(x_BxD.shape)


def rotate_by(x_BxD: jax.Array, feature_shape: tuple[int, ...], angle_B: jax.Array,
              fill_D: jax.Array | None = None) -> jax.Array:
  """Rotates each image about its centre by its own angle, bilinearly interpolated.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    angle_B: [B] angles in radians, counter-clockwise as the image is displayed (row 0 at
      the top).
    fill_D: what fills the pixels rotated in from outside the image, per pixel; None is 0.

  Returns:
    [B, D]: pixel (i, j) of an example is the example read at the point the rotation takes
    there, interpolated between its 4 neighbours; `fill_D` where that point is outside.
  """
  height, width = feature_shape[0], feature_shape[1]
  cy, cx = (height - 1) / 2, (width - 1) / 2
  i_P = jnp.repeat(jnp.arange(height, dtype=x_BxD.dtype), width) - cy
  j_P = jnp.tile(jnp.arange(width, dtype=x_BxD.dtype), height) - cx
  cos_Bx1, sin_Bx1 = jnp.cos(angle_B)[:, None], jnp.sin(angle_B)[:, None]
  # The inverse rotation: where in the source each output pixel comes from (y grows down).
  src_y_BxP = cos_Bx1 * i_P[None] + sin_Bx1 * j_P[None] + cy
  src_x_BxP = cos_Bx1 * j_P[None] - sin_Bx1 * i_P[None] + cx
  return _resample(x_BxD, feature_shape, src_y_BxP, src_x_BxP, fill_D)


def _resample(x_BxD: jax.Array, feature_shape: tuple[int, ...], src_y_BxP: jax.Array,
              src_x_BxP: jax.Array, fill_D: jax.Array | None) -> jax.Array:
  """Each output pixel p of an example read at (src_y, src_x) of its source image, bilinearly
  interpolated between the 4 neighbours; `fill_D` (None: 0) where that point is outside.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    src_y_BxP, src_x_BxP: [B, H * W] source coordinates of each output pixel, row-major.
    fill_D: the fill, per pixel.
  """
  b = x_BxD.shape[0]
  height, width = feature_shape[0], feature_shape[1]
  img_BxPxC = x_BxD.reshape((b, height * width, -1))
  y0_BxP, x0_BxP = jnp.floor(src_y_BxP), jnp.floor(src_x_BxP)
  out_BxPxC = jnp.zeros_like(img_BxPxC)
  inside_BxP = ((src_y_BxP >= -0.5) & (src_y_BxP <= height - 0.5)
                & (src_x_BxP >= -0.5) & (src_x_BxP <= width - 0.5))
  for dy in (0, 1):
    for dx in (0, 1):
      y_BxP, x_BxP = y0_BxP + dy, x0_BxP + dx
      weight_BxP = ((1 - jnp.abs(src_y_BxP - y_BxP)) * (1 - jnp.abs(src_x_BxP - x_BxP)))
      idx_BxP = (jnp.clip(y_BxP, 0, height - 1) * width
                 + jnp.clip(x_BxP, 0, width - 1)).astype(jnp.int32)
      out_BxPxC += weight_BxP[..., None] * jnp.take_along_axis(img_BxPxC, idx_BxP[..., None],
                                                               axis=1)
  fill = 0.0 if fill_D is None else fill_D.reshape((1, height * width, -1))
  return jnp.where(inside_BxP[..., None], out_BxPxC, fill).reshape(x_BxD.shape)


def crop_by(x_BxD: jax.Array, feature_shape: tuple[int, ...], scale_B: jax.Array,
            offset_Bx2: jax.Array) -> jax.Array:
  """Crops each image to its own window and resizes it back (bilinear): a zoom in.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    scale_B: [B] the window's side as a fraction of the image's, in (0, 1].
    offset_Bx2: [B, 2] the window centre's (dy, dx) from the image's, in pixels; a window
      inside the image has |offset| <= (1 - scale) * (side - 1) / 2.

  Returns:
    [B, D]: pixel (i, j) of an example is its source at (cy + dy + scale * (i - cy),
    cx + dx + scale * (j - cx)), interpolated.
  """
  height, width = feature_shape[0], feature_shape[1]
  cy, cx = (height - 1) / 2, (width - 1) / 2
  i_P = jnp.repeat(jnp.arange(height, dtype=x_BxD.dtype), width) - cy
  j_P = jnp.tile(jnp.arange(width, dtype=x_BxD.dtype), height) - cx
  s_Bx1 = scale_B[:, None]
  src_y_BxP = cy + offset_Bx2[:, :1] + s_Bx1 * i_P[None]
  src_x_BxP = cx + offset_Bx2[:, 1:] + s_Bx1 * j_P[None]
  return _resample(x_BxD, feature_shape, src_y_BxP, src_x_BxP, None)


def crop_images(x_BxD: jax.Array, feature_shape: tuple[int, ...], crop: jax.Array,
                key: jax.Array) -> jax.Array:
  """Random crops resized back: each image's window side is 1 - u * crop of the image's (u
  uniform in [0, 1), `crop` traced), at a uniform position inside the image, from `key`.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    crop: [] the largest share of the side cut away (0: none).
    key: the minibatch's crop key: the same draws for every variant of a stream.

  Returns:
    [B, D], as `crop_by`.
  """
  b = x_BxD.shape[0]
  u_Bx3 = jax.random.uniform(key, (b, 3), x_BxD.dtype)
  scale_B = 1 - crop * u_Bx3[:, 0]
  half_2 = jnp.asarray([(feature_shape[0] - 1) / 2, (feature_shape[1] - 1) / 2], x_BxD.dtype)
  offset_Bx2 = (2 * u_Bx3[:, 1:] - 1) * (1 - scale_B)[:, None] * half_2[None]
  return crop_by(x_BxD, feature_shape, scale_B, offset_Bx2)


def rotate_images(x_BxD: jax.Array, feature_shape: tuple[int, ...], degrees: jax.Array,
                  key: jax.Array, fill_D: jax.Array | None = None) -> jax.Array:
  """Rotates each image by an angle uniform in [-degrees, degrees] (traced), from `key`.

  Args:
    x_BxD: flat images; one example is `feature_shape` = (H, W[, C...]).
    feature_shape: the image's shape, rank >= 2.
    degrees: [] the largest rotation either way, in degrees (0: none).
    key: the minibatch's rotation key: the same draws for every variant of a stream.
    fill_D: what fills the corners rotated in; None is 0.

  Returns:
    [B, D], as `rotate_by`.
  """
  u_B = jax.random.uniform(key, (x_BxD.shape[0],), x_BxD.dtype, -1.0, 1.0)
  return rotate_by(x_BxD, feature_shape, jnp.deg2rad(degrees) * u_B, fill_D)


def augment(rules: Rules, hp: Hparams, x_BxD: jax.Array, key: jax.Array,
            extras: Extras | None) -> jax.Array:
  """The training features of one variant: shifted, rotated, cropped and mirrored images, then
  Gaussian noise.

  A shift (a rotation) moves the image as its raw pixels would move, blank (raw 0) pixels
  coming in: each
  pixel keeps the standardization of the column it comes from, so a rarely inked border
  column (tiny std) is not blown up by the ink moved into it, as standardizing moved raw
  pixels would. Both are drawn from the minibatch key alone, so a seed gets the same
  perturbations whatever else the sweep holds; without `shift` / `input_noise` in `hp["data"]`
  this is `x_BxD` itself.
  """
  data = hp["data"]
  for name in ("shift", "rotate", "crop", "flip"):
    if name in data and (rules.feature_shape is None or len(rules.feature_shape) < 2):
      raise ConfigError(f"{name} needs image-shaped data (feature_shape of rank >= 2), the data "
                        f"has feature_shape {rules.feature_shape}; valid choices: {name}=0")
  if "shift" in data:
    x_BxD = shift_images(x_BxD, rules.feature_shape, data["shift"],
                         jax.random.fold_in(key, _SHIFT_SALT), extras.background_D)
  if "rotate" in data:
    x_BxD = rotate_images(x_BxD, rules.feature_shape, data["rotate"],
                          jax.random.fold_in(key, _ROTATE_SALT), extras.background_D)
  if "crop" in data:
    x_BxD = crop_images(x_BxD, rules.feature_shape, data["crop"],
                        jax.random.fold_in(key, _CROP_SALT))
  if "flip" in data:
    x_BxD = flip_images(x_BxD, rules.feature_shape, data["flip"],
                        jax.random.fold_in(key, _FLIP_SALT))
  if "input_noise" in data:
    noise_BxD = jax.random.normal(jax.random.fold_in(key, _NOISE_SALT), x_BxD.shape)
    x_BxD = x_BxD + data["input_noise"] * noise_BxD
  return x_BxD


def _num_outputs(rules: Rules, params, x_BxD: jax.Array, hp: Hparams) -> int:
  """K, the model's outputs, from shapes alone (traced nothing, compiled nothing)."""
  out = jax.eval_shape(
      lambda p, x, h: apply_model(rules.model, p, x, None, False, h), params, x_BxD,
      hp["model"])
  return out.shape[-1]


def training_losses(rules: Rules, params, hp: Hparams, x_BxD, y_B, key, extras: Extras | None):
  """Per-example training loss and correctness `([B], [B])` of one variant on a minibatch.

  The data axes (label noise, shifts, input noise) and label smoothing act here, in training
  only; without them this is `example_losses` on the minibatch as it is.
  """
  x_BxD = augment(rules, hp, x_BxD, key, extras)
  loss = rules.loss
  label_noise, smoothing = hp["data"].get("label_noise"), hp["loss"].get("label_smoothing")
  if label_noise is not None or smoothing is not None:
    if not rules.classification or rules.loss is not None:
      raise ConfigError("label_noise and label_smoothing need classification with the built-in "
                        "cross-entropy; valid choices: leave them at 0")
    num_classes = _num_outputs(rules, params, x_BxD, hp)
  if label_noise is not None:
    y_B = noisy_labels(y_B, extras.flip_u_B, extras.flip_r_B, label_noise, num_classes)
  if smoothing is not None:
    loss = lambda out_BxK, y_B: optax.softmax_cross_entropy(
        out_BxK, optax.smooth_labels(jax.nn.one_hot(y_B, num_classes), smoothing))
  return example_losses(rules.model, rules.classification, params, x_BxD, y_B, key, True,
                        loss=loss, hparams=hp["model"])


def batch_extras(hparams: Hparams, data: DataArrays, fold, idx_B,
                 flips: tuple[jax.Array, jax.Array] | None) -> Extras | None:
  """What the data axes in `hparams["data"]` need of rows `idx_B` (`Extras`); None for none.

  Args:
    hparams: the points (only their keys are read).
    data, fold, idx_B: the data, the fold and the minibatch's rows.
    flips: the stream's `label_flips`, or None without label noise.
  """
  moves = "shift" in hparams["data"] or "rotate" in hparams["data"]
  if not moves and flips is None:
    return None
  background = {}
  if moves:
    background = {"background_D": -data.mean[fold] / data.std[fold]}
  flip = {} if flips is None else {"flip_u_B": flips[0][idx_B], "flip_r_B": flips[1][idx_B]}
  return Extras(**background, **flip)
