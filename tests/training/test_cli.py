"""`train-kit` as a user runs it: in-process through typer's runner, and as a real process to kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import write_tag_images
from training.cli import app

from .demo.fakes import write_fake_fashion_mnist

runner = CliRunner()
FAST = ["--arch", "resnet18", "--no-pretrained", "--size", "32", "--bs", "16", "--num-workers", "0"]


def test_data_multilabel_writes_a_planet_style_set(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm")
    out = tmp_path / "scenes"
    args = ["data", "multilabel", "--out", str(out), "--n-train", "12", "--n-valid", "4", "--size", "48"]
    result = runner.invoke(app, [*args, "--source", str(tmp_path / "fm")])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train").glob("*.jpg"))) == 16
    assert len((out / "valid.txt").read_text().split()) == 4


def test_missing_fashion_mnist_says_what_to_install(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "multilabel", "--out", str(tmp_path / "s"), "--source", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "dataset-fashion-mnist" in result.output


def test_train_writes_a_stage_and_metrics_then_a_larger_stage_continues_it(
    tag_images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first = runner.invoke(
        app,
        [
            "train",
            "multilabel",
            "--data",
            str(tag_images),
            *FAST,
            "--epochs",
            "2",
            "--lr",
            "1e-2",
            "--out",
            str(out),
        ],
    )
    assert first.exit_code == 0, first.output
    assert "train_loss" in first.output and "valid_loss" in first.output and "fbeta" in first.output
    metrics = json.loads((out / "stage-1.metrics.json").read_text())
    assert metrics["epochs"] == 2 and set(metrics["metrics"]) == {"accuracy_thresh", "fbeta"}
    assert set(metrics["baseline"]) == {"accuracy_thresh", "fbeta"}
    classes = {
        tag
        for line in (tag_images / "labels.csv").read_text().splitlines()[1:]
        for tag in line.split(",")[1].split()
    }
    assert set(metrics["per_label"]) == classes  # every tag's own scores, also printed as a table
    assert "per label (validation)" in first.output
    assert (out / "stage-1.batch.png").read_bytes()[:4] == b"\x89PNG"

    second = runner.invoke(
        app,
        [
            "train",
            "multilabel",
            "--data",
            str(tag_images),
            *FAST,
            "--size",
            "48",
            "--epochs",
            "1",
            "--lr",
            "1e-5:1e-3",
            "--unfreeze",
            "--from-stage",
            "stage-1",
            "--stage",
            "stage-2",
            "--out",
            str(out),
        ],
    )
    assert second.exit_code == 0, second.output
    state = torch.load(out / "stage-2.pt", weights_only=True)
    assert state["meta"]["size"] == 48 and state["complete"]
    assert state["plan"]["lrs"][0] < state["plan"]["lrs"][-1]


def test_a_config_file_reproduces_a_run_and_a_wrong_key_is_refused(tag_images: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = "{tag_images}"\narch = "resnet18"\npretrained = false\nsize = 32\nbs = 16\nepochs = 1\n'
        "num_workers = 0\n"
        f'out = "{tmp_path / "run"}"\nlr = "1e-3:1e-2"\n'
    )
    ok = runner.invoke(app, ["train", "multilabel", "--config", str(config)])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "run" / "stage-1.metrics.json").read_text())["config"]["lr"] == [1e-3, 1e-2]
    config.write_text(config.read_text() + "epoch = 3\n")
    bad = runner.invoke(app, ["train", "multilabel", "--config", str(config)])
    assert bad.exit_code == 2
    assert "unknown key 'epoch'" in bad.output


def test_bad_data_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    data = write_tag_images(tmp_path / "d", n=12, n_valid=3)
    labels = data / "labels.csv"
    labels.write_text(labels.read_text().replace("img_004,", "img_404,"))
    result = runner.invoke(app, ["train", "multilabel", "--data", str(data), *FAST])
    assert result.exit_code == 2
    assert "labels.csv line 6: image" in result.output and "img_404.jpg does not exist" in result.output
    assert "Traceback" not in result.output


def test_lr_find_prints_a_suggestion_and_writes_the_plot(tag_images: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "lr-find",
            "multilabel",
            "--data",
            str(tag_images),
            *FAST[:-2],
            "--out",
            str(tmp_path),
            "--num-it",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "suggested learning rate" in result.output
    assert (tmp_path / "lr_find.png").stat().st_size > 1000


def test_a_run_killed_mid_epoch_resumes_to_the_same_epoch_count(tmp_path: Path) -> None:
    data = write_tag_images(tmp_path / "d", n=120, n_valid=24)
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "training",
        "train",
        "multilabel",
        "--data",
        str(data),
        *FAST,
        "--bs",
        "8",
        "--epochs",
        "4",
        "--lr",
        "1e-2",
        "--out",
        str(out),
    ]
    env = {**os.environ, "COLUMNS": "120"}
    checkpoint = out / "stage-1.pt"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():  # epoch 1 is saved: epoch 2 is under way
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed = torch.load(checkpoint, weights_only=True)
    assert killed["epoch"] == 1 and not killed["complete"]
    assert not (out / "stage-1.metrics.json").exists()

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming after epoch 1 of 4" in resumed.stdout
    metrics = json.loads((out / "stage-1.metrics.json").read_text())
    assert metrics["epochs"] == 4
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][0] == killed["history"][0]


def test_a_body_pretrained_on_items_starts_a_multilabel_run(tag_images: Path, tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm", n_train=60, n_test=20)
    items = tmp_path / "items"
    made = runner.invoke(
        app,
        [
            "data",
            "items",
            "--out",
            str(items),
            "--n-train",
            "60",
            "--n-valid",
            "20",
            "--source",
            str(tmp_path / "fm"),
        ],
    )
    assert made.exit_code == 0, made.output
    pretrain = runner.invoke(
        app,
        [
            "train",
            "classify",
            "--data",
            str(items),
            *FAST,
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "items-run"),
        ],
    )
    assert pretrain.exit_code == 0, pretrain.output
    assert "accuracy" in pretrain.output
    weights = tmp_path / "body.pth"
    saved = runner.invoke(app, ["save-body", str(weights), "--out", str(tmp_path / "items-run")])
    assert saved.exit_code == 0, saved.output
    body = torch.load(weights, weights_only=True)
    stage = torch.load(tmp_path / "items-run" / "stage-1.pt", weights_only=True)
    assert torch.equal(body["layer4.1.conv2.weight"], stage["model"]["0.7.1.conv2.weight"])

    tuned = runner.invoke(
        app,
        [
            "train",
            "multilabel",
            "--data",
            str(tag_images),
            *[flag for flag in FAST if flag != "--no-pretrained"],  # --weights: pretrained from a file
            "--epochs",
            "1",
            "--weights",
            str(weights),
            "--normalize",
            "data",
            "--out",
            str(tmp_path / "ml"),
        ],
    )
    assert tuned.exit_code == 0, tuned.output
    state = torch.load(tmp_path / "ml" / "stage-1.pt", weights_only=True)
    assert state["n_frozen"] == 2  # a pretrained body starts frozen: only the head (and BatchNorm) trains
    assert torch.equal(state["model"]["0.0.weight"], body["conv1.weight"])


def test_predict_summarises_masks_and_writes_them_and_prints_points(
    seg_bundle: Path, pose_bundle: Path, seg_images: Path, point_images: Path, tmp_path: Path
) -> None:
    image = sorted((seg_images / "images").glob("*.png"))[-1]
    result = runner.invoke(app, ["predict", str(seg_bundle), str(image), "--masks", str(tmp_path)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert (answer["width"], answer["height"]) == (64, 64)
    assert sum(answer["classes"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(answer["classes"]) <= {"Background", "red", "blue"}
    with Image.open(answer["mask"]) as mask:
        assert mask.size == (64, 64) and mask.mode == "L"
    image = sorted((point_images / "images").glob("*.png"))[-1]
    result = runner.invoke(app, ["predict", str(pose_bundle), str(image)])
    assert result.exit_code == 0, result.output
    (point,) = json.loads(result.output)["points"]
    assert point["name"] == "centre" and 0 <= point["x"] <= 48 and 0 <= point["y"] <= 48


def test_void_must_be_one_of_the_codes(seg_images: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["train", "segmentation", "--data", str(seg_images), "--void", "Unlabelled", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "--void 'Unlabelled' is not one of the codes in" in result.output and "'Void'" in result.output


def test_finetune_reports_and_exits_1_when_it_does_not_publish(
    bundle_path: Path, tag_images: Path, tmp_path: Path
) -> None:
    from serving.bundle import load_bundle
    from serving.server.feedback_store import Correction, FeedbackStore

    served = load_bundle(bundle_path)
    store = FeedbackStore(tmp_path / "feedback", max_records=10)
    for image in sorted((tag_images / "train").glob("*.jpg"))[:4]:
        store.add(served, Correction(image.read_bytes(), ["red"]), 10**8, 10**8)
    result = runner.invoke(app, [
        "finetune", "--bundle", str(bundle_path), "--feedback", str(tmp_path / "feedback" / "tags"),
        "--data", str(tag_images), "--epochs", "1", "--bs", "16", "--num-workers", "0", "--lr-find",
        "--tolerance", "-1", "--out", str(tmp_path / "out"), "--models", str(tmp_path / "models"),
    ])  # fmt: skip  # a tolerance of -1 demands a gain of 1: never met, so nothing is published
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "finetune.report.json").read_text())
    assert report["published"] is None and "not published" in report["decision"]
    assert (report["records"], report["held_out"]) == (4, 1)
    assert not (tmp_path / "models").exists()
    assert (tmp_path / "out" / "lr_find.png").is_file()  # the rate came from a sweep
