"""A demo data set that `train-kit data <name>` builds: its options are the fields of a pydantic model
(each a flag, as a training run's are), and `build` writes the set and says what it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DemoData"]


class DemoData(BaseModel):
    """A data set built from data that ships in packages; the docstring of a subclass is its help."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    older_names: ClassVar[tuple[str, ...]] = ()
    """Other `train-kit data` names that build it too, kept for the scripts that use them."""

    out: Path = Field(description="folder to create")

    def build(self) -> str:
        """Write the data set into `out`; return what to tell the user about it."""
        raise NotImplementedError
