"""The networks a bundle can rebuild, described by small specs.

They live in `serving/` because a bundle must rebuild its network without the training kit
(training imports serving, never the reverse). A spec is plain data: pickled with the weights,
it is all a runtime needs to construct the module before loading the state dict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models

__all__ = ["CNN_ARCHS", "AdaptiveConcatPool2d", "CnnSpec", "build_cnn", "cnn_body", "resnet"]

CNN_ARCHS: dict[str, Callable[..., models.ResNet]] = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
}


def resnet(arch: str) -> models.ResNet:
    """A torchvision ResNet with random weights (nothing is ever downloaded)."""
    if arch not in CNN_ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(CNN_ARCHS)}")
    return CNN_ARCHS[arch](weights=None)


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: the head sees both the typical and the strongest response."""

    def __init__(self) -> None:
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], dim=1)


@dataclass(frozen=True)
class CnnSpec:
    """A ResNet body and a pooled, fully connected head with `n_out` outputs."""

    arch: str
    n_out: int
    hidden: int = 512
    dropout: float = 0.5


def build_cnn(spec: CnnSpec, body: nn.Sequential | None = None) -> nn.Sequential:
    """`Sequential(body, head)`: the body is the ResNet without its pooling and classifier.

    Pass `body` to reuse one already built (for example with pretrained weights loaded).
    """
    if body is None:
        body = cnn_body(resnet(spec.arch))
    n_features = _body_features(body)
    head = nn.Sequential(
        AdaptiveConcatPool2d(),
        nn.Flatten(),
        nn.BatchNorm1d(2 * n_features),
        nn.Dropout(spec.dropout / 2),
        nn.Linear(2 * n_features, spec.hidden),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(spec.hidden),
        nn.Dropout(spec.dropout),
        nn.Linear(spec.hidden, spec.n_out),
    )
    return nn.Sequential(body, head)


def cnn_body(net: models.ResNet) -> nn.Sequential:
    """The convolutional stages of a ResNet: stem, layer1..layer4 (8 children)."""
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )


def _body_features(body: nn.Sequential) -> int:
    """Channels out of the body: those of its last normalization layer."""
    norms = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d)]
    return int(norms[-1].num_features)
