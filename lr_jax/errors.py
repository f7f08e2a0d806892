"""The one error users see for bad input."""


class ConfigError(ValueError):
  """Bad input (a flag, a file, a value), found before any compilation.

  Its message is one line that names the bad value and the valid choices; the scripts print
  it as `error: <message>` and exit with status 2.
  """
