"""The type check of every config field (`check_fields`, `check_type`), normalizing it."""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import types
import typing
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from lr_jax.errors import ConfigError


@runtime_checkable
class DatasetLike(Protocol):
  """What a `DataConfig` takes besides a name or a path: a `lr_jax.Dataset` (`lr_jax.data`),
  recognised by its arrays and description, so the configs need not import the data layer."""

  name: str
  x: np.ndarray
  y: np.ndarray
  task: str
  feature_shape: tuple[int, ...]


def check_fields(config) -> None:
  """Checks every field of a config dataclass against its annotation, normalizing it in place.

  The one type check of every config (called first in each `__post_init__`): numpy and JAX
  numbers become Python `int`/`float`/`bool` and sequences (1-D arrays too) tuples, so a
  config stays hashable and JSON-able; an `os.PathLike` becomes a `str`. A string is never a
  sequence, a number never a bool, a float never an integer.

  Args:
    config: a dataclass instance (frozen or not) whose annotations are `bool`, `int`, `float`,
      `str`, a class, `X | None`, `tuple[X, ...]` or a fixed `tuple[X, Y]`, nested.

  Raises:
    ConfigError: one line naming `Class.field` (and the index inside a sequence), the
      expected type and the value given.
  """
  cls = type(config)
  for name, kind in _field_types(cls).items():
    value = check_type(getattr(config, name), kind, f"{cls.__name__}.{name}")
    object.__setattr__(config, name, value)


@functools.cache
def _field_types(cls) -> dict[str, object]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_type(value, kind, where: str):
  """Checks one value against a type, as `check_fields` checks a field.

  Args:
    value: the value given.
    kind: the type it must have (see `check_fields`), e.g. `float | None`.
    where: its name in the error message, e.g. "target".

  Returns:
    `value` normalized: Python numbers, tuples for sequences, `str` for a path.
  """
  if hasattr(value, "__array__") and not isinstance(value, (np.ndarray, np.generic)):
    value = np.asarray(value)  # A JAX array reads as numpy's.
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value[()]  # A 0-d array is its number.
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    element_error = None
    for option in args:
      if option is type(None):
        continue
      try:
        return check_type(value, option, where)
      except ConfigError as e:
        if typing.get_origin(option) is tuple and _is_sequence(value):
          element_error = e  # It names the bad element: says more than the union would.
    raise element_error or _type_error(where, kind, value)
  if origin is tuple:
    if not _is_sequence(value):
      raise _type_error(where, kind, value)
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(check_type(x, args[0], f"{where}[{i}]") for i, x in enumerate(items))
    if len(items) != len(args):
      raise _type_error(where, kind, value)
    return tuple(check_type(x, a, f"{where}[{i}]") for i, (x, a) in enumerate(zip(items, args)))
  is_bool = isinstance(value, (bool, np.bool_))
  if kind is bool and is_bool:
    return bool(value)
  if kind is int and isinstance(value, numbers.Integral) and not is_bool:
    return int(value)
  if kind is float and isinstance(value, numbers.Real) and not is_bool:
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
      # np.float32(0.1) is 0.10000000149 as a double; its shortest repr is what was meant.
      return float(str(value))
    return float(value)
  if kind is str and isinstance(value, (str, os.PathLike)):
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
  if origin is None and isinstance(kind, type) and kind not in (bool, int, float, str):
    if isinstance(value, kind):
      return value
  raise _type_error(where, kind, value)


def _is_sequence(value) -> bool:
  if isinstance(value, np.ndarray):
    return value.ndim == 1
  return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


_SINGULAR = {bool: "a bool (True or False)", int: "an integer", float: "a number", str: "a string",
             DatasetLike: "a Dataset"}
_PLURAL = {bool: "bools", int: "integers", float: "numbers", str: "strings"}


def _type_words(kind, plural: bool = False) -> str:
  """`int | None` -> "an integer or None"; `tuple[float, ...]` -> "a sequence of numbers"."""
  origin, args = typing.get_origin(kind), typing.get_args(kind)
  if origin in (typing.Union, types.UnionType):
    words = [_type_words(a, plural) for a in args if a is not type(None)]
    return " or ".join(words + ["None"] * (type(None) in args))
  if origin is tuple:
    if len(args) == 2 and args[1] is Ellipsis:
      return ("sequences" if plural else "a sequence") + f" of {_type_words(args[0], True)}"
    name = {2: "pair"}.get(len(args), f"{len(args)}-tuple")
    inner = ", ".join(_type_words(a) for a in args)
    return f"{name}s ({inner})" if plural else f"a {name} ({inner})"
  if plural:
    return _PLURAL.get(kind) or f"{getattr(kind, '__name__', kind)}s"
  name = getattr(kind, "__name__", str(kind))
  return _SINGULAR.get(kind) or ("an " if name[0] in "AEIOUaeiou" else "a ") + name


def _type_error(where: str, kind, value) -> ConfigError:
  shown = " ".join(repr(value).split())  # One line, also for a 2-D array.
  shown = shown if len(shown) <= 60 else shown[:57] + "..."
  return ConfigError(f"{where} must be {_type_words(kind)}, got {type(value).__name__} {shown}")
