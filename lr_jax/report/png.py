"""Whether a file is a PNG: the signature check on the figures written."""


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: str) -> bool:
  """Whether `path` exists and starts with the PNG signature."""
  try:
    with open(path, "rb") as f:
      return f.read(8) == PNG_MAGIC
  except OSError:
    return False
