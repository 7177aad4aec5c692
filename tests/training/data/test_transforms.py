"""Which transforms: `get_transforms` builds torchvision v2 pipelines; `sized` resizes first.

v2 dispatches on type, so a mask (or points) given beside the image is moved by geometric
transforms exactly like the image, and left alone by lighting transforms.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from training.data import get_transforms
from training.data.transforms import sized

GEOMETRY_OFF: dict[str, Any] = {
    "do_flip": False,
    "max_rotate": 0.0,
    "max_zoom": 1.0,
    "max_warp": 0.0,
    "max_lighting": 0.0,
}


def leaves(tfms: Sequence[v2.Transform]) -> Iterator[v2.Transform]:
    """Every transform in a pipeline, looking inside RandomApply / RandomChoice / Compose."""
    for t in tfms:
        inner = getattr(t, "transforms", None)
        if inner is None:
            yield t
        else:
            yield from leaves(list(inner))


def kinds(tfms: Sequence[v2.Transform]) -> set[str]:
    return {type(t).__name__ for t in leaves(tfms)}


def wrapper_of(tfms: Sequence[v2.Transform], kind: type[v2.Transform]) -> v2.RandomApply:
    """The RandomApply that holds a transform of `kind`."""
    (found,) = [t for t in tfms if isinstance(t, v2.RandomApply) and isinstance(t.transforms[0], kind)]
    return found


def square_sample() -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """A 32px image, black but for an off-centre white rectangle, and the rectangle's mask."""
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, 4:12, 6:20] = 255
    mask = torch.zeros(32, 32, dtype=torch.uint8)
    mask[4:12, 6:20] = 1
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def assert_mask_marks_the_rectangle(image: torch.Tensor, mask: torch.Tensor) -> None:
    assert isinstance(mask, tv_tensors.Mask)
    assert torch.equal(mask == 1, image[0] == 255)
    assert set(mask.unique().tolist()) <= {0, 1}


def test_get_transforms_returns_train_augmentations_and_no_validation_ones() -> None:
    train, valid = get_transforms()
    assert valid == []
    assert train and all(isinstance(t, v2.Transform) for t in train)


def test_default_transforms_flip_rotate_zoom_warp_and_light_but_do_not_flip_vertically() -> None:
    train, _ = get_transforms()
    assert kinds(train) == {"HorizontalFlip", "RandomAffine", "RandomPerspective", "ColorJitter"}


def test_no_max_lighting_means_no_colour_jitter() -> None:
    train, _ = get_transforms(max_lighting=0)
    assert "ColorJitter" not in kinds(train)
    assert "RandomAffine" in kinds(train)


def test_flip_vert_adds_vertical_flips_and_quarter_turns() -> None:
    train, _ = get_transforms(flip_vert=True)
    assert {"VerticalFlip", "HorizontalFlip"} <= kinds(train)
    (choice,) = [t for t in train if isinstance(t, v2.RandomChoice)]
    assert sorted(r.degrees[0] for r in choice.transforms) == [0, 90, 180, 270]
    assert all(r.degrees[0] == r.degrees[1] for r in choice.transforms)  # exact turns, not ranges


def test_each_flag_turns_its_own_augmentation_off() -> None:
    assert "HorizontalFlip" not in kinds(get_transforms(do_flip=False)[0])
    assert "RandomPerspective" not in kinds(get_transforms(max_warp=0)[0])
    assert "RandomAffine" not in kinds(get_transforms(max_rotate=0, max_zoom=1.0)[0])
    assert "RandomAffine" in kinds(get_transforms(max_rotate=0, max_zoom=1.2)[0])
    assert get_transforms(**GEOMETRY_OFF) == ([], [])


def test_amounts_and_probabilities_reach_the_transforms() -> None:
    train, _ = get_transforms(
        max_rotate=30, max_zoom=1.3, max_lighting=0.3, max_warp=0.4, p_affine=0.6, p_lighting=0.4
    )
    affine = wrapper_of(train, v2.RandomAffine)
    assert affine.p == 0.6
    assert list(affine.transforms[0].degrees) == [-30, 30]
    assert affine.transforms[0].scale == (1.0, 1.3)
    warp = wrapper_of(train, v2.RandomPerspective)
    assert warp.p == 0.6 and warp.transforms[0].distortion_scale == 0.4
    lighting = wrapper_of(train, v2.ColorJitter)
    assert lighting.p == 0.4
    assert lighting.transforms[0].brightness == pytest.approx((0.7, 1.3))
    assert lighting.transforms[0].contrast == pytest.approx((0.7, 1.3))


