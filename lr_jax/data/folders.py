"""Reading a folder of images, one sub-folder per class, into arrays (`read_folder`).

    DIR/<class>/*.png                           one pool, split as `DataConfig` says
    DIR/train/<class>/*.png, DIR/val/<class>/   given splits: train with val and/or test
    DIR/test/<class>/                           (`Dataset.num_val`, `num_test`)

Class names are the sorted class-folder names, the same in every split; class c is the c-th.
Images are read with Pillow (PNG and JPEG only; RGB to grayscale by ITU-R 601-2 luma), resized
bilinearly if asked. Every entry must be what the layout expects: a non-hidden file where a class
folder belongs, a folder inside a class folder, or a file that is not .png, .jpg or .jpeg is
refused naming it, never skipped (a stray file is more often a mistake than decoration). Hidden
entries, those whose name starts with "." (.DS_Store, .ipynb_checkpoints), are ignored
everywhere.

`read_images` reads the images a saved model predicts on (`experiments.predict --images=DIR`):
every image file in a folder and its sub-folders, decoded exactly as `read_folder` decodes a
training image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from lr_jax.config import check_choice, check_positive, check_type
from lr_jax.config.data import COLORS
from lr_jax.errors import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLIT_FOLDERS = ("train", "val", "test")
_FORMATS = ("PNG", "JPEG")  # What the extensions promise: a GIF named .png is refused.
_PIL_MODES = dict(zip(COLORS, ("L", "RGB")))
# Pillow converts these (16-bit and 32-bit grayscale) to 8 bits by clipping, not scaling.
_WIDE_MODES = ("I", "F")
_LAYOUT = ("DIR/<class>/*.png, or DIR/train/<class>/ beside DIR/val/<class>/ and/or "
           "DIR/test/<class>/")


class Split(NamedTuple):
  """The images of one split, read."""

  folder: str      # the folder of its class folders
  x: np.ndarray    # [N, H, W, C] float32 pixels in [0, 1]
  y: np.ndarray    # [N] int32 class ids


class ImageFolder(NamedTuple):
  """A folder of images as read, before `Dataset` checks and encodes it.

  Attributes:
    class_names: the class folders' names, sorted; class c is `class_names[c]`.
    parts: the splits found, "train" first, then "val" and "test" if given.
  """

  class_names: tuple[str, ...]
  parts: dict[str, Split]


def is_hidden(name: str) -> bool:
  """Whether a folder entry is ignored: its name starts with "." (.DS_Store, ._x.png)."""
  return name.startswith(".")


def _entries(path: str) -> tuple[list[str], list[str]]:
  """The sorted non-hidden (folders, files) directly in `path`."""
  try:
    names = sorted(n for n in os.listdir(path) if not is_hidden(n))
  except OSError as e:
    raise ConfigError(
        f"cannot read image folder {path!r}: {e.strerror or type(e).__name__}") from None
  folders = [n for n in names if os.path.isdir(os.path.join(path, n))]
  return folders, [n for n in names if n not in folders]


def _no_files(path: str, files: list[str]) -> None:
  """Refuses a (non-hidden) file where only class or split folders belong."""
  if files:
    raise ConfigError(
        f"{os.path.join(path, files[0])!r} is a file beside the class folders of {path!r}; "
        f"every image goes in a class folder ({_LAYOUT}); move it, or hide it (a name "
        "starting with '.')")


def _split_folders(path: str) -> dict[str, str]:
  """The layout of `path`: split name -> its folder ({"train": path} without given splits).

  Raises:
    ConfigError: not a folder; a file beside the folders; split folders mixed with others.
  """
  if not os.path.isdir(path):
    what = "does not exist" if not os.path.exists(path) else "is not a folder"
    raise ConfigError(f"image folder {path!r} {what}; give a folder laid out as {_LAYOUT}")
  folders, files = _entries(path)
  _no_files(path, files)
  splits = [f for f in folders if f in SPLIT_FOLDERS]
  if "train" not in splits or len(splits) < 2:
    return {"train": path}  # Class folders (one may be named "val", a class like another).
  others = [f for f in folders if f not in SPLIT_FOLDERS]
  if others:
    raise ConfigError(
        f"image folder {path!r} holds the split folders {', '.join(splits)} and also "
        f"{others[0]!r}; give only split folders (train, val, test), each of class folders, "
        "or only class folders")
  return {s: os.path.join(path, s) for s in SPLIT_FOLDERS if s in splits}


def _class_files(path: str) -> dict[str, list[str]]:
  """Class name -> the sorted image paths of its folder, for the class folders of `path`.

  Raises:
    ConfigError: a file beside the class folders, a sub-folder or a file of another kind in a
      class folder, an empty class folder.
  """
  classes, files = _entries(path)
  _no_files(path, files)
  out = {}
  for name in classes:
    folder = os.path.join(path, name)
    inner, images = _entries(folder)
    if inner:
      raise ConfigError(
          f"class folder {folder!r} holds the folder {inner[0]!r}; images go directly in their "
          "class folder (hide it with a name starting with '.' to keep it)")
    for image in images:
      _check_image_name(os.path.join(folder, image))
    if not images:
      raise ConfigError(f"class folder {folder!r} holds no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images")
    out[name] = [os.path.join(folder, image) for image in images]
  return out


def _check_image_name(path: str) -> None:
  """Refuses a (non-hidden) file whose extension is not an image's."""
  if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS:
    raise ConfigError(
        f"{path!r} is not an image file; valid extensions: {', '.join(IMAGE_EXTENSIONS)} "
        "(hidden files, named '.*', are ignored)")


