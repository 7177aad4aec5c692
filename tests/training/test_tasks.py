"""Segmentation and pose through the kit: data block → learner → checked export → bundle answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from serving.bundle import load_bundle, read_manifest
from serving.bundle.networks.unet import Unet, UnetSpec
from serving.bundle.runtimes import OnnxRuntime
from serving.bundle.tasks.pose import PosePostprocess
from serving.bundle.tasks.segmentation import SegmentationPostprocess
from training.body import save_body_weights
from training.losses import PixelCrossEntropy
from training.metrics import background_logits, mean_iou, mean_pixel_error, mean_points, pixel_accuracy
from training.models import Pretrained, create_model, layer_groups
from training.run import build_learner
from training.tasks.multilabel import MultilabelConfig
from training.tasks.pose import PoseConfig
from training.tasks.segmentation import SegmentationConfig


def metrics_of(run: Path) -> dict[str, dict[str, float]]:
    return json.loads((run / "stage-1.metrics.json").read_text())


def test_each_task_finds_its_data_where_its_demo_set_puts_it(tmp_path: Path) -> None:
    seg = SegmentationConfig(data=tmp_path)
    pose = PoseConfig(data=tmp_path)
    assert (seg.folder, str(seg.out), seg.codes, seg.void) == (
        "images",
        "runs/segmentation",
        "codes.txt",
        "Void",
    )
    assert (pose.csv, pose.folder, str(pose.out), pose.points) == (
        "points.csv",
        "images",
        "runs/pose",
        ["centre"],
    )
    assert SegmentationConfig(data=tmp_path, folder="frames").folder == "frames"
    assert MultilabelConfig(data=tmp_path).folder == "train"


def test_void_pixels_change_neither_loss_nor_metrics() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 8, 8), torch.randint(0, 3, (2, 8, 8), dtype=torch.uint8)
    targets[:, :2] = 3  # Void
    other = logits.clone()
    other[:, :, :2] = torch.randn(2, 4, 2, 8) * 10  # anything at all where the target is Void
    loss = PixelCrossEntropy(void=3)
    assert torch.allclose(loss(logits, targets), loss(other, targets))
    for metric in (pixel_accuracy, mean_iou):
        assert torch.allclose(metric(logits, targets, void=3), metric(other, targets, void=3))
    assert not torch.allclose(PixelCrossEntropy()(logits, targets.clamp(max=2)), loss(logits, targets))


def test_the_baselines_are_all_background_and_the_mean_point() -> None:
    masks = torch.zeros(3, 4, 4, dtype=torch.uint8)
    masks[:, :2] = 1
    logits = background_logits(3)(masks, masks)
    assert float(pixel_accuracy(logits, masks)) == 0.5 and float(mean_iou(logits, masks)) == 0.25
    train = torch.tensor([[0.0, 0.5], [0.5, -0.5]])
    assert mean_points(train, torch.zeros(4, 2)).tolist() == [[0.25, 0.0]] * 4


def test_mean_pixel_error_is_in_each_images_own_pixels() -> None:
    preds, targets = torch.tensor([[0.5, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    sizes = torch.tensor([[10.0, 40.0], [30.0, 20.0]])  # (height, width)
    # item 0: x off by a quarter of 40 px = 10 px; item 1: y off by half of 30 px = 15 px
    assert float(mean_pixel_error(preds, targets, sizes)) == pytest.approx(12.5)


def test_the_unet_freezes_as_encoder_body_and_decoder_head() -> None:
    model = create_model(UnetSpec("resnet18", 4))
    assert isinstance(model, Unet)
    groups = layer_groups(model)
    grouped = [id(p) for g in groups for p in g.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter in one group
    assert all(any(p is q for q in groups[2].parameters()) for p in model.final.parameters())


def test_a_segmentation_run_beats_all_background_and_exports_a_checked_bundle(
    seg_run: Path, seg_bundle: Path, seg_images: Path
) -> None:
    result = metrics_of(seg_run)
    assert result["metrics"]["mean_iou"] > result["baseline"]["mean_iou"] + 0.2
    assert result["metrics"]["pixel_accuracy"] > result["baseline"]["pixel_accuracy"]
    manifest = read_manifest(seg_bundle)
    assert (manifest.task, manifest.labels) == ("segmentation", ["Background", "red", "blue", "Void"])
    assert manifest.parity.measure == "logit" and manifest.parity.agreement >= 0.99
    assert [t.shape for t in manifest.outputs] == [[-1, 4, -1, -1]]
    bundle = load_bundle(seg_bundle)
    image = sorted((seg_images / "images").glob("*.png"))[-1]
    (answer,) = bundle.predict([image])
    truth = np.asarray(Image.open(seg_images / "labels" / f"{image.stem}_P.png"))
    assert answer["mask"].shape == truth.shape == (64, 64) and answer["mask"].dtype == np.uint8
    assert 3 not in answer["mask"]  # Void is never an answer
    (by_torch,) = bundle.predict([image], runtime="torch")
    assert np.mean(by_torch["mask"] == answer["mask"]) >= 0.99


def test_the_exported_unet_takes_any_height_and_width(seg_bundle: Path) -> None:
    runtime = OnnxRuntime(seg_bundle / "model.onnx")
    for shape in [(1, 3, 32, 32), (2, 3, 64, 96), (1, 3, 96, 33)]:
        assert runtime.run(np.zeros(shape, np.float32)).shape == (shape[0], 4, *shape[2:])


def test_a_pose_run_exports_points_within_half_a_pixel(pose_run: Path, pose_bundle: Path) -> None:
    result = metrics_of(pose_run)
    assert set(result["metrics"]) == set(result["baseline"]) == {"mean_pixel_error"}
    # it learnt where the disc is: 4.2 px against the mean point's 12.8 when written
    assert result["metrics"]["mean_pixel_error"] < 0.6 * result["baseline"]["mean_pixel_error"], result
    manifest = read_manifest(pose_bundle)
    assert (manifest.task, manifest.labels, manifest.outputs[0].name) == ("pose", ["centre"], "coords")
    assert manifest.parity.measure == "pixel" and manifest.parity.max_abs_diff <= 0.5
    assert manifest.parity.agreement == 1.0


def test_points_are_scaled_back_to_each_callers_image() -> None:
    post = PosePostprocess(("centre", "nose"))
    outputs = np.array([[0.0, 0.0, -1.0, 1.0], [1.0, -1.0, 0.5, -0.5]], np.float32)
    assert post.pixels(outputs, [(100, 40), (30, 60)]).tolist() == [
        [[20.0, 50.0], [0.0, 100.0]],
        [[60.0, 0.0], [45.0, 7.5]],
    ]
    assert post(outputs[:1], [(100, 40)])[0]["points"][1] == {"name": "nose", "x": 0.0, "y": 100.0}


def test_masks_are_resized_back_with_nearest_and_never_answer_void() -> None:
    post = SegmentationPostprocess(("Background", "thing", "Void"), void=2)
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 1, 0, 0] = 5.0  # top-left pixel: thing
    logits[0, 2] = 9.0  # Void scores highest everywhere, and is never chosen
    (mask,) = post.masks(logits, [(4, 6)])
    assert mask.shape == (4, 6) and set(np.unique(mask)) == {0, 1}
    assert mask[:2, :3].tolist() == [[1, 1, 1], [1, 1, 1]] and mask[2:, :].max() == 0


def test_a_unet_stage_gives_its_encoder_to_another_task(seg_run: Path, tmp_path: Path) -> None:
    save_body_weights(seg_run / "stage-1.pt", tmp_path / "body.pt")
    body = torch.load(tmp_path / "body.pt", weights_only=True)
    assert "layer4.1.bn2.weight" in body and "conv1.weight" in body
    model = create_model(UnetSpec("resnet18", 2), Pretrained(tmp_path / "body.pt"))
    assert torch.equal(model.state_dict()["body.0.weight"], body["conv1.weight"])


def test_show_batch_marks_the_points(point_images: Path, tmp_path: Path) -> None:
    from training.data.show import show_batch

    cfg = PoseConfig(
        data=point_images,
        suffix=".png",
        arch="resnet18",
        pretrained=False,
        size=32,
        bs=4,
        num_workers=0,
    )
    path = show_batch(build_learner(cfg).data, tmp_path / "pose.png", rows=2)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red_crosses = (pixels[:, 0] > 200) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)  # the discs are yellow
    assert red_crosses.sum() > 20


def test_every_task_has_a_training_and_a_serving_module_and_a_config_name() -> None:
    from serving.bundle.tasks import TASKS as SERVED
    from training.tasks import TASKS

    config_names = {task.settings.task_name() for task in TASKS.values()}
    assert set(TASKS) == set(SERVED) == config_names
    assert all(task.served is SERVED[name] for name, task in TASKS.items())


def test_a_label_disagreement_on_too_few_items_says_to_check_more() -> None:
    from training.errors import ExportError
    from training.tasks.parity import probability_parity

    expected = np.tile([[2.0, -2.0]], (64, 1))
    actual = expected.copy()
    actual[0] = [-2.0, 2.0]  # one of 64: 1.6 %, over the 0.5 % bar
    with pytest.raises(
        ExportError, match=r"one difference is 1\.6%: check at least 200 \(--parity-items 200\)"
    ):
        probability_parity(expected, [actual], 1.0, "validation texts")
    many = np.tile([[2.0, -2.0]], (400, 1))
    wrong = many.copy()
    wrong[:10] = [-2.0, 2.0]
    with pytest.raises(ExportError, match="an operator the ONNX export changed"):
        probability_parity(many, [wrong], 1.0, "validation texts")
