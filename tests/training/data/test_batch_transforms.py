"""Batch transforms: every item's own flip, rotation and zoom in one grid_sample, with its mask and
points moved exactly where its content went, checked against a marker; reproducible by seed."""

from __future__ import annotations

from typing import Any

import torch

from training.data.batch_transforms import BatchAugment

SIZE = 64
CENTRES = [(14.0, 20.0), (44.0, 12.0), (40.0, 46.0), (20.0, 50.0), (32.0, 32.0), (26.0, 38.0)]


def markers() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Black images with a white 6×6 block, its mask (code 1) and its centre as a point in [-1, 1]."""
    images = torch.zeros(len(CENTRES), 3, SIZE, SIZE)
    masks = torch.zeros(len(CENTRES), SIZE, SIZE, dtype=torch.long)
    for i, (x, y) in enumerate(CENTRES):
        images[i, :, int(y) - 3 : int(y) + 3, int(x) - 3 : int(x) + 3] = 1.0
        masks[i, int(y) - 3 : int(y) + 3, int(x) - 3 : int(x) + 3] = 1
    points = torch.tensor(CENTRES) / SIZE * 2 - 1
    return images, masks, points


def bright_centre(image: torch.Tensor) -> tuple[float, float]:
    weights = image[0].double()
    ys, xs = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return float((weights * xs).sum() / weights.sum()) + 0.5, float((weights * ys).sum() / weights.sum()) + 0.5


GEOMETRY: dict[str, Any] = {"max_rotate": 30.0, "max_zoom": 1.3, "p_affine": 1.0, "max_lighting": 0.0}


def test_points_move_exactly_where_the_content_went() -> None:
    images, _, points = markers()
    augment = BatchAugment(targets="points", flip_vert=True, **GEOMETRY)
    moved_images, moved = augment(images, points, torch.Generator().manual_seed(0))
    assert not torch.equal(moved_images, images)
    for image, point in zip(moved_images, moved.view(-1, 2), strict=True):
        x, y = ((point + 1) / 2 * SIZE).tolist()
        assert abs(x - bright_centre(image)[0]) < 0.75 and abs(y - bright_centre(image)[1]) < 0.75


def test_masks_follow_the_content_and_uncovered_pixels_get_the_fill() -> None:
    images, masks, _ = markers()
    augment = BatchAugment(targets="mask", mask_fill=9, **{**GEOMETRY, "max_zoom": 1.0})  # no zoom to hide corners
    moved_images, moved = augment(images, masks, torch.Generator().manual_seed(1))
    assert moved.dtype == torch.long and set(moved.unique().tolist()) <= {0, 1, 9}
    assert (moved == 9).any()  # rotated corners come from outside the image
    bright = moved_images[:, 0] > 0.5
    block = moved == 1
    overlap = (bright & block).sum() / (bright | block).sum()
    assert overlap > 0.8


def test_a_flip_swaps_left_and_right_points() -> None:
    images = torch.zeros(4, 3, SIZE, SIZE)
    points = torch.tensor([[0.5, 0.0, -0.5, 0.0]]).repeat(4, 1)  # left eye on the image's right
    augment = BatchAugment(targets="points", max_rotate=0, max_zoom=1, max_lighting=0, flip_pairs=[(0, 1)])
    _, moved = augment(images, points, torch.Generator().manual_seed(2))
    assert (moved[:, 0] > moved[:, 2]).all()  # after any flip, the point named left is still the left one


def test_the_same_seed_gives_the_same_batch_and_labels_are_untouched() -> None:
    images, _, _ = markers()
    labels = torch.eye(len(CENTRES))
    augment = BatchAugment(**{**GEOMETRY, "max_lighting": 0.3})
    first = augment(images, labels, torch.Generator().manual_seed(3))
    again = augment(images, labels, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], labels)
    assert 0 <= float(first[0].min()) and float(first[0].max()) <= 1
