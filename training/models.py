"""Build a network for training: a torchvision ResNet body (random or a local weights file) under a
fresh head (classifiers, point regressors) or a fresh U-Net decoder (segmentation), or an AWD-LSTM.

Nothing is downloaded: pretrained weights come from a state-dict file the user names,
saved from torchvision's own model (`torch.save(resnet34(weights=...).state_dict(), path)`).
Each kind of network is one entry of a table keyed on its spec's (or module's) type.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel, TextClassifier, build_text_network
from serving.bundle.networks.cnn import CnnSpec, build_cnn, cnn_body, resnet
from serving.bundle.networks.unet import Unet, UnetSpec, build_unet
from serving.bundle.pipeline import NetworkSpec
from training.errors import ConfigError

__all__ = [
    "body_of",
    "cnn_layer_groups",
    "create_cnn",
    "create_model",
    "create_unet",
    "layer_groups",
    "text_layer_groups",
    "unet_layer_groups",
]


def create_model(spec: NetworkSpec, weights: Path | None = None) -> nn.Module:
    """The network of `spec`; with `weights`, a CNN or U-Net body starts from that state dict."""
    return _CREATORS[type(spec)](spec, weights)


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """The groups `freeze_to` and discriminative rates work on, for each kind of network."""
    return _GROUPS.get(type(model), cnn_layer_groups)(model)


def create_cnn(spec: CnnSpec, weights: Path | None = None) -> nn.Sequential:
    """The network of `spec`; with `weights`, its body starts from that torchvision state dict."""
    net = resnet(spec.arch)
    if weights is not None:
        _load_body_weights(net, weights, spec.arch)
    return build_cnn(spec, body=cnn_body(net))


def create_unet(spec: UnetSpec, weights: Path | None = None) -> Unet:
    """A U-Net whose encoder (with `weights`) starts from that torchvision state dict."""
    net = resnet(spec.arch)
    if weights is not None:
        _load_body_weights(net, weights, spec.arch)
    return build_unet(spec, body=cnn_body(net))


def _create_text(spec: AwdLstmSpec, weights: Path | None = None) -> nn.Module:
    if weights is not None:
        raise ConfigError("--weights is a torchvision body; a text network starts from --encoder")
    return build_text_network(spec)


def cnn_layer_groups(model: nn.Sequential) -> list[nn.Module]:
    """Three groups for freezing and discriminative rates: early body, late body, head.

    Early stages learn generic edges and textures and need the smallest rates; the head is new.
    """
    body = cast(nn.Sequential, model[0])
    return [body[:6], body[6:], model[1]]


def text_layer_groups(model: TextClassifier) -> list[nn.Module]:
    """ULMFiT's groups for gradual unfreezing: embedding with the first LSTM, each further LSTM, then
    the head. `freeze_to(-1)`, `freeze_to(-2)`, ... `unfreeze()` thaw them from the top."""
    rnns = list(model.encoder.rnns)
    return [nn.ModuleList([model.encoder.embedding, rnns[0]]), *rnns[1:], model.head]


def unet_layer_groups(model: Unet) -> list[nn.Module]:
    """Early encoder, late encoder, decoder: `freeze()` trains the decoder over a fixed encoder."""
    return [model.body[:6], model.body[6:], nn.ModuleList([model.ups, model.final])]


def body_of(model: nn.Module) -> nn.Sequential:
    """A CNN's or U-Net's ResNet body (its 8 children, torchvision's order)."""
    return model.body if isinstance(model, Unet) else cast(nn.Sequential, cast(nn.Sequential, model)[0])


def _load_body_weights(net: nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise ConfigError(f"--weights {path}: no such file (expected a torchvision {arch} state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "not a state dict"
        raise ConfigError(f"--weights {path}: not a readable PyTorch state dict ({err})") from err
    if not isinstance(state, dict):
        raise ConfigError(f"--weights {path}: holds a {type(state).__name__}, expected a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"--weights {path}: does not match torchvision's {arch} "
            f"(missing {missing[:3]}..., unexpected {result.unexpected_keys[:3]}...)"
        )


_CREATORS: dict[type, Callable[[Any, Path | None], nn.Module]] = {
    CnnSpec: create_cnn,
    UnetSpec: create_unet,
    AwdLstmSpec: _create_text,
}
_GROUPS: dict[type, Callable[[Any], list[nn.Module]]] = {
    Unet: unet_layer_groups,
    TextClassifier: text_layer_groups,
    LanguageModel: lambda model: [model],  # trained whole: its decoder shares the embedding's weights
}
