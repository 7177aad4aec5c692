"""The pretrained bodies a head or a U-Net can sit on, and what each needs known about it.

A body is a `Sequential` of stages, input first. Everything that differs between a ResNet and an
EfficientNet-Lite — how to build it, which stages feed a U-Net's skip connections, where the layer
groups split, the input scaling its ImageNet weights expect — is one `Body` entry here, so the
networks, the training kit and the server ask this table and never branch on an architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torchvision import models

from serving.bundle.networks.efficientnet import HEAD_CHANNELS, LITE_SCALING, efficientnet_lite, stage_sizes

__all__ = [
    "BODIES",
    "IMAGENET_STATS",
    "MINUS_ONE_TO_ONE",
    "RESNET_STAGES",
    "Body",
    "Stages",
    "Stats",
    "body_for",
    "resnet_body",
]

Stats = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel (mean, std) an input is normalized with."""

IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""torchvision's ImageNet mean and std: what its ResNet weights were trained on."""
MINUS_ONE_TO_ONE: Stats = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
"""(x - 0.5) / 0.5: the scaling TensorFlow's EfficientNet-Lite weights were trained on."""

_RESNETS: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
}


class Stages(nn.Sequential):
    """A body: its stages, input first, and where its early layer group ends (`split`), which is
    what freezing and discriminative rates need to know of it."""

    def __init__(self, *stages: nn.Module, split: int) -> None:
        super().__init__(*stages)
        self.split = split

    def __getitem__(self, index: int | slice) -> nn.Module:  # type: ignore[override]
        """A slice is a plain `Sequential` (it has no split of its own); an index, that stage."""
        if isinstance(index, slice):
            return nn.Sequential(*list(self)[index])
        return super().__getitem__(index)

    def early_and_late(self) -> tuple[nn.Sequential, nn.Sequential]:
        """The two layer groups of the body: generic edges and textures, then the task's features."""
        stages = list(self)
        return nn.Sequential(*stages[: self.split]), nn.Sequential(*stages[self.split :])


RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
"""torchvision's names of a ResNet's convolutional stages: the body's children, in order."""


def resnet_body(arch: str) -> Stages:
    """A torchvision ResNet's convolutional stages (`RESNET_STAGES`) with random weights. Nothing is
    downloaded."""
    net = _RESNETS[arch](weights=None)
    return Stages(*(getattr(net, name) for name in RESNET_STAGES), split=6)


@dataclass(frozen=True)
class Body:
    """One architecture, as the heads, the U-Net and the learner see it."""

    build: Callable[[], Stages]
    """The body with random weights."""
    skips: tuple[int, int, int, int]
    """Children whose outputs a U-Net's decoder joins: the last at strides 2, 4, 8 and 16."""
    skip_channels: tuple[int, int, int, int]
    channels: int
    """Channels out of the last child (stride 32)."""
    stats: Stats
    """The input scaling its pretrained weights expect: what a pretrained run normalizes with."""


def _resnet(arch: str, channels: tuple[int, int, int, int, int]) -> Body:
    return Body(lambda: resnet_body(arch), (2, 4, 5, 6), channels[:4], channels[4], IMAGENET_STATS)


def _lite(arch: str) -> Body:
    stage_channels = [channels for _blocks, channels in stage_sizes(arch)]
    # Children: 0 stem (/2), 1 (/2), 2 (/4), 3 (/8), 4 (/16), 5 (/16), 6 (/32), 7 (/32), 8 head.
    skips = (1, 2, 3, 5)
    return Body(
        lambda: Stages(*efficientnet_lite(arch), split=5),  # late group: the 112-channel stage on
        skips,
        (stage_channels[0], stage_channels[1], stage_channels[2], stage_channels[4]),
        HEAD_CHANNELS,
        MINUS_ONE_TO_ONE,
    )


BODIES: dict[str, Body] = {
    "resnet18": _resnet("resnet18", (64, 64, 128, 256, 512)),
    "resnet34": _resnet("resnet34", (64, 64, 128, 256, 512)),
    "resnet50": _resnet("resnet50", (64, 256, 512, 1024, 2048)),
    **{arch: _lite(arch) for arch in LITE_SCALING},
}


def body_for(arch: str) -> Body:
    """The `Body` of `arch`, or a clear error naming the ones there are."""
    if arch not in BODIES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(BODIES)}")
    return BODIES[arch]
