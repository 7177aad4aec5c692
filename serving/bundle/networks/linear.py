"""The cheapest network a bundle can hold: a linear map of each image's mean colour.

It answers in microseconds, so a server serving it spends its time on itself: `bench/overhead.py`
measures the server's own cost per request with it.
"""

from __future__ import annotations

from torch import nn

from serving.bundle.networks.specs import LinearSpec

__all__ = ["LinearSpec", "build_linear"]


def build_linear(spec: LinearSpec) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, spec.n_out))
