"""A classifier or regressor: a pretrained body under a pooled, fully connected head.

It lives in `serving/` because a bundle must rebuild its network without the training kit
(training imports serving, never the reverse). Its spec is plain data: pickled with the weights,
it is all a runtime needs to construct the module before loading the state dict.
"""

from __future__ import annotations

import torch
from torch import nn

from serving.bundle.networks.bodies import body_for
from serving.bundle.networks.specs import CnnSpec

__all__ = ["AdaptiveConcatPool2d", "CnnSpec", "build_cnn"]


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: the head sees both the typical and the strongest response."""

    def __init__(self) -> None:
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], dim=1)


def build_cnn(spec: CnnSpec, body: nn.Sequential | None = None) -> nn.Sequential:
    """`Sequential(body, head)`: the body is the architecture's convolutional stages, without its
    pooling and classifier.

    Pass `body` to reuse one already built (for example with pretrained weights loaded).
    """
    architecture = body_for(spec.arch)
    if body is None:
        body = architecture.build()
    n_features = architecture.channels
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
