"""The body table says what each network really does: the U-Net and the heads rely on it."""

from __future__ import annotations

import pytest
import torch

from serving.bundle.networks.bodies import BODIES, body_for


@pytest.mark.parametrize("arch", sorted(BODIES))
def test_skips_and_channels_are_the_bodys_own(arch: str) -> None:
    body, described = body_for(arch).build().eval(), body_for(arch)
    x, seen = torch.randn(1, 3, 64, 96), {}
    with torch.inference_mode():
        for index, stage in enumerate(body):
            x = stage(x)
            seen[index] = x.shape
    strides = [(64 // seen[i][2], 96 // seen[i][3]) for i in described.skips]
    assert strides == [(2, 2), (4, 4), (8, 8), (16, 16)]
    assert [seen[i][1] for i in described.skips] == list(described.skip_channels)
    assert x.shape[1:] == (described.channels, 2, 3)  # stride 32


@pytest.mark.parametrize("arch", sorted(BODIES))
def test_the_layer_groups_split_the_body_once(arch: str) -> None:
    body = body_for(arch).build()
    early, late = body.early_and_late()
    assert len(early) + len(late) == len(body) and len(early) == body.split
    parameters = [id(p) for group in (early, late) for p in group.parameters()]
    assert sorted(parameters) == sorted(id(p) for p in body.parameters())


def test_an_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'vgg16'; choose one of .*efficientnet_lite0"):
        body_for("vgg16")


def test_a_slice_of_a_body_is_a_plain_sequential_of_its_stages() -> None:
    body = body_for("resnet18").build()
    first = body[:6]
    assert type(first) is torch.nn.Sequential and len(first) == 6 and first[0] is body[0]


def test_the_specs_know_every_body_by_name() -> None:
    """`specs.ARCHS` (torch-free, for checking a bundle on a host without torch) names `BODIES`."""
    from serving.bundle.networks.specs import ARCHS

    assert tuple(BODIES) == ARCHS