def _image_size(image_size) -> tuple[int, int] | None:
  """`image_size` as (height, width): an int is a square's side."""
  image_size = check_type(image_size, int | tuple[int, int] | None, "image_size")
  if image_size is None:
    return None
  sides = (image_size, image_size) if isinstance(image_size, int) else image_size
  for side in sides:
    check_positive("image_size", side, integer=True)
  return sides


def _is_wide(mode: str) -> bool:
  return mode in _WIDE_MODES or mode.startswith("I;")


def _read_image(path: str, mode: str, size: tuple[int, int] | None) -> np.ndarray:
  """One image's pixels as [H, W] (mode "L") or [H, W, 3] ("RGB") uint8, resized to `size`."""
  try:
    with Image.open(path, formats=_FORMATS) as image:
      image.load()
      found = image.mode
      if not _is_wide(found):
        image = image.convert(mode)
        if size is not None and image.size != (size[1], size[0]):
          image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # (width, height)
        pixels = np.asarray(image, dtype=np.uint8)
  except UnidentifiedImageError:
    raise ConfigError(f"cannot read image {path!r}: not a PNG or JPEG image") from None
  # Pillow's decoders raise any of these for a broken file; OSError also for permissions.
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    reason = getattr(e, "strerror", None) or " ".join(str(e).split()) or type(e).__name__
    raise ConfigError(f"cannot read image {path!r}: {reason}") from None
  if _is_wide(found):
    raise ConfigError(
        f"image {path!r} has more than 8 bits per pixel (mode {found}), which Pillow would "
        "clip; save it with 8 bits per channel")
  return pixels


def _mixed_sizes(a: str, shape_a: tuple[int, ...], b: str, shape_b: tuple[int, ...]
                 ) -> ConfigError:
  (h0, w0), (h1, w1) = shape_a[:2], shape_b[:2]
  return ConfigError(
      f"images differ in size: {a!r} is {h0}x{w0}, {b!r} is {h1}x{w1} (height x width); pass "
      f"image_size (e.g. image_size={h0}, --image_size={h0}) to resize them all")


