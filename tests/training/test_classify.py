"""Single-label classification, the fifth served task: ImageNet-style folders → a trained stage →
a `classify` bundle (one label with every class's probability) that `train-kit predict` answers with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.bundle import load_bundle
from serving.bundle.tasks.single_label import SingleLabelPostprocess
from tests.conftest import COLOURS, write_colour_folders
from training.cli import app
from training.run import run_training
from training.tasks.classify import ClassifyConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def colour_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_folders(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def classify_bundle(colour_folders: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/colours` exported by `train-kit export` from a 2-epoch resnet18 stage."""
    run, models = tmp_path_factory.mktemp("classify-run"), tmp_path_factory.mktemp("classify-models")
    cfg = ClassifyConfig(
        data=colour_folders, arch="resnet18", pretrained=False, size=32, bs=12, epochs=2,
        lr=1e-3, num_workers=0, out=run,
    )  # fmt: skip
    result = run_training(cfg)
    assert set(result["metrics"]) == {"accuracy"} and set(result["baseline"]) == {"accuracy"}
    exported = runner.invoke(app, ["export", "--out", str(run), "--name", "colours", "--models", str(models)])
    assert exported.exit_code == 0, exported.output
    said = " ".join(exported.output.split())  # rich wraps long lines
    assert "parity on 12 images" in said and "max probability difference" in said
    return models / "colours"


def test_the_bundle_is_a_classify_bundle_checked_as_probabilities(classify_bundle: Path) -> None:
    bundle = load_bundle(classify_bundle)
    manifest = bundle.manifest
    assert manifest.task == "classify" and bundle.task.name == "classify"
    assert manifest.labels == ["blue", "green", "red"]
    assert isinstance(bundle.pipeline.postprocess, SingleLabelPostprocess)
    assert manifest.parity.measure == "probability" and manifest.parity.items == 12
    assert manifest.parity.agreement >= 0.995 and manifest.parity.max_abs_diff <= manifest.parity.tolerance  # type: ignore[operator]
    assert manifest.outputs[0].shape == [-1, 3]


def test_predict_prints_one_label_with_every_probability_per_image(
    classify_bundle: Path, colour_folders: Path
) -> None:
    images = [str(colour_folders / "valid" / colour / f"{colour}_00.png") for colour in COLOURS]
    answers: dict[str, list[dict[str, object]]] = {}
    for runtime in ("onnx", "torch"):
        result = runner.invoke(app, ["predict", str(classify_bundle), *images, "--runtime", runtime])
        assert result.exit_code == 0, result.output
        answers[runtime] = [json.loads(line) for line in result.output.strip().splitlines()]
    for line, image in zip(answers["onnx"], images, strict=True):
        assert line["image"] == image and line["label"] in COLOURS
        scores = line["scores"]
        assert isinstance(scores, dict) and set(scores) == set(COLOURS)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert line["label"] == max(scores, key=scores.__getitem__)
    assert [a["label"] for a in answers["onnx"]] == [a["label"] for a in answers["torch"]]
    assert len(answers["onnx"]) == len(images)
