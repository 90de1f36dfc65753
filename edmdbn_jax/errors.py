"""Errors raised on bad user input.

Every error names the offending file or clip and says what to do, so a user
with a licensed dataset can fix their tree without reading our code.
"""


class EdmdbnError(Exception):
  """Base class of the toolkit's user-facing errors."""


class DataError(EdmdbnError, ValueError):
  """Input data are missing, malformed or inconsistent."""


class MissingFrameError(DataError):
  """A frame a clip needs is not on disk or cannot be decoded."""


class NoFaceError(DataError):
  """Face detection found no face where one is required."""


class AnnotationError(DataError):
  """An annotation row or workbook cannot be interpreted."""


class ConfigError(EdmdbnError, ValueError):
  """A configuration or flag combination is invalid."""


class CheckpointError(EdmdbnError, ValueError):
  """A checkpoint does not fit the model or run it is used with."""