def _read_split(files: dict[str, list[str]], class_ids: dict[str, int], mode: str,
                size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
  """The images of one split as (x [N, H, W, C] float32 in [0, 1], y [N] int32).

  Raises:
    ConfigError: an unreadable image; without `size`, one whose size is not the first's.
  """
  pixels, labels, first = [], [], ""
  for name, paths in files.items():
    for path in paths:
      image = _read_image(path, mode, size)
      if pixels and image.shape != pixels[0].shape:
        raise _mixed_sizes(first, pixels[0].shape, path, image.shape)
      first = first or path
      pixels.append(image)
      labels.append(class_ids[name])
  return _pixels_to_x(pixels), np.array(labels, np.int32)


def _pixels_to_x(pixels: list[np.ndarray]) -> np.ndarray:
  """Images of one size from `_read_image` as [N, H, W, C] float32 in [0, 1]."""
  x = np.stack(pixels)
  if x.ndim == 3:
    x = x[..., None]  # Grayscale: one channel.
  return x.astype(np.float32) / np.float32(255)


def _check_classes(path: str, splits: dict[str, dict[str, list[str]]]) -> tuple[str, ...]:
  """The class names, the same in every split and at least two.

  Raises:
    ConfigError: a split's class folders differ from train's, fewer than two classes.
  """
  names = tuple(splits["train"])
  for name, files in splits.items():
    if tuple(files) != names:
      missing = [c for c in names if c not in files]
      extra = [c for c in files if c not in names]
      what = [f"missing {', '.join(map(repr, missing))}" if missing else "",
              f"extra {', '.join(map(repr, extra))}" if extra else ""]
      raise ConfigError(
          f"the class folders of {os.path.join(path, name)!r} differ from those of "
          f"{os.path.join(path, 'train')!r}: {'; '.join(w for w in what if w)}; every split "
          "needs the same class folders")
  if len(names) < 2:
    found = f"only the class folder {names[0]!r}" if names else "no class folders"
    where = path if len(splits) == 1 else os.path.join(path, "train")
    raise ConfigError(f"image folder {where!r} has {found}; classification needs at least 2 "
                      f"classes, one folder each ({_LAYOUT})")
  return names


def read_folder(path: str | os.PathLike, *, image_size: int | Sequence[int] | None = None,
                color: str = "grayscale") -> ImageFolder:
  """Reads a folder of images, one sub-folder per class, as float32 pixels in [0, 1].

  Args:
    path: the folder, laid out as `DIR/<class>/*.png` (or .jpg, .jpeg), or with given splits
      as `DIR/train/<class>/` and `DIR/val/<class>/` and/or `DIR/test/<class>/`, each with
      the same class folders.
    image_size: None keeps the images' size (then all must have one size); an int resizes
      each to a square of that side, (height, width) to that shape (bilinear, with Pillow).
    color: "grayscale" (one channel) or "rgb" (three), whatever the files hold.

  Returns:
    The class names and each split's [N, H, W, C] pixels and [N] class ids.

  Raises:
    ConfigError: one line naming the folder or file: an unknown color or a bad image_size, not
      a folder of class folders, an unexpected entry, an empty class folder, fewer than two
      classes, an unreadable image, images of mixed sizes without image_size, splits with
      different class folders.
  """
  path = os.fspath(path)
  check_choice("color", color, COLORS)
  size = _image_size(image_size)
  layout = _split_folders(path)
  splits = {name: _class_files(folder) for name, folder in layout.items()}
  names = _check_classes(path, splits)
  class_ids = {c: i for i, c in enumerate(names)}
  parts = {name: Split(layout[name], *_read_split(files, class_ids, _PIL_MODES[color], size))
           for name, files in splits.items()}
  train = parts["train"]
  for name, part in parts.items():
    if part.x.shape[1:] != train.x.shape[1:]:
      raise _mixed_sizes(splits["train"][names[0]][0], train.x.shape[1:],
                         splits[name][names[0]][0], part.x.shape[1:])
  return ImageFolder(names, parts)


def image_files(path: str | os.PathLike) -> tuple[str, ...]:
  """The image files in folder `path` and its sub-folders (any depth), sorted, relative to it.

  Hidden entries (a name starting with ".") are skipped, as `read_folder` skips them, folders
  included; any other file that is not .png, .jpg or .jpeg is refused.

  Returns:
    The files' paths relative to `path` (joined with `os.sep`), sorted as strings.

  Raises:
    ConfigError: `path` is not a folder or cannot be read, a non-image file, no image at all.
  """
  path = os.fspath(path)
  if not os.path.isdir(path):
    what = "does not exist" if not os.path.exists(path) else "is not a folder"
    raise ConfigError(f"image folder {path!r} {what}; give a folder of images "
                      f"({', '.join(IMAGE_EXTENSIONS)})")
  found, pending = [], [""]
  while pending:
    rel = pending.pop()
    folders, files = _entries(os.path.join(path, rel) if rel else path)
    for name in files:
      _check_image_name(os.path.join(path, rel, name))
      found.append(os.path.join(rel, name))
    pending.extend(os.path.join(rel, name) for name in folders)
  if not found:
    raise ConfigError(f"image folder {path!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}), "
                      "in it or in its sub-folders")
  return tuple(sorted(found))


def read_images(path: str | os.PathLike, *, image_size: int | Sequence[int] | None = None,
                color: str = "grayscale", expected_size: tuple[int, int] | None = None
                ) -> tuple[tuple[str, ...], np.ndarray]:
  """Reads every image in a folder and its sub-folders as float32 pixels in [0, 1].

  Each image is decoded, converted and resized exactly as `read_folder` does for training, so
  the same file gives the same pixels: what a saved model predicts on (`experiments.predict
  --images=DIR`). Which files are read is `image_files`.

  Args:
    path: the folder.
    image_size: None keeps the images' size; an int resizes each to a square of that side,
      (height, width) to that shape (bilinear, with Pillow).
    color: "grayscale" (one channel) or "rgb" (three), whatever the files hold.
    expected_size: None, or the (height, width) every image must have once read (a model's
      feature shape); an image of another size is refused naming it, its size and this one.

  Returns:
    (the files' paths relative to `path`, sorted; [N, H, W, C] float32 pixels in that order).

  Raises:
    ConfigError: one line naming the folder or file: an unknown color or a bad image_size, not
      a folder, a non-image file, no images, an unreadable image, an image of another size than
      `expected_size`, or (without either size) images of mixed sizes.
  """
  path = os.fspath(path)
  check_choice("color", color, COLORS)
  size = _image_size(image_size)
  names = image_files(path)
  pixels = []
  for name in names:
    file = os.path.join(path, name)
    image = _read_image(file, _PIL_MODES[color], size)
    if expected_size is not None and image.shape[:2] != tuple(expected_size):
      (h, w), (eh, ew) = image.shape[:2], expected_size
      how = ("records no image_size to resize them to; resize it to that size" if size is None
             else f"image_size {size[0]}x{size[1]} does not give that size")
      raise ConfigError(f"image {file!r} is {h}x{w} (height x width); the model takes {eh}x{ew} "
                        f"images and {how}")
    if pixels and image.shape != pixels[0].shape:
      raise _mixed_sizes(os.path.join(path, names[0]), pixels[0].shape, file, image.shape)
    pixels.append(image)
  return names, _pixels_to_x(pixels)
