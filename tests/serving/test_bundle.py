"""Loading bundles: verified, safely unpickled, and answering like the model that was trained."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from serving.bundle import FORMAT_VERSION, BundleError, load_bundle, sha256_file


def copy_bundle(bundle_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models" / "tags" / "1"
    shutil.copytree(bundle_path, target)
    return target


def rewrite_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_a_bundle_answers_with_labels_and_every_score(bundle_path: Path, tag_images: Path) -> None:
    bundle = load_bundle(bundle_path)
    answers = bundle.predict([tag_images / "train" / "img_000.jpg", tag_images / "train" / "img_001.jpg"])
    assert len(answers) == 2
    for answer in answers:
        assert set(answer["scores"]) == {"blue", "green", "red", "square"}
        assert all(0.0 <= s <= 1.0 for s in answer["scores"].values())
        assert answer["labels"] == [k for k, s in answer["scores"].items() if s > 0.2]


def test_the_onnx_and_torch_runtimes_agree(bundle_path: Path, tag_images: Path) -> None:
    bundle = load_bundle(bundle_path)
    images = sorted((tag_images / "train").glob("*.jpg"))[:16]
    batch = bundle.prepare(images)
    sizes = [(32, 32)] * len(images)
    onnx_scores = bundle.pipeline.postprocess(bundle.runtime("onnx").run(batch), sizes)
    torch_scores = bundle.pipeline.postprocess(bundle.runtime("torch").run(batch), sizes)
    for a, b in zip(onnx_scores, torch_scores, strict=True):
        assert max(abs(a["scores"][k] - b["scores"][k]) for k in a["scores"]) < 1e-2
    assert [a["labels"] for a in bundle.predict(images, "onnx")] == [
        a["labels"] for a in bundle.predict(images, "torch")
    ]


def test_the_newest_version_is_loaded_from_the_model_folder(bundle_path: Path, tmp_path: Path) -> None:
    first = copy_bundle(bundle_path, tmp_path)
    shutil.copytree(first, first.parent / "2")
    assert load_bundle(first.parent).path.name == "2"
    assert load_bundle(first).path.name == "1"


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_the_onnx_model_takes_any_batch_size(bundle_path: Path, batch: int) -> None:
    bundle = load_bundle(bundle_path)
    assert bundle.manifest.input is not None
    size = bundle.manifest.input.size
    out = bundle.runtime("onnx").run(
        np.random.default_rng(0).normal(size=(batch, 3, *size)).astype(np.float32)
    )
    assert out.shape == (batch, len(bundle.manifest.labels))


def test_the_onnx_file_passes_the_checker_and_holds_fp16_weights(bundle_path: Path) -> None:
    model = onnx.load(str(bundle_path / "model.onnx"))
    onnx.checker.check_model(model)
    dtypes = {init.data_type for init in model.graph.initializer if len(init.dims) > 1}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_an_fp32_bundle_keeps_fp32_weights_in_both_files_and_says_so(
    tag_images: Path, tmp_path: Path
) -> None:
    """What an export publishes when fp16 rounding fails its parity check (as an EfficientNet-Lite's
    does), here for any network."""
    from serving.bundle.networks import CnnSpec
    from serving.bundle.tasks.multilabel import MultiLabelPostprocess
    from tests.serving.bundles import TAGS, write_image_bundle

    images = sorted((tag_images / "train").glob("*.jpg"))[:8]
    post = MultiLabelPostprocess(TAGS, (0.2,) * len(TAGS))
    spec = CnnSpec("resnet18", len(TAGS))
    path = write_image_bundle(tmp_path, "lite", "multilabel", spec, post, images, precision="fp32")
    bundle = load_bundle(path)
    assert bundle.manifest.precision == "fp32" and bundle.pipeline.network.precision == "fp32"
    assert json.loads((path / "manifest.json").read_text())["precision"] == "fp32"
    model = onnx.load(str(path / "model.onnx"))
    assert {init.data_type for init in model.graph.initializer if len(init.dims) > 1} == {
        onnx.TensorProto.FLOAT
    }
    batch = bundle.prepare(images)
    assert np.abs(bundle.runtime("onnx").run(batch) - bundle.runtime("torch").run(batch)).max() < 1e-4


def test_an_fp16_manifest_says_nothing_of_precision_so_older_servers_read_it(bundle_path: Path) -> None:
    assert "precision" not in json.loads((bundle_path / "manifest.json").read_text())
    bundle = load_bundle(bundle_path)
    assert bundle.manifest.precision == "fp16" == bundle.pipeline.network.precision


def test_a_tampered_file_is_refused_by_name(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 does not match"):
        load_bundle(folder)


class _TouchFile:
    """A pickle payload that would run `touch <path>` when unpickled by a plain pickle.load."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def test_a_malicious_pickle_is_refused_and_runs_nothing(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    victim = tmp_path / "pwned"
    (folder / "pipeline.pkl").write_bytes(pickle.dumps(_TouchFile(victim)))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["pipeline.pkl"] = sha256_file(folder / "pipeline.pkl")  # hashes cannot save us here
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="refused"):
        load_bundle(folder)
    assert not victim.exists()


def test_a_newer_format_version_is_a_clear_error(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    rewrite_manifest(folder, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match="format version 3 is newer"):
        load_bundle(folder)


def test_an_unknown_task_is_a_clear_error(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    rewrite_manifest(folder, task="detection")
    with pytest.raises(BundleError, match=r"not a valid manifest.*task"):
        load_bundle(folder)


def test_missing_files_and_folders_are_named(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    (folder / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx: listed in the manifest but missing"):
        load_bundle(folder)
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nothing")


def test_a_pipeline_that_disagrees_with_its_manifest_is_refused(bundle_path: Path, tmp_path: Path) -> None:
    folder = copy_bundle(bundle_path, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))  # what clients would be told is not what runs
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="labels that differ from the manifest"):
        load_bundle(folder)


def test_each_runtime_says_what_it_runs_on(bundle_path: Path) -> None:
    bundle = load_bundle(bundle_path)
    assert bundle.runtime("onnx").describe().endswith("on cpu (CPUExecutionProvider)")
    assert bundle.runtime("torch").describe().endswith("on cpu (float32)")


def test_a_linear_bundle_loads_and_its_runtimes_agree(tag_images: Path, tmp_path: Path) -> None:
    """The null model the overhead benchmark serves is a bundle like any other: written, verified,
    unpickled through the allow-list, and the same answers from ONNX and from torch."""
    from serving.bundle.networks import LinearSpec
    from serving.bundle.tasks.multilabel import MultiLabelPostprocess
    from tests.serving.bundles import TAGS, write_image_bundle

    images = sorted((tag_images / "train").glob("*.jpg"))[:8]
    post = MultiLabelPostprocess(TAGS, (0.5,) * len(TAGS))
    path = write_image_bundle(tmp_path / "models", "null", "multilabel", LinearSpec(len(TAGS)), post, images)
    bundle = load_bundle(path)
    batch = bundle.prepare(images)
    onnx_logits, torch_logits = bundle.runtime("onnx").run(batch), bundle.runtime("torch").run(batch)
    assert onnx_logits.shape == (8, len(TAGS))
    assert np.abs(onnx_logits - torch_logits).max() < 1e-2
