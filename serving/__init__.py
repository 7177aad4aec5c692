"""The serving microservice. Imports nothing from `training` (the one rule of DESIGN.md)."""

from serving.bundle import Bundle, BundleError, load_bundle

__all__ = ["Bundle", "BundleError", "load_bundle"]
