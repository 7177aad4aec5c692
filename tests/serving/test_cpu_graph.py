"""A bundle's CPU graph: written where it passes the export's check, run by ONNX on a CPU unless
turned off, named in the runtime's description, and never a reason to refuse the export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from serving.bundle import Parity, load_bundle
from serving.bundle.export import ParityCheck
from serving.bundle.networks import CnnSpec
from serving.bundle.tasks.multilabel import MultiLabelPostprocess
from tests.serving import bundles

POST = MultiLabelPostprocess(("red", "green", "blue", "square"), (0.5,) * 4)


def tags_bundle(models: Path, tag_images: Path, check: ParityCheck | None = None) -> Path:
    """A tags bundle with a CPU graph, quantized on 16 training images, where it passes `check`."""
    images = sorted((tag_images / "train").iterdir())[:16]
    spec = CnnSpec("resnet18", 4)
    return bundles.write_image_bundle(
        models, "tags", "multilabel", spec, POST, images, cpu_graph=True, check=check
    )


def test_an_int8_graph_for_cpu_hosts_is_written_checked_and_run_on_the_cpu(
    tmp_path: Path, tag_images: Path
) -> None:
    folder = tags_bundle(tmp_path, tag_images)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["cpu_graph"]["precision"] == "int8" and "model.cpu.onnx" in manifest["files"]
    bundle = load_bundle(folder)
    assert "model.cpu.onnx int8" in bundle.runtime("onnx").describe()
    assert "model.cpu.onnx" not in bundle.runtime("onnx", cpu_graph=False).describe()
    images = sorted((tag_images / "train").iterdir())[16:24]
    fp32 = np.array([[a["scores"][c] for c in POST.labels] for a in bundle.predict(images, "torch")])
    int8 = np.array([[a["scores"][c] for c in POST.labels] for a in bundle.predict(images)])
    assert np.abs(int8 - fp32).max() < 0.1  # int8 rounding, not another model


def test_a_cpu_graph_that_fails_the_check_is_left_out_and_the_bundle_still_published(
    tmp_path: Path, tag_images: Path
) -> None:
    checked: list[str] = []

    def refuse_cpu_graphs(model: torch.nn.Module, onnx_path: Path) -> Parity:
        checked.append(onnx_path.name)
        if onnx_path.name != "model.onnx":
            raise ValueError("answers differ")
        return Parity(tolerance=None, max_abs_diff=0.0, agreement=1.0, items=2)

    folder = tags_bundle(tmp_path, tag_images, refuse_cpu_graphs)
    assert checked == ["model.onnx", ".cpu.int8.onnx", ".cpu.fp32.onnx"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "cpu_graph" not in manifest and set(manifest["files"]) == {"model.onnx", "pipeline.pkl"}
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "pipeline.pkl"]


def test_a_manifest_and_files_that_disagree_on_the_cpu_graph_are_refused(
    tmp_path: Path, tag_images: Path
) -> None:
    from serving.bundle import BundleError

    folder = tags_bundle(tmp_path, tag_images)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["cpu_graph"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="CPU graph"):
        load_bundle(folder)
