from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from serving.bundle.networks.cnn import CnnSpec
from training.errors import ConfigError
from training.models import Pretrained, cnn_layer_groups, create_cnn


def test_a_cnn_maps_images_to_one_output_per_label_at_any_size() -> None:
    model = create_cnn(CnnSpec("resnet18", 17)).eval()
    for size in (32, 64, 97):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 17)


@pytest.mark.parametrize("arch", ["resnet34", "efficientnet_lite0"])
def test_layer_groups_cover_every_parameter_once(arch: str) -> None:
    model = create_cnn(CnnSpec(arch, 4))
    grouped = [id(p) for g in cnn_layer_groups(model) for p in g.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert len(grouped) == len(set(grouped))


def test_local_weights_load_into_the_body(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_cnn(CnnSpec("resnet18", 3), Pretrained(path))
    assert torch.equal(model[0][0].weight, reference.conv1.weight)
    assert torch.equal(model[0][7][1].conv2.weight, reference.layer4[1].conv2.weight)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match="not a state dict of resnet34's body"):
        create_cnn(CnnSpec("resnet34", 3), Pretrained(path))


def test_missing_or_garbage_weights_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        create_cnn(CnnSpec("resnet18", 3), Pretrained(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable PyTorch state dict"):
        create_cnn(CnnSpec("resnet18", 3), Pretrained(garbage))
