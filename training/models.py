"""Build a network for training: a torchvision ResNet body (random or a local weights file) under a
fresh head (classifiers, point regressors) or a fresh U-Net decoder (segmentation).

Nothing is downloaded: pretrained weights come from a state-dict file the user names,
saved from torchvision's own model (`torch.save(resnet34(weights=...).state_dict(), path)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from serving.bundle.networks.awd_lstm import AwdLstmSpec, LanguageModel, TextClassifier, build_text_network
from serving.bundle.networks.cnn import CnnSpec, build_cnn, cnn_body, resnet
from serving.bundle.networks.unet import Unet, UnetSpec, build_unet
from serving.bundle.pipeline import Network, NetworkSpec
from training.checkpoint import atomic_save, load_checkpoint
from training.errors import ConfigError

__all__ = [
    "cnn_layer_groups",
    "create_cnn",
    "create_model",
    "layer_groups",
    "save_body_weights",
    "spec_from_meta",
    "text_layer_groups",
    "unet_layer_groups",
]


def create_model(spec: NetworkSpec, weights: Path | None = None) -> nn.Module:
    """The network of `spec` (CNN or U-Net); with `weights`, its body starts from that state dict."""
    if isinstance(spec, AwdLstmSpec):
        return build_text_network(spec)
    if isinstance(spec, UnetSpec):
        net = resnet(spec.arch)
        if weights is not None:
            _load_body_weights(net, weights, spec.arch)
        return build_unet(spec, body=cnn_body(net))
    return create_cnn(spec, weights)


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """The groups `freeze_to` and discriminative rates work on, for each kind of network."""
    if isinstance(model, Unet):
        return unet_layer_groups(model)
    if isinstance(model, TextClassifier):
        return text_layer_groups(model)
    if isinstance(model, LanguageModel):
        return [model]  # trained whole: its decoder shares the embedding's weights
    return cnn_layer_groups(cast(nn.Sequential, model))


def spec_from_meta(meta: dict[str, Any]) -> NetworkSpec:
    """The spec a checkpoint was trained with: a U-Net for segmentation, AWD-LSTM for text, else a CNN."""
    if meta["task"] == "sentiment":
        return AwdLstmSpec(**meta["spec"])
    return UnetSpec(**meta["spec"]) if meta["task"] == "segmentation" else CnnSpec(**meta["spec"])


def create_cnn(spec: CnnSpec, weights: Path | None = None) -> nn.Sequential:
    """The network of `spec`; with `weights`, its body starts from that torchvision state dict."""
    net = resnet(spec.arch)
    if weights is not None:
        _load_body_weights(net, weights, spec.arch)
    return build_cnn(spec, body=cnn_body(net))


def save_body_weights(checkpoint: Path, to: Path) -> None:
    """A stage's body as torchvision names (`conv1.weight`, `layer4.1.bn2.bias`, ...), so that
    `--weights` can start another task from it: offline transfer learning."""
    state = load_checkpoint(checkpoint)
    model = Network(spec_from_meta(state["meta"]), state["model"]).build()
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    body = {
        f"{names[int(index)]}.{rest}": tensor
        for key, tensor in _body(model).state_dict().items()
        for index, rest in [key.split(".", 1)]
    }
    to.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(body, to)


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


def _body(model: nn.Module) -> nn.Sequential:
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
