"""The network specs a bundle pickles, and their checks: plain data, no torch.

A spec is all a runtime needs to construct a network before loading its weights (`build` in this
package does that, with torch). The specs live apart from the modules that build them so that a
bundle unpickles, and is checked, on a host that runs it with ONNX Runtime alone.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ARCHS",
    "NETWORK_SPECS",
    "AwdLstmSpec",
    "CnnSpec",
    "HybridSpec",
    "LinearSpec",
    "NetworkSpec",
    "NgramSpec",
    "UnetSpec",
    "outputs_of",
    "spec_problems",
]

ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)
"""The image bodies' names: the keys of `serving.bundle.networks.bodies.BODIES` (a test holds them equal)."""


@dataclass(frozen=True)
class CnnSpec:
    """A body (`serving.bundle.networks.bodies`) and a pooled, fully connected head with `n_out`
    outputs."""

    arch: str
    n_out: int
    hidden: int = 512
    dropout: float = 0.5


@dataclass(frozen=True)
class UnetSpec:
    arch: str
    n_classes: int


@dataclass(frozen=True)
class AwdLstmSpec:
    vocab_size: int
    emb: int = 256
    hidden: int = 512
    layers: int = 3
    embed_p: float = 0.05
    input_p: float = 0.25
    hidden_p: float = 0.15
    output_p: float = 0.1
    n_classes: int | None = None
    """None: a language model (next-token logits); else a classifier with this many classes."""


@dataclass(frozen=True)
class NgramSpec:
    vocab_size: int
    n_classes: int
    buckets: int = 1 << 20
    """Hashed bigram slots. About 200,000 distinct bigrams occur in 1,200 reviews; at 2^20 slots a few
    share one, which cost nothing measurable (0.873 against 0.870 at 4 M)."""

    @property
    def features(self) -> int:
        return self.vocab_size + self.buckets

    @property
    def columns(self) -> int:
        """The table's width: two classes need one column (softmax sees only their difference)."""
        return 1 if self.n_classes == 2 else self.n_classes


@dataclass(frozen=True)
class HybridSpec:
    lstm: AwdLstmSpec
    ngrams: NgramSpec

    @property
    def vocab_size(self) -> int:
        return self.lstm.vocab_size

    @property
    def n_classes(self) -> int | None:
        return self.lstm.n_classes


@dataclass(frozen=True)
class LinearSpec:
    """Mean over the pixels of each of 3 channels, then one Linear layer with `n_out` outputs."""

    n_out: int


NetworkSpec = CnnSpec | UnetSpec | AwdLstmSpec | NgramSpec | HybridSpec | LinearSpec
NETWORK_SPECS: tuple[type, ...] = (CnnSpec, UnetSpec, AwdLstmSpec, NgramSpec, HybridSpec, LinearSpec)


def outputs_of(spec: NetworkSpec) -> int | None:
    """Outputs per item (per pixel, for a U-Net); None for a language model."""
    return spec.n_out if type(spec) in (CnnSpec, LinearSpec) else spec.n_classes  # type: ignore[union-attr]


def spec_problems(spec: object, outputs: int, vocab_size: int | None = None) -> list[str]:
    """Why `spec` cannot be the network of a bundle whose answers need `outputs` per item."""
    if type(spec) not in NETWORK_SPECS:
        return [f"a network spec of an unknown type ({type(spec).__name__})"]
    arch = getattr(spec, "arch", None)
    if arch is not None and arch not in ARCHS:
        return [f"an unknown architecture {arch!r}"]
    if not 1 <= getattr(spec, "hidden", 1) <= 65536:
        return [f"a network spec that cannot be right ({spec})"]
    problems = []
    if outputs_of(spec) != outputs:  # type: ignore[arg-type]
        problems.append(f"a network spec that cannot be right ({spec}; {outputs} outputs expected)")
    if vocab_size is not None and getattr(spec, "vocab_size", vocab_size) != vocab_size:
        problems.append(f"a network spec whose vocabulary ({spec}) is not its tokenizer's ({vocab_size})")
    return problems
