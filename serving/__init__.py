"""The serving microservice. Imports nothing from `training` (the one rule of DESIGN.md).

`Bundle`, `BundleError` and `load_bundle` load on first use: `serve-kit --help`, `settings` and
`health` (the container's probe, every few seconds) never pay for the bundle's imports."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.bundle import Bundle, BundleError, load_bundle

try:
    __version__ = version("train-serve-kit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["Bundle", "BundleError", "__version__", "load_bundle"]


def __getattr__(name: str) -> Any:
    if name in ("Bundle", "BundleError", "load_bundle"):
        import serving.bundle

        return getattr(serving.bundle, name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
