"""Build a network for training: a body (ResNet or EfficientNet-Lite; random, or ImageNet weights
found offline by `training.pretrained`) under a fresh head (classifiers, point regressors) or a fresh
U-Net decoder (segmentation), or an AWD-LSTM.

Each kind of network is one entry of a table keyed on its spec's (or module's) type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from torch import nn

from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel, TextClassifier, build_text_network
from serving.bundle.networks.bodies import Stages, body_for
from serving.bundle.networks.cnn import CnnSpec, build_cnn
from serving.bundle.networks.unet import Unet, UnetSpec, build_unet
from serving.bundle.pipeline import NetworkSpec
from training.errors import ConfigError
from training.pretrained import load_pretrained_body

__all__ = [
    "Pretrained",
    "body_of",
    "cnn_layer_groups",
    "create_cnn",
    "create_model",
    "create_unet",
    "layer_groups",
    "text_layer_groups",
    "unet_layer_groups",
]


@dataclass(frozen=True)
class Pretrained:
    """Start the body from ImageNet weights: `weights` if named, else the ones found offline."""

    weights: Path | None = None


def create_model(spec: NetworkSpec, pretrained: Pretrained | None = None) -> nn.Module:
    """The network of `spec`; with `pretrained`, a CNN's or U-Net's body starts from ImageNet weights."""
    return _CREATORS[type(spec)](spec, pretrained)


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """The groups `freeze_to` and discriminative rates work on, for each kind of network."""
    return _GROUPS.get(type(model), cnn_layer_groups)(model)


def _body(arch: str, pretrained: Pretrained | None) -> Stages:
    body = body_for(arch).build()
    if pretrained is not None:
        load_pretrained_body(body, arch, pretrained.weights)
    return body


def create_cnn(spec: CnnSpec, pretrained: Pretrained | None = None) -> nn.Sequential:
    """A body (pretrained or not) under a new head."""
    return build_cnn(spec, body=_body(spec.arch, pretrained))


def create_unet(spec: UnetSpec, pretrained: Pretrained | None = None) -> Unet:
    """A U-Net whose encoder (pretrained or not) is the classifiers' body."""
    return build_unet(spec, body=_body(spec.arch, pretrained))


def _create_text(spec: AwdLstmSpec, pretrained: Pretrained | None = None) -> nn.Module:
    if pretrained is not None:
        raise ConfigError("--weights is for image bodies; a text network starts from --encoder")
    return build_text_network(spec)


def cnn_layer_groups(model: nn.Sequential) -> list[nn.Module]:
    """Three groups for freezing and discriminative rates: early body, late body, head.

    Early stages learn generic edges and textures and need the smallest rates; the head is new.
    """
    return [*cast(Stages, model[0]).early_and_late(), model[1]]


def text_layer_groups(model: TextClassifier) -> list[nn.Module]:
    """ULMFiT's groups for gradual unfreezing: embedding with the first LSTM, each further LSTM, then
    the head. `freeze_to(-1)`, `freeze_to(-2)`, ... `unfreeze()` thaw them from the top."""
    rnns = list(model.encoder.rnns)
    return [nn.ModuleList([model.encoder.embedding, rnns[0]]), *rnns[1:], model.head]


def unet_layer_groups(model: Unet) -> list[nn.Module]:
    """Early encoder, late encoder, decoder: `freeze()` trains the decoder over a fixed encoder."""
    return [*cast(Stages, model.body).early_and_late(), nn.ModuleList([model.ups, model.final])]


def body_of(model: nn.Module) -> nn.Sequential:
    """A CNN's or U-Net's body (its stages, input first)."""
    return model.body if isinstance(model, Unet) else cast(nn.Sequential, cast(nn.Sequential, model)[0])


_CREATORS: dict[type, Callable[[Any, Pretrained | None], nn.Module]] = {
    CnnSpec: create_cnn,
    UnetSpec: create_unet,
    AwdLstmSpec: _create_text,
}
_GROUPS: dict[type, Callable[[Any], list[nn.Module]]] = {
    Unet: unet_layer_groups,
    TextClassifier: text_layer_groups,
    LanguageModel: lambda model: [model],  # trained whole: its decoder shares the embedding's weights
}
