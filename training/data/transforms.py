"""Which transforms: fastai's `get_transforms` on torchvision.transforms.v2.

v2 dispatches on tensor type, so masks (`tv_tensors.Mask`) and points (`tv_tensors.KeyPoints`)
move with the image under geometric transforms, and lighting leaves them alone. Transforms run on
uint8 images; conversion to float and normalization happen per batch.

The resize of images is serving's (`serving.bundle.images.resize_pixels`, Pillow's antialiased
bilinear), so a bundle squishes exactly as its loaders did; masks and points move with it.

Points are continuous pixel coordinates (pixel i spans [i, i+1)). torchvision 0.29 resizes, rotates
and warps them so, but flips them as pixel indices (x → W − 1 − x, one pixel off); `HorizontalFlip`
and `VerticalFlip` correct that (x → W − x). The tests check every transform against a marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from serving.bundle.images import resize_pixels

__all__ = ["HorizontalFlip", "Squish", "Transforms", "VerticalFlip", "get_transforms", "sized"]

Transforms = tuple[list[v2.Transform], list[v2.Transform]]


def _unshift(moved: Any, axis: int) -> Any:
    if not isinstance(moved, tv_tensors.KeyPoints):
        return moved
    shift = torch.zeros(2, dtype=moved.dtype)
    shift[axis] = 1
    return tv_tensors.wrap(moved.as_subclass(torch.Tensor) + shift, like=moved)


class HorizontalFlip(v2.RandomHorizontalFlip):
    """A horizontal flip that maps point x to W − x (see the module's note) and swaps the points of
    each left/right pair (indices into the points), so the point named left stays the left one."""

    def __init__(self, p: float = 0.5, pairs: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__(p)
        order = list(range(1 + max((i for pair in pairs for i in pair), default=-1)))
        for a, b in pairs:
            order[a], order[b] = b, a
        self.order = order

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        moved = _unshift(super().transform(inpt, params), 0)
        if not isinstance(moved, tv_tensors.KeyPoints) or not self.order:
            return moved
        order = self.order + list(range(len(self.order), moved.shape[-2]))
        return tv_tensors.wrap(moved.as_subclass(torch.Tensor)[..., order, :], like=moved)


class VerticalFlip(v2.RandomVerticalFlip):
    """A vertical flip that maps point y to H − y (see the module's note)."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _unshift(super().transform(inpt, params), 1)


def get_transforms(
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    mask_fill: int = 0,
    flip_pairs: Sequence[tuple[int, int]] = (),
) -> Transforms:
    """(train, valid) augmentations; validation gets none, only the resize added by `sized`.

    `flip_vert` allows every dihedral symmetry (vertical flips and quarter turns), right for
    satellite or microscope images that have no "up". `mask_fill` is the code a mask gets where a
    rotation or warp uncovers the image's outside: `Void` for segmentation, so nothing is learnt there.
    `flip_pairs` (indices into a pose task's points) swap names on every horizontal flip.
    """
    fill: dict[type | str, int] = {tv_tensors.Mask: mask_fill, "others": 0}
    train: list[v2.Transform] = []
    if do_flip:
        train.append(HorizontalFlip(0.5, flip_pairs))
    if flip_vert:
        train.append(VerticalFlip(0.5))
        train.append(v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]))
    if max_rotate > 0 or max_zoom > 1:
        affine = v2.RandomAffine(degrees=max_rotate, scale=(1.0, max(1.0, max_zoom)), fill=fill)
        train.append(v2.RandomApply([affine], p=p_affine))
    if max_warp > 0:
        warp = v2.RandomPerspective(distortion_scale=max_warp, p=1.0, fill=fill)
        train.append(v2.RandomApply([warp], p=p_affine))
    if max_lighting > 0:
        jitter = v2.ColorJitter(brightness=max_lighting, contrast=max_lighting)
        train.append(v2.RandomApply([jitter], p=p_lighting))
    return train, []


class Squish(v2.Resize):
    """Resize to `size`×`size`: images by serving's own resize, masks (nearest) and points with them."""

    def __init__(self, size: int) -> None:
        super().__init__((size, size), antialias=True)
        self.side = size

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask | tv_tensors.KeyPoints | tv_tensors.BoundingBoxes):
            return super().transform(inpt, params)
        pixels = inpt.as_subclass(torch.Tensor).permute(1, 2, 0).numpy()
        resized = torch.from_numpy(resize_pixels(pixels, self.side).copy()).permute(2, 0, 1)
        return tv_tensors.wrap(resized, like=inpt) if isinstance(inpt, tv_tensors.Image) else resized


def sized(tfms: Sequence[v2.Transform], size: int) -> v2.Compose:
    """Resize to `size`×`size` first (cheaper augmentation at the final size), then `tfms`."""
    return v2.Compose([Squish(size), *tfms])
