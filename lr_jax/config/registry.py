"""`Registry`: name -> entry, an unknown name one `ConfigError` line listing the valid ones."""

from __future__ import annotations

from lr_jax.config.checks import check_choice


class Registry(dict):
  """A registry (name -> entry) whose lookup of an unknown name is one `ConfigError` line
  listing the valid names, wherever the lookup happens (planning, a saved model, the API)."""

  def __init__(self, what: str, entries=()):
    super().__init__(entries)
    self.what = what

  def __missing__(self, name):
    check_choice(self.what, name, self)
