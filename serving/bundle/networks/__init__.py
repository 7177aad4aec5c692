"""The networks a bundle can rebuild without the training kit, each described by a small spec.

A spec is plain data, pickled with the fp16 weights: all a runtime needs to construct the module
before loading its state dict. `build(spec)` is the one way to do that; `spec_problems` is how a
loaded bundle checks that a spec can be right before anything is built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from serving.bundle.networks.awd_lstm import AwdLstmSpec, build_text_network
from serving.bundle.networks.bodies import BODIES
from serving.bundle.networks.cnn import CnnSpec, build_cnn
from serving.bundle.networks.hybrid import HybridClassifier, HybridSpec
from serving.bundle.networks.linear import LinearSpec, build_linear
from serving.bundle.networks.ngrams import NgramClassifier, NgramSpec
from serving.bundle.networks.unet import UnetSpec, build_unet

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
    "spec_problems",
]

NetworkSpec = CnnSpec | UnetSpec | AwdLstmSpec | NgramSpec | HybridSpec | LinearSpec
NETWORK_SPECS: tuple[type, ...] = (CnnSpec, UnetSpec, AwdLstmSpec, NgramSpec, HybridSpec, LinearSpec)

_BUILDERS: dict[type, Callable[[Any], nn.Module]] = {
    CnnSpec: build_cnn,
    UnetSpec: build_unet,
    AwdLstmSpec: build_text_network,
    NgramSpec: NgramClassifier,
    HybridSpec: HybridClassifier,
    LinearSpec: build_linear,
}


def build(spec: NetworkSpec) -> nn.Module:
    """The network of `spec`, with random weights."""
    return _BUILDERS[type(spec)](spec)


def outputs_of(spec: NetworkSpec) -> int | None:
    """Outputs per item (per pixel, for a U-Net); None for a language model."""
    return spec.n_out if type(spec) in (CnnSpec, LinearSpec) else spec.n_classes  # type: ignore[union-attr]


def spec_problems(spec: object, outputs: int, vocab_size: int | None = None) -> list[str]:
    """Why `spec` cannot be the network of a bundle whose answers need `outputs` per item."""
    if type(spec) not in _BUILDERS:
        return [f"a network spec of an unknown type ({type(spec).__name__})"]
    arch = getattr(spec, "arch", None)
    if arch is not None and arch not in BODIES:
        return [f"an unknown architecture {arch!r}"]
    if not 1 <= getattr(spec, "hidden", 1) <= 65536:
        return [f"a network spec that cannot be right ({spec})"]
    problems = []
    if outputs_of(spec) != outputs:  # type: ignore[arg-type]
        problems.append(f"a network spec that cannot be right ({spec}; {outputs} outputs expected)")
    if vocab_size is not None and getattr(spec, "vocab_size", vocab_size) != vocab_size:
        problems.append(f"a network spec whose vocabulary ({spec}) is not its tokenizer's ({vocab_size})")
    return problems
