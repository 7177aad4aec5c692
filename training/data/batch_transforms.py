"""Augmentation of whole batches on the training device, as fastai's batch transforms do.

Per-item transforms run in loader workers on the CPU, one image at a time; on a GPU they, not the
network, set the pace. Here every item of a float batch in [0, 1] gets its own random flip, quarter
turn, rotation and zoom as one affine matrix, all applied by a single `grid_sample` call, and its
own brightness and contrast; masks go through the same grid (nearest, uncovered pixels get the
fill code) and points through the inverse matrix, so both stay on the content they label.

Coordinates are `affine_grid`'s normalized ones with `align_corners=False`: -1 and 1 are the
image's outer edges, exactly the [-1, 1] scale point targets are stored in. A point that the
transform would push off the image keeps its item untransformed (points are never clamped), and
left/right pairs swap on every flip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["BatchAugment", "TargetKind"]

TargetKind = Literal["labels", "mask", "points"]


@dataclass
class BatchAugment:
    """Random geometry and lighting for a batch (N, C, H, W) of floats in [0, 1] and its targets."""

    targets: TargetKind = "labels"
    do_flip: bool = True
    flip_vert: bool = False
    max_rotate: float = 10.0
    max_zoom: float = 1.1
    max_lighting: float = 0.2
    p_affine: float = 0.75
    p_lighting: float = 0.75
    mask_fill: int = 0
    flip_pairs: Sequence[tuple[int, int]] = ()

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        draw = _Draws(n, x.device, generator)
        flips = draw.chance(0.5) & self.do_flip
        matrices = self._matrices(flips, draw)
        if self.targets == "points":
            y, matrices, flips = self._move_points(y, matrices, flips)
        grid = F.affine_grid(torch.cat([matrices, matrices.new_zeros(n, 2, 1)], 2), list(x.shape), False)
        # outside the image: mirrored content, or black where a mask marks it `mask_fill` (as per item)
        padding = "zeros" if self.targets == "mask" else "reflection"
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
        if self.targets == "mask":
            y = self._move_mask(y, grid)
        return self._light(x, draw), y

    def _matrices(self, flips: torch.Tensor, draw: _Draws) -> torch.Tensor:
        """(N, 2, 2): for each item, output coordinates → input coordinates."""
        n, device = draw.n, draw.device
        uniform, chance = draw.uniform, draw.chance
        matrices = torch.diag_embed(torch.stack([1 - 2 * flips.float(), torch.ones(n, device=device)], 1))
        if self.flip_vert:
            down = chance(0.5)
            vflip = torch.diag_embed(torch.stack([torch.ones(n, device=device), 1 - 2 * down.float()], 1))
            turns = (uniform(0, 4).floor() * (math.pi / 2)).to(device)
            matrices = rotation(turns) @ vflip @ matrices
        affine = chance(self.p_affine)
        angles = torch.deg2rad(uniform(-self.max_rotate, self.max_rotate)) * affine
        zooms = torch.where(affine, uniform(1.0, max(1.0, self.max_zoom)), torch.ones(n, device=device))
        return rotation(angles) @ matrices / zooms.view(n, 1, 1)

    def _move_points(
        self, y: torch.Tensor, matrices: torch.Tensor, flips: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points follow the content (the inverse matrix); an item whose points would leave the image
        is left untransformed; flipped items swap their left/right pairs."""
        points = y.view(y.shape[0], -1, 2)
        moved = points @ torch.linalg.inv(matrices).transpose(1, 2)
        inside = (moved.abs() <= 1).all(2).all(1)
        eye = torch.eye(2, device=y.device).expand_as(matrices)
        matrices = torch.where(inside.view(-1, 1, 1), matrices, eye)
        flips = flips & inside
        moved = torch.where(inside.view(-1, 1, 1), moved, points)
        order = list(range(points.shape[1]))
        for a, b in self.flip_pairs:
            order[a], order[b] = b, a
        if self.flip_pairs:
            moved = torch.where(flips.view(-1, 1, 1), moved[:, order], moved)
        return moved.reshape(y.shape), matrices, flips

    def _move_mask(self, y: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Class codes through the same grid, nearest; pixels from outside the image get the fill."""
        codes = F.grid_sample(y.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        covered = F.grid_sample(
            torch.ones_like(codes), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        codes = torch.where(covered > 0.5, codes, torch.full_like(codes, self.mask_fill))
        return codes.squeeze(1).round().to(y.dtype)

    def _light(self, x: torch.Tensor, draw: _Draws) -> torch.Tensor:
        """Brightness and contrast factors in [1 - max_lighting, 1 + max_lighting], per item."""
        if self.max_lighting <= 0:
            return x
        n, lit, uniform = x.shape[0], draw.chance(self.p_lighting), draw.uniform
        one = torch.ones(n, device=x.device)
        brightness = torch.where(lit, uniform(1 - self.max_lighting, 1 + self.max_lighting), one).view(n, 1, 1, 1)
        contrast = torch.where(lit, uniform(1 - self.max_lighting, 1 + self.max_lighting), one).view(n, 1, 1, 1)
        x = x * brightness
        grey = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - grey) * contrast + grey).clamp_(0, 1)


@dataclass(frozen=True)
class _Draws:
    """One random number per item of a batch, from the loader's generator (reproducible epochs)."""

    n: int
    device: torch.device
    generator: torch.Generator | None

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return torch.rand(self.n, generator=self.generator, device=self.device) * (high - low) + low

    def chance(self, p: float) -> torch.Tensor:
        return torch.rand(self.n, generator=self.generator, device=self.device) < p


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """(N,) radians → (N, 2, 2) rotation matrices."""
    cos, sin = angles.cos(), angles.sin()
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
