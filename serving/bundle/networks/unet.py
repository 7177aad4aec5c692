"""A U-Net on a pretrained encoder, for semantic segmentation.

The encoder is exactly the classifiers' body (`serving.bundle.networks.bodies`: a ResNet or an
EfficientNet-Lite, so pretrained weights and `freeze()` apply unchanged). The decoder climbs back
through the encoder's stages, upsampling to each skip connection's own size (`interpolate(size=...)`,
not a fixed factor, so odd sizes work and ONNX export keeps H and W dynamic), then to the input's
size, where it sees the input image once more before a 1×1 convolution gives one logit per class
per pixel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from serving.bundle.networks.bodies import body_for
from serving.bundle.networks.specs import UnetSpec

__all__ = ["Unet", "UnetSpec", "build_unet"]


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """Upsample to the skip connection's size, concatenate it, two 3×3 convolutions."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _conv(in_channels + skip_channels, out_channels), _conv(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class Unet(nn.Module):
    def __init__(self, spec: UnetSpec, body: nn.Sequential | None = None) -> None:
        super().__init__()
        architecture = body_for(spec.arch)
        stem, c1, c2, c3 = architecture.skip_channels
        c4 = architecture.channels
        self.skips = architecture.skips
        self.body = body if body is not None else architecture.build()
        self.ups = nn.ModuleList(
            [UpBlock(c4, c3, c3), UpBlock(c3, c2, c2), UpBlock(c2, c1, c1), UpBlock(c1, stem, 64)]
        )
        self.final = nn.Sequential(_conv(64 + 3, 32), nn.Conv2d(32, spec.n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, features = [], x
        for index, stage in enumerate(self.body):
            features = stage(features)
            if index in self.skips:
                skips.append(features)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            features = up(features, skip)
        features = functional.interpolate(features, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.final(torch.cat([features, x], dim=1))


def build_unet(spec: UnetSpec, body: nn.Sequential | None = None) -> Unet:
    return Unet(spec, body)
