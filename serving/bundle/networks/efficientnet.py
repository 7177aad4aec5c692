"""EfficientNet-Lite as TensorFlow trained it, so that its ImageNet weights mean what they meant there.

The Lite variants are EfficientNets made for CPUs and accelerators: no squeeze-excite, ReLU6, and a
stem and head that do not grow with the width. Three details decide whether TensorFlow's weights
give TensorFlow's answers (each also loads without error into a network that gets them wrong):
BatchNorm eps 1e-3; "SAME" padding on the stride-2 convolutions, which pads one pixel more on the
right and bottom than on the left and top; and inputs scaled to [-1, 1] (mean 0.5, std 0.5).

The body is a `Sequential` of nine children (stem, seven stages, head) whose strides are 2, 2, 4, 8,
16, 16, 32, 32, 32, so the classifier head, the U-Net decoder and the layer groups treat it as they
treat a ResNet's. Module names follow the EfficientNet-PyTorch checkpoints (`conv_stem`, `bn0`,
`expand_conv`, `depthwise_conv`, ...), so a published state dict maps onto it name by name.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional

__all__ = [
    "HEAD_CHANNELS",
    "LITE_SCALING",
    "STEM_CHANNELS",
    "MBConv",
    "SameConv2d",
    "efficientnet_lite",
    "stage_sizes",
]

LITE_SCALING: dict[str, tuple[float, float]] = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
"""Width and depth multipliers of each Lite variant (TensorFlow's `efficientnet_lite_builder`)."""

# Per stage: repeats, kernel, stride, expansion, output channels (EfficientNet-B0's blocks).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
_BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME" pads it: symmetric at stride 1; at stride 2 (on an
    even-sized input) one pixel more right and bottom than left and top.

    The padding is fixed (k//2 - 1 before, k//2 after), not worked out from each input's size, so
    the graph exports with dynamic height and width; on an odd size it is half a pixel off
    TensorFlow's, which the weights do not notice.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1):
        symmetric = kernel // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, symmetric, groups=groups, bias=False)
        before, after = kernel // 2 - 1, kernel // 2
        self.same = None if stride == 1 else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if self.same is None else functional.pad(x, self.same))


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion, depthwise k×k, 1×1 projection; identity skip when the shape
    allows it. No squeeze-excite (the Lite design)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False) if expand != 1 else None
        self.bn0 = _norm(hidden) if expand != 1 else None
        self.depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self.bn1 = _norm(hidden)
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn2 = _norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None and self.bn0 is not None:
            y = functional.relu6(self.bn0(self.expand_conv(y)))
        y = functional.relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.residual else y


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's `round_filters`: scaled, to a multiple of 8, never more than 10 % below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_sizes(arch: str) -> list[tuple[int, int]]:
    """(blocks, output channels) of each of the seven stages of `arch`; the first and last stage do
    not deepen with the depth multiplier (the Lite rule)."""
    width, depth = LITE_SCALING[arch]
    last = len(_STAGES) - 1
    return [
        (repeats if i in (0, last) else math.ceil(depth * repeats), _round_channels(channels, width))
        for i, (repeats, _k, _s, _e, channels) in enumerate(_STAGES)
    ]


def efficientnet_lite(arch: str) -> nn.Sequential:
    """The body of `arch` (a key of `LITE_SCALING`) with random weights: stem, seven stages, head
    (9 children)."""
    children: list[nn.Module] = [
        nn.Sequential(
            OrderedDict(
                conv_stem=SameConv2d(3, STEM_CHANNELS, 3, 2), bn0=_norm(STEM_CHANNELS), act=nn.ReLU6()
            )
        )
    ]
    in_channels = STEM_CHANNELS
    for (repeats, out_channels), (_, kernel, stride, expand, _) in zip(
        stage_sizes(arch), _STAGES, strict=True
    ):
        blocks = []
        for index in range(repeats):
            blocks.append(MBConv(in_channels, out_channels, kernel, stride if index == 0 else 1, expand))
            in_channels = out_channels
        children.append(nn.Sequential(*blocks))
    children.append(
        nn.Sequential(
            OrderedDict(
                conv_head=nn.Conv2d(in_channels, HEAD_CHANNELS, 1, bias=False),
                bn1=_norm(HEAD_CHANNELS),
                act=nn.ReLU6(),
            )
        )
    )
    return nn.Sequential(*children)
