"""Exporting stages: parity-checked, atomically published, numbered without gaps or overwrites."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from serving.bundle import load_bundle
from training.cli import app
from training.export import ExportError, export_stage
from training.run import build_learner
from training.tasks.multilabel import MultilabelConfig


def versions(models: Path) -> list[str]:
    return sorted(p.name for p in (models / "tags").iterdir())


def test_a_round_trip_predicts_what_the_learner_predicts(trained_run: Path, bundle_path: Path) -> None:
    state = torch.load(trained_run / "stage-1.pt", weights_only=True)
    cfg = MultilabelConfig.model_validate(
        {**state["meta"]["config"], "from_stage": "stage-1", "stage": "check", "unfreeze": True}
    )
    learn = build_learner(cfg)
    paths = [Path(p) for p in learn.data.src.valid.items]
    expected = torch.sigmoid(learn.predict(paths)).numpy()
    bundle = load_bundle(bundle_path)
    for runtime in ("onnx", "torch"):
        answers = bundle.predict(paths, runtime=runtime)
        got = np.array([[a["scores"][c] for c in bundle.manifest.labels] for a in answers])
        assert np.abs(got - expected).max() < 1e-2, runtime


def test_the_manifest_records_parity_sizes_and_hashes(bundle_path: Path) -> None:
    manifest = json.loads((bundle_path / "manifest.json").read_text())
    assert manifest["parity"]["max_abs_diff"] <= manifest["parity"]["tolerance"]
    assert manifest["parity"]["agreement"] >= 0.995
    assert set(manifest["files"]) == {"pipeline.pkl", "model.onnx", "model.cpu.onnx"}
    cpu = manifest["cpu_graph"]  # int8 calibrated on training images, or fp32: checked like model.onnx
    assert (
        cpu["precision"] in ("int8", "fp32") and cpu["parity"]["max_abs_diff"] <= cpu["parity"]["tolerance"]
    )
    assert cpu["parity"]["agreement"] >= 0.995
    assert manifest["inputs"][0]["shape"] == [-1, 3, 32, 32]
    assert manifest["libraries"]["torch"] == torch.__version__


def test_versions_count_up_without_gaps_and_never_overwrite(trained_run: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    first = export_stage(trained_run, "stage-1", "tags", models, parity_items=8)
    marker = first / "keep-me"
    marker.write_text("untouched")
    second = export_stage(trained_run, "stage-1", "tags", models, parity_items=8)
    assert (first.name, second.name) == ("1", "2")
    assert marker.read_text() == "untouched"
    (models / "tags" / "7").mkdir()
    assert export_stage(trained_run, "stage-1", "tags", models, parity_items=8).name == "8"


def test_a_failed_parity_check_publishes_nothing(trained_run: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(ExportError, match="disagrees"):
        export_stage(trained_run, "stage-1", "tags", models, parity_items=8, tolerance=1e-12)
    assert not (models / "tags").exists()  # nothing published, not even the model folder it created


def test_a_kill_during_export_leaves_no_partial_version(trained_run: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    earlier = export_stage(trained_run, "stage-1", "tags", models, parity_items=8)
    snapshot = {f.name: f.read_bytes() for f in earlier.iterdir()}
    command = [sys.executable, "-m", "training", "export", "--out", str(trained_run), "--name", "tags",
               "--models", str(models)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any((models / "tags").glob(".staging-*/pipeline.pkl")):
            assert process.poll() is None and time.monotonic() < deadline, (
                "export ended before it could be killed"
            )
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert [v for v in versions(models) if not v.startswith(".")] == ["1"]
    assert {f.name: f.read_bytes() for f in earlier.iterdir()} == snapshot  # the earlier version untouched
    assert export_stage(trained_run, "stage-1", "tags", models, parity_items=8).name == "2"


def test_export_and_predict_from_the_command_line(
    trained_run: Path, tag_images: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    models = tmp_path / "models"
    exported = runner.invoke(
        app, ["export", "--out", str(trained_run), "--name", "tags", "--models", str(models)]
    )
    assert exported.exit_code == 0, exported.output
    assert "published" in exported.output
    image = str(tag_images / "train" / "img_001.jpg")
    answers = {}
    for runtime in ("onnx", "torch"):
        result = runner.invoke(app, ["predict", str(models / "tags"), image, "--runtime", runtime])
        assert result.exit_code == 0, result.output
        answers[runtime] = json.loads(result.output.strip())
    assert answers["onnx"]["labels"] == answers["torch"]["labels"]
    truth = {
        row.split(",")[0]: row.split(",")[1] for row in (tag_images / "labels.csv").read_text().splitlines()
    }
    shown = runner.invoke(
        app, ["predict", str(models / "tags"), image, "--truth", str(tag_images / "labels.csv")]
    )
    assert json.loads(shown.output)["truth"] == truth["img_001"]  # the name's stem, as labels.csv has it
    bad = runner.invoke(app, ["predict", str(models / "nope"), image])
    assert bad.exit_code == 2 and "no such bundle" in bad.output


def test_without_a_name_the_model_is_named_after_its_task(trained_run: Path, tmp_path: Path) -> None:
    """Never a fixed `planet`: a classifier published as the next version of the multi-label `planet`
    was swapped in under that model's clients."""
    models = tmp_path / "models"
    command = ["export", "--out", str(trained_run), "--models", str(models), "--parity-items", "8"]
    exported = CliRunner().invoke(app, [*command, "--no-cpu-graph"])
    assert exported.exit_code == 0, exported.output
    assert [p.name for p in models.iterdir()] == ["multilabel"]
    assert json.loads((models / "multilabel" / "1" / "manifest.json").read_text())["name"] == "multilabel"


def test_an_unfinished_stage_cannot_be_exported(trained_run: Path, tmp_path: Path) -> None:
    state = torch.load(trained_run / "stage-1.pt", weights_only=True)
    state["complete"] = False
    run = tmp_path / "run"
    run.mkdir()
    torch.save(state, run / "stage-1.pt")
    with pytest.raises(Exception, match="unfinished"):
        export_stage(run, "stage-1", "tags", tmp_path / "models")
    assert not (tmp_path / "models" / "tags" / "1").exists()


def test_predict_streams_its_inputs_in_batches_of_bs(
    bundle_path: Path, tag_images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.bundle.loader import Bundle

    sizes: list[int] = []
    real = Bundle.predict

    def counted(self: Bundle, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(inputs))
        return real(self, inputs, *args, **kwargs)

    images = [str(p) for p in sorted((tag_images / "train").glob("*.jpg"))[:5]]
    whole = CliRunner().invoke(app, ["predict", str(bundle_path), *images])
    monkeypatch.setattr(Bundle, "predict", counted)
    streamed = CliRunner().invoke(app, ["predict", str(bundle_path), *images, "--bs", "2"])
    assert streamed.exit_code == 0, streamed.output
    assert sizes == [2, 2, 1]
    assert streamed.output == whole.output  # the same lines, in the same order
