"""The networks a bundle can rebuild without the training kit, each described by a small spec.

A spec is plain data (`specs`, importable without torch), pickled with the weights: all a runtime
needs to construct the module before loading its state dict. `build(spec)` is the one way to do
that; `spec_problems` is how a loaded bundle checks that a spec can be right before anything is
built from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from serving.bundle.networks.specs import (
    NETWORK_SPECS,
    AwdLstmSpec,
    CnnSpec,
    HybridSpec,
    LinearSpec,
    NetworkSpec,
    NgramSpec,
    UnetSpec,
    outputs_of,
    spec_problems,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "NETWORK_SPECS",
    "AwdLstmSpec",
    "CnnSpec",
    "HybridSpec",
    "LinearSpec",
    "NetworkSpec",
    "NgramSpec",
    "UnetSpec",
    "build",
    "outputs_of",
    "spec_problems",
]


def build(spec: NetworkSpec) -> nn.Module:
    """The network of `spec`, with random weights (torch is imported here, not with the specs)."""
    from serving.bundle.networks.awd_lstm import build_text_network
    from serving.bundle.networks.cnn import build_cnn
    from serving.bundle.networks.hybrid import HybridClassifier
    from serving.bundle.networks.linear import build_linear
    from serving.bundle.networks.ngrams import NgramClassifier
    from serving.bundle.networks.unet import build_unet

    builders = {
        CnnSpec: build_cnn,
        UnetSpec: build_unet,
        AwdLstmSpec: build_text_network,
        NgramSpec: NgramClassifier,
        HybridSpec: HybridClassifier,
        LinearSpec: build_linear,
    }
    return builders[type(spec)](spec)  # type: ignore[operator]
