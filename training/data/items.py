"""What labellers and splitters need of a list of items: the items, their CSV rows, their origins.

A Protocol, so the answers to "how to split" and "how to label" depend on no concrete list, and the
data block chain (`training.data.block`) can use them without an import circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

__all__ = ["Items"]


class Items(Protocol):
    @property
    def items(self) -> list[Path] | list[str]: ...

    @property
    def rows(self) -> list[dict[str, str]] | None: ...

    def __len__(self) -> int: ...

    def origin(self, i: int) -> str:
        """Where item `i` was named, for error messages."""
        ...
