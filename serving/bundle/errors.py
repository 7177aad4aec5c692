"""The bundle package's one error: what a caller catches when a bundle cannot be used."""

from __future__ import annotations

__all__ = ["BundleError"]


class BundleError(Exception):
    """A bundle is missing, tampered with, unsafe, or of a format this code cannot read."""
