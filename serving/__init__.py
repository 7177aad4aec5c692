"""The serving microservice. Imports nothing from `training` (the one rule of DESIGN.md)."""

from importlib.metadata import PackageNotFoundError, version

from serving.bundle import Bundle, BundleError, load_bundle

try:
    __version__ = version("train-serve-kit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["Bundle", "BundleError", "__version__", "load_bundle"]
