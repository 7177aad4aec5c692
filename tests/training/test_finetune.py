"""Online feedback end to end: a model that rarely saw a tag is served, corrected through Feedback,
fine-tuned on the corrections, and the same running server hot-swaps to the better version."""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from serving.bundle import load_bundle
from serving.server.feedback_store import Correction, FeedbackStore
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.conftest import COLOURS
from tests.serving.servers import running_server
from training.errors import DataError
from training.export import export_stage
from training.finetune import finetune
from training.run import run_training
from training.tasks.multilabel import MultilabelConfig

SIZE = 32


def scene(rng: np.random.Generator, colour: str, square: bool) -> bytes:
    """A noisy colour field, with a white square or without: the tag images of tests/conftest.py."""
    pixels = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 20, (SIZE, SIZE, 3)), 0, 255).astype(
        np.uint8
    )
    if square:
        x, y = rng.integers(2, SIZE // 2, 2)
        pixels[y : y + SIZE // 3, x : x + SIZE // 3] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def write_rare_square_set(root: Path, n: int = 96, n_valid: int = 24) -> Path:
    """Colour tags on every image; `square` on only 2 training images (and every 3rd valid one)."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        valid = i >= n - n_valid
        square = (i % 3 == 0) if valid else i in (1, 40)
        colour = names[i % len(names)]
        (root / "train" / f"img_{i:03d}.jpg").write_bytes(scene(rng, colour, square))
        rows.append({"image_name": f"img_{i:03d}", "tags": f"{colour} square" if square else colour})
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_name", "tags"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "valid.txt").write_text("".join(f"{r['image_name']}\n" for r in rows[-n_valid:]))
    return root


def square_accuracy(stub: TasksStub, squares: list[bytes], plain: list[bytes]) -> tuple[float, str]:
    """Share of images whose `square` tag the served model gets right, and the version that answered."""
    response = stub.Classify(pb.ClassifyRequest(model=pb.ModelRef(name="tags"), images=squares + plain))
    right = [("square" in r.labels) == (i < len(squares)) for i, r in enumerate(response.results)]
    return float(np.mean(right)), response.model.version


def test_feedback_on_a_rare_tag_fine_tunes_a_better_version_that_the_server_swaps_in(tmp_path: Path) -> None:
    data = write_rare_square_set(tmp_path / "data")
    run = tmp_path / "run"
    run_training(
        MultilabelConfig(
            data=data,
            arch="resnet18",
            pretrained=False,
            size=SIZE,
            bs=16,
            epochs=3,
            lr=1e-3,
            num_workers=0,
            out=run,
        )
    )
    models, feedback = tmp_path / "models", tmp_path / "feedback"
    export_stage(run, "stage-1", "tags", models, parity_items=8)
    rng = np.random.default_rng(7)
    colours = list(COLOURS)
    corrections = [(scene(rng, colours[i % 3], True), colours[i % 3]) for i in range(48)]
    squares = [scene(rng, colours[i % 3], True) for i in range(30)]
    plain = [scene(rng, colours[i % 3], False) for i in range(30)]

    with (
        running_server(models, feedback__dir=feedback, poll_interval_s=0.5) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = TasksStub(channel)
        before, version = square_accuracy(stub, squares, plain)
        assert version == "1"
        for image, colour in corrections:  # what a reviewer would send back: the right tags
            stub.Feedback(
                pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=image, labels=[colour, "square"])
            )

        report = finetune(
            models / "tags", feedback / "tags", data, tmp_path / "tuned", models,
            epochs=5, lr=2e-3, bs=16, weight=2, holdout=0.25, tolerance=0.05, num_workers=0,
        )  # fmt: skip
        assert report.published == str(models / "tags" / "2"), report.decision
        assert (report.records, report.held_out) == (48, 12)
        assert report.valid_after["fbeta"] >= report.valid_before["fbeta"] - 0.05  # the original task holds
        assert report.feedback_after["fbeta"] > report.feedback_before["fbeta"]  # the corrected cases gain

        deadline = time.monotonic() + 60
        while (answer := square_accuracy(stub, squares, plain))[
            1
        ] != "2":  # the running server swaps versions
            assert time.monotonic() < deadline, "the server never served version 2"
            time.sleep(0.5)
        after = answer[0]
    assert after >= before + 0.2, (before, after)


def store_records(bundle: Path, feedback: Path, corrections: list[Correction]) -> None:
    """Records written as the server writes them (the same check, the same store), without a server."""
    served = load_bundle(bundle)
    store = FeedbackStore(feedback, max_records=100)
    for correction in corrections:
        store.add(served, correction, 10**8, 10**8)


@pytest.mark.parametrize("task", ["segmentation", "pose"])
def test_segmenters_and_point_regressors_fine_tune_on_their_feedback_too(
    task: str, seg_bundle: Path, pose_bundle: Path, seg_images: Path, point_images: Path, tmp_path: Path
) -> None:
    bundle, data = (seg_bundle, seg_images) if task == "segmentation" else (pose_bundle, point_images)
    tolerance = 0.05 if task == "segmentation" else 2.0  # in the primary metric's units: IoU, pixels
    images = sorted((data / "images").glob("*.png"))[:6]
    if task == "segmentation":
        corrections = [
            Correction(p.read_bytes(), mask_png=(data / "labels" / f"{p.stem}_P.png").read_bytes())
            for p in images
        ]
    else:
        with (data / "points.csv").open() as f:
            truth = {r["image_name"]: (float(r["centre_x"]), float(r["centre_y"])) for r in csv.DictReader(f)}
        corrections = [Correction(p.read_bytes(), points=[("centre", *truth[p.stem])]) for p in images]
    models, name = tmp_path / "models", bundle.parent.name  # the bundle's own name: versions go there
    shutil.copytree(bundle, models / name / "1")
    store_records(models / name, tmp_path / "feedback", corrections)
    original = tmp_path / "original.toml"  # the original run's options: pose's CSV names PNGs, not JPEGs
    original.write_text('suffix = ".png"\n' if task == "pose" else "")  # segmentation takes no suffix
    report = finetune(
        models / name, tmp_path / "feedback" / name, data, tmp_path / "tuned", models,
        config=original, epochs=1, lr=1e-6, bs=8, holdout=0.34, tolerance=tolerance, num_workers=0,
    )  # fmt: skip  # a rate this small barely moves the weights (BatchNorm's statistics adapt to the
    # feedback, worth ~0.6 px here): within the metric's tolerance, so the gate publishes
    assert report.published is not None and Path(report.published).name == "2", report.decision
    assert (report.records, report.held_out) == (6, 2)
    assert report.metric == ("mean_iou" if task == "segmentation" else "mean_pixel_error")
    assert (
        set(report.feedback_after)
        == set(report.valid_after)
        == {report.metric} | ({"pixel_accuracy"} if task == "segmentation" else set())
    )
    assert load_bundle(models / name).manifest.version == 2


def test_a_fine_tune_that_ruins_the_model_is_not_published(
    seg_bundle: Path, seg_images: Path, tmp_path: Path
) -> None:
    images = sorted((seg_images / "images").glob("*.png"))[:6]
    corrections = [
        Correction(p.read_bytes(), mask_png=(seg_images / "labels" / f"{p.stem}_P.png").read_bytes())
        for p in images
    ]
    models, name = tmp_path / "models", seg_bundle.parent.name
    shutil.copytree(seg_bundle, models / name / "1")
    store_records(models / name, tmp_path / "feedback", corrections)
    original = tmp_path / "original.toml"
    original.write_text("")  # the original run's options: a segmentation run needs none here
    report = finetune(
        models / name, tmp_path / "feedback" / name, seg_images, tmp_path / "tuned", models,
        config=original, epochs=1, lr=50.0, bs=8, holdout=0.34, tolerance=0.01, num_workers=0,
    )  # fmt: skip  # a rate of 50 wrecks the weights (or makes them NaN)
    assert report.published is None and "not published" in report.decision, report.decision
    assert not report.valid_after["mean_iou"] >= report.valid_before["mean_iou"] - 0.01
    assert sorted(p.name for p in (models / name).iterdir()) == ["1"]


def test_finetune_needs_a_feedback_store(bundle_path: Path, tag_images: Path, tmp_path: Path) -> None:
    (tmp_path / "fb").mkdir()
    with pytest.raises(DataError, match=r"no labels\.csv"):
        finetune(bundle_path, tmp_path / "fb", tag_images, tmp_path / "out", tmp_path / "m", num_workers=0)
