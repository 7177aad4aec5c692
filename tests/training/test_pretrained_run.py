"""A user's first run: `train-kit train multilabel` with no --arch starts from the packaged ImageNet
EfficientNet-Lite0, trains its head over a frozen body, continues unfrozen with discriminative rates
and mixed precision, exports with its own input scaling, and answers through the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from typer.testing import CliRunner

from serving.bundle import load_bundle
from tests.conftest import write_colour_folders
from tests.serving.payloads import images_input
from tests.serving.servers import running_server
from training.cli import app
from training.errors import ExportError
from training.export import export_stage
from training.pretrained import pretrained_file
from training.run import run_training
from training.tasks import config_for
from training.tasks.base import Resolution
from training.tasks.multilabel import MultilabelConfig

runner = CliRunner()
QUICK = ["--size", "32", "--bs", "16", "--num-workers", "0"]


@pytest.fixture(scope="module")
def run(tag_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrained-run")
    args = ["train", "multilabel", "--data", str(tag_images), *QUICK, "--epochs", "4", "--out", str(out)]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    return out


def test_the_default_run_starts_from_the_packaged_weights_with_the_body_frozen(run: Path) -> None:
    state = torch.load(run / "stage-1.pt", weights_only=True)
    assert state["meta"]["spec"]["arch"] == "efficientnet_lite0"
    assert state["meta"]["stats"] == [[0.5] * 3, [0.5] * 3]
    imagenet = torch.load(pretrained_file("efficientnet_lite0"), weights_only=True)
    # Frozen: the convolutions are ImageNet's to the bit; BatchNorm statistics adapt (fastai's rule).
    assert torch.equal(state["model"]["0.0.conv_stem.weight"], imagenet["_conv_stem.weight"])
    lite_block_14 = state["model"]["0.6.3.depthwise_conv.weight"]  # stage 6's 4th block
    assert torch.equal(lite_block_14, imagenet["_blocks.14._depthwise_conv.weight"])
    assert not torch.equal(state["model"]["0.0.bn0.running_mean"], imagenet["_bn0.running_mean"])
    metrics = json.loads((run / "stage-1.metrics.json").read_text())
    assert metrics["metrics"]["fbeta"] > metrics["baseline"]["fbeta"]


def test_lr_find_sweeps_the_head_over_the_frozen_pretrained_body(tag_images: Path, tmp_path: Path) -> None:
    args = [
        "lr-find",
        "multilabel",
        "--data",
        str(tag_images),
        *QUICK,
        "--num-it",
        "20",
        "--out",
        str(tmp_path),
    ]
    swept = runner.invoke(app, args)
    assert swept.exit_code == 0, swept.output
    assert "suggested learning rate" in swept.output and (tmp_path / "lr_find.png").is_file()


def test_an_unfrozen_mixed_precision_stage_moves_the_body_at_discriminative_rates(
    run: Path, tag_images: Path
) -> None:
    cfg = MultilabelConfig(
        data=tag_images, size=32, bs=16, num_workers=0, epochs=1, lr=(1e-4, 1e-3), unfreeze=True,
        fp16=True, from_stage="stage-1", stage="stage-2", out=run,
    )  # fmt: skip
    run_training(cfg)
    before = torch.load(run / "stage-1.pt", weights_only=True)["model"]
    after = torch.load(run / "stage-2.pt", weights_only=True)
    assert not torch.equal(after["model"]["0.0.conv_stem.weight"], before["0.0.conv_stem.weight"])
    rates = after["plan"]["lrs"]
    assert rates == pytest.approx([1e-4, 10**-3.5, 1e-3])  # early body, late body, head


def test_the_bundle_scales_inputs_as_the_body_and_the_server_answers_as_it_predicts(
    run: Path, tag_images: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match=r"^ONNX .*than PyTorch fp32|^ONNX disagrees with PyTorch fp32"):
        export_stage(run, "stage-1", "tags", tmp_path / "models", parity_items=16, precision="fp16")
    assert not (tmp_path / "models" / "tags").exists() or not any((tmp_path / "models" / "tags").iterdir())
    # TensorFlow's Lite weights round badly to fp16 (docs/training.md): auto keeps them fp32.
    bundle_path = export_stage(run, "stage-1", "tags", tmp_path / "models", parity_items=16)
    bundle = load_bundle(bundle_path)
    assert bundle.manifest.precision == "fp32"
    assert bundle.manifest.input is not None
    assert (bundle.manifest.input.mean, bundle.manifest.input.std) == ([0.5] * 3, [0.5] * 3)
    jpegs = [(tag_images / "train" / f"img_{i:03d}.jpg").read_bytes() for i in range(4)]
    expected = bundle.predict(jpegs)
    with running_server(tmp_path / "models") as server:
        result = triton.InferenceServerClient(server.address).infer("tags", [images_input(jpegs)])
    scores = np.array([[a["scores"][label] for label in bundle.manifest.labels] for a in expected])
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_folders(tmp_path_factory.mktemp("colours"))


@pytest.mark.parametrize(
    ("task", "data"), [("classify", "colours"), ("segmentation", "seg_images"), ("pose", "point_images")]
)
def test_every_other_image_task_starts_from_the_packaged_body_and_exports(
    task: str, data: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder: Path = request.getfixturevalue(data)
    layout = {"suffix": ".png"} if task == "pose" else {}  # pose names its images in a CSV
    cfg = config_for({
        "task": task, "data": folder, **layout, "size": 32, "bs": 8, "epochs": 1, "lr": 3e-3,
        "num_workers": 0, "unfreeze": True, "out": tmp_path / "run",
    })  # fmt: skip
    run_training(cfg)
    resolution: Resolution = "native" if task == "segmentation" else "squish"  # a U-Net-Lite at any size
    exported = export_stage(tmp_path / "run", "stage-1", task, tmp_path / "models", 8, resolution=resolution)
    manifest = load_bundle(exported).manifest
    assert manifest.input is not None and manifest.input.mean == [0.5] * 3
    assert manifest.parity.tolerance is None or manifest.parity.max_abs_diff <= manifest.parity.tolerance