@pytest.mark.parametrize("size", [8, 20, 48])
def test_sized_makes_square_uint8_images_of_the_given_size_from_any_shape(size: int) -> None:
    image = tv_tensors.Image(torch.randint(0, 256, (3, 24, 40), dtype=torch.uint8))
    train, valid = get_transforms(flip_vert=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        outputs = [sized(train, size)(image) for _ in range(5)] + [sized(valid, size)(image)]
    for out in outputs:
        assert out.shape == (3, size, size)
        assert out.dtype == torch.uint8


def test_sized_resizes_before_augmenting() -> None:
    train, _ = get_transforms()
    pipeline = sized(train, 16)
    assert isinstance(pipeline.transforms[0], v2.Resize)
    assert list(pipeline.transforms[0].size) == [16, 16]
    assert list(pipeline.transforms[1:]) == train


def test_validation_sizing_is_deterministic() -> None:
    image = tv_tensors.Image(torch.randint(0, 256, (3, 24, 40), dtype=torch.uint8))
    pipeline = sized(get_transforms()[1], 16)
    assert torch.equal(pipeline(image), pipeline(image))


def test_random_horizontal_flip_moves_the_mask_with_the_image() -> None:
    image, mask = square_sample()
    pipeline = v2.Compose(get_transforms(**{**GEOMETRY_OFF, "do_flip": True})[0])
    flipped = 0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(16):
            out_image, out_mask = pipeline(image, mask)
            assert_mask_marks_the_rectangle(out_image, out_mask)
            if torch.equal(out_mask, mask.flip(-1)):
                flipped += 1
            else:
                assert torch.equal(out_mask, mask)
    assert 0 < flipped < 16  # both outcomes happened, and each kept image and mask together


def test_dihedral_flips_and_turns_move_the_mask_with_the_image() -> None:
    image, mask = square_sample()
    pipeline = v2.Compose(get_transforms(**{**GEOMETRY_OFF, "flip_vert": True})[0])
    dihedral = [torch.rot90(m, k, (0, 1)) for m in (mask, mask.flip(0)) for k in range(4)]
    seen = set()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(32):
            out_image, out_mask = pipeline(image, mask)
            assert_mask_marks_the_rectangle(out_image, out_mask)
            (match,) = [i for i, m in enumerate(dihedral) if torch.equal(out_mask, m)]
            seen.add(match)
    assert len(seen) >= 6  # many of the 8 symmetries, all exact


def test_random_affine_moves_the_mask_with_the_image() -> None:
    image, mask = square_sample()
    train, _ = get_transforms(**{**GEOMETRY_OFF, "max_rotate": 40.0, "max_zoom": 1.5}, p_affine=1.0)
    pipeline = v2.Compose(train)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        outputs = [pipeline(image, mask) for _ in range(4)]
    for out_image, out_mask in outputs:
        assert_mask_marks_the_rectangle(out_image, out_mask)
        assert not torch.equal(out_mask, mask)  # it really moved
        assert out_mask.sum() > 0  # and the rectangle is still in view


def test_lighting_changes_the_image_but_leaves_the_mask_values_alone() -> None:
    ramp = torch.linspace(30, 220, 32).round().to(torch.uint8)
    image = tv_tensors.Image(ramp.expand(3, 32, 32).clone())
    mask = tv_tensors.Mask(torch.arange(32 * 32).reshape(32, 32) % 3)
    train, _ = get_transforms(**{**GEOMETRY_OFF, "max_lighting": 0.5}, p_lighting=1.0)
    assert kinds(train) == {"ColorJitter"}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out_image, out_mask = v2.Compose(train)(image, mask)
    assert not torch.equal(out_image, image)
    assert out_image.dtype == torch.uint8
    assert isinstance(out_mask, tv_tensors.Mask)
    assert torch.equal(out_mask, mask)


def test_points_ride_along_with_a_random_flip() -> None:
    image, mask = square_sample()
    # The rectangle's top-left corner, in continuous pixels: a flip takes it to the right edge.
    corner = tv_tensors.KeyPoints(torch.tensor([[6.0, 4.0]]), canvas_size=(32, 32))
    pipeline = v2.Compose(get_transforms(**{**GEOMETRY_OFF, "do_flip": True})[0])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        outputs = [pipeline(image, mask, corner) for _ in range(8)]
    corners = set()
    for out_image, out_mask, out_points in outputs:
        cols = (out_image[0] == 255).any(0).nonzero().flatten().tolist()
        x, y = out_points[0].tolist()
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert (x, y) == ((max(cols) + 1 if flipped else min(cols)), 4)
        corners.add(x)
    assert corners == {6, 26}


def test_a_plain_target_tensor_passes_through_every_augmentation_untouched() -> None:
    image = tv_tensors.Image(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8))
    target = torch.tensor([0.0, 1.0, 0.0, 1.0])
    pipeline = sized(get_transforms(flip_vert=True, p_affine=1.0, p_lighting=1.0)[0], 24)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out_image, out_target = pipeline(image, target)
    assert out_image.shape == (3, 24, 24)
    assert torch.equal(out_target, target)
