"""Which transforms: fastai's `get_transforms` on torchvision.transforms.v2.

v2 dispatches on tensor type, so when masks (`tv_tensors.Mask`) or points (`tv_tensors.KeyPoints`)
ride along later, geometric transforms move them with the image and lighting leaves them alone.
Transforms run on uint8 images; conversion to float and normalization happen per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision.transforms import v2

__all__ = ["Transforms", "get_transforms", "sized"]

Transforms = tuple[list[v2.Transform], list[v2.Transform]]


def get_transforms(
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
) -> Transforms:
    """(train, valid) augmentations; validation gets none, only the resize added by `sized`.

    `flip_vert` allows every dihedral symmetry (vertical flips and quarter turns), right for
    satellite or microscope images that have no "up".
    """
    train: list[v2.Transform] = []
    if do_flip:
        train.append(v2.RandomHorizontalFlip(0.5))
    if flip_vert:
        train.append(v2.RandomVerticalFlip(0.5))
        train.append(v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]))
    if max_rotate > 0 or max_zoom > 1:
        affine = v2.RandomAffine(degrees=max_rotate, scale=(1.0, max(1.0, max_zoom)))
        train.append(v2.RandomApply([affine], p=p_affine))
    if max_warp > 0:
        train.append(v2.RandomApply([v2.RandomPerspective(distortion_scale=max_warp, p=1.0)], p=p_affine))
    if max_lighting > 0:
        jitter = v2.ColorJitter(brightness=max_lighting, contrast=max_lighting)
        train.append(v2.RandomApply([jitter], p=p_lighting))
    return train, []


def sized(tfms: Sequence[v2.Transform], size: int) -> v2.Compose:
    """Resize to `size`×`size` first (cheaper augmentation at the final size), then `tfms`."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *tfms])
