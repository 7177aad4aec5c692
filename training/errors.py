"""Errors the training kit raises about a user's data or configuration.

    TrainingError         anything the user can fix; the CLI prints it without a traceback
    ├── DataError         a file, CSV row or image is missing or malformed
    │   └── LabelError    a label is empty, or unknown to the training split
    ├── ConfigError       a run's options or config file are invalid
    └── ExportError       the exported model does not reproduce the trained one

Messages state the fact, the value and the fix, naming the file and line where there is one:
"labels.csv line 17: tag list is empty".
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "ExportError", "LabelError", "TrainingError"]


class TrainingError(Exception):
    """Base class: an error in the user's data or configuration, not a bug in the kit."""


class DataError(TrainingError):
    """A data file, CSV row or image is missing or malformed."""


class LabelError(DataError):
    """A label is empty, or absent from the training split."""


class ConfigError(TrainingError):
    """A run's options or config file are invalid."""


class ExportError(TrainingError):
    """The exported model does not reproduce the trained one; nothing was published."""
