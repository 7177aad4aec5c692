"""Format-1 bundles still load: `torch.save`'d pipelines whose weights are tensors, including those
written before `serving.bundle` existed, whose `pipeline.pkl` names the pipeline's classes by the old
flat modules (`serving.pipeline.ImagePreprocess`, ...), which the reader maps to the same classes;
no other old-looking name gets through the restricted unpickler."""

from __future__ import annotations

import copyreg
import io
import json
import pickle
import shutil
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from serving.bundle import BundleError, load_bundle, sha256_file
from serving.bundle.pipeline import Network
from serving.bundle.read import LEGACY_NAMES, MOVED_SPECS, read_pipeline
from tests.serving.payloads import TEXTS

OLD_NAMES = {  # each class's name now → where the previous layout (commit c0f28e8) defined it
    "serving.bundle.pipeline.Pipeline": "serving.pipeline.Pipeline",
    "serving.bundle.pipeline.ImagePreprocess": "serving.pipeline.ImagePreprocess",
    "serving.bundle.pipeline.Network": "serving.pipeline.Network",
    "serving.bundle.tasks.multilabel.MultiLabelPostprocess": "serving.pipeline.MultiLabelPostprocess",
    "serving.bundle.tasks.segmentation.SegmentationPostprocess": "serving.pipeline.SegmentationPostprocess",
    "serving.bundle.tasks.pose.PosePostprocess": "serving.pipeline.PosePostprocess",
    "serving.bundle.networks.specs.CnnSpec": "serving.networks.CnnSpec",
    "serving.bundle.networks.specs.UnetSpec": "serving.unet.UnetSpec",
    "serving.bundle.networks.specs.AwdLstmSpec": "serving.awd_lstm.AwdLstmSpec",
    "serving.bundle.tokenizer.TextTokenizer": "serving.text.TextTokenizer",
    "serving.bundle.text_preprocess.TextPreprocess": "serving.text_pipeline.TextPreprocess",
    "serving.bundle.tasks.single_label.SingleLabelPostprocess": "serving.text_pipeline.SentimentPostprocess",
}


def opcode(name: str) -> bytes:
    """The protocol-2 GLOBAL opcode that names `module.name` in a pickle: `c<module>\\n<name>\\n`."""
    module, _, attribute = name.rpartition(".")
    return f"c{module}\n{attribute}\n".encode()


class _Format1Pickler(pickle.Pickler):
    """Pickles a `Network` as format 1 did: its fields as they are, the weights as tensors."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Network:
            tensors = {k: torch.from_numpy(v.copy()) for k, v in obj.state.items()}
            return copyreg.__newobj__, (Network,), {"spec": obj.spec, "state": tensors}  # type: ignore[attr-defined]
        return NotImplemented


FORMAT_1_PICKLE = types.ModuleType("format_1_pickle")  # the `pickle_module` torch.save is given
FORMAT_1_PICKLE.Pickler = _Format1Pickler  # type: ignore[attr-defined]
FORMAT_1_PICKLE.Unpickler = pickle.Unpickler  # type: ignore[attr-defined]


def as_format_1(bundle: Path, folder: Path, spec_names: dict[str, str] | None = None) -> Path:
    """A copy of `bundle` as format 1 wrote it: `torch.save`'d, tensors for weights, the manifest
    saying format 1; `spec_names` rename classes in the pickle, as `renamed` does."""
    shutil.copytree(bundle, folder)
    path = folder / "pipeline.pkl"
    pipeline = read_pipeline(path)
    torch.save(pipeline, path, pickle_module=FORMAT_1_PICKLE, _use_new_zipfile_serialization=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return _renamed_in_place(folder, spec_names or {})


def renamed(bundle: Path, folder: Path, renames: dict[str, str]) -> Path:
    """A format-1 copy of `bundle` whose `pipeline.pkl` names classes as `renames` says, its hash updated."""
    return as_format_1(bundle, folder, renames)


def _renamed_in_place(folder: Path, renames: dict[str, str]) -> Path:
    path = folder / "pipeline.pkl"
    with zipfile.ZipFile(path) as old:  # torch.save writes a zip; the pickle is `<archive>/data.pkl`
        members = [(info, old.read(info)) for info in old.infolist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as new:
        for info, data in members:
            if info.filename.endswith("/data.pkl"):
                for now, then in renames.items():
                    if opcode(now) in data:
                        data = data.replace(opcode(now), opcode(then))
            new.writestr(info, data)
    path.write_bytes(out.getvalue())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["pipeline.pkl"] = sha256_file(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def globals_named(folder: Path) -> set[str]:
    """The `serving.*` classes the bundle's pickle names, as `module.name`."""
    with zipfile.ZipFile(folder / "pipeline.pkl") as archive:
        (data,) = [archive.read(n) for n in archive.namelist() if n.endswith("/data.pkl")]
    names = set()
    for piece in data.split(b"cserving.")[1:]:
        module, name = piece.split(b"\n")[:2]
        names.add(f"serving.{module.decode()}.{name.decode()}")
    return names


def inputs_for(task: str, tag_images: Path, seg_images: Path, point_images: Path) -> list:
    if task == "sentiment":
        return TEXTS
    folder = {"multilabel": tag_images / "train", "segmentation": seg_images / "images"}.get(
        task, point_images / "images"
    )
    return sorted(folder.iterdir())[-3:]


def test_the_old_names_are_the_readers_legacy_names() -> None:
    assert set(OLD_NAMES.values()) == set(LEGACY_NAMES)
    for now, then in OLD_NAMES.items():
        cls = LEGACY_NAMES[then]
        assert f"{cls.__module__}.{cls.__qualname__}" == now


@pytest.mark.parametrize("fixture", ["bundle_path", "seg_bundle", "pose_bundle", "sentiment_bundle"])
def test_a_bundle_pickled_under_the_old_module_names_loads_and_answers_the_same(
    request: pytest.FixtureRequest,
    fixture: str,
    tmp_path: Path,
    tag_images: Path,
    seg_images: Path,
    point_images: Path,
) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    old = renamed(bundle, tmp_path / "old" / "1", OLD_NAMES)
    named = globals_named(old)
    assert named and named <= set(LEGACY_NAMES), named  # every class by its old name, none by its new
    current, legacy = load_bundle(bundle), load_bundle(old)
    assert type(legacy.pipeline) is type(current.pipeline)
    assert legacy.pipeline.postprocess == current.pipeline.postprocess
    assert legacy.pipeline.network.spec == current.pipeline.network.spec
    inputs = inputs_for(current.manifest.task, tag_images, seg_images, point_images)
    task, manifest = current.task, current.manifest
    expected = [task.json_answer(manifest, a) for a in current.predict(inputs)]
    assert [task.json_answer(manifest, a) for a in legacy.predict(inputs)] == expected
    assert [task.json_answer(manifest, a) for a in legacy.predict(inputs, "torch")] == [
        task.json_answer(manifest, a) for a in current.predict(inputs, "torch")
    ]


@pytest.mark.parametrize(
    "intruder",
    [
        "serving.networks.build_cnn",  # a real function of the old layout, never a pipeline class
        "serving.pipeline.warm_up_batch",
        "serving.pipeline.os",
    ],
)
def test_an_old_looking_name_outside_the_legacy_table_is_refused(
    bundle_path: Path, tmp_path: Path, intruder: str
) -> None:
    folder = renamed(
        bundle_path, tmp_path / "evil" / "1", {"serving.bundle.networks.specs.CnnSpec": intruder}
    )
    assert intruder in globals_named(folder)
    with pytest.raises(BundleError, match="refused"):
        load_bundle(folder)


@pytest.mark.parametrize("fixture", ["bundle_path", "sentiment_bundle"])
def test_a_format_1_bundle_from_before_the_specs_moved_loads_and_answers_the_same(
    request: pytest.FixtureRequest, fixture: str, tmp_path: Path, tag_images: Path
) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    moved = {f"{cls.__module__}.{cls.__qualname__}": old for old, cls in MOVED_SPECS.items()}
    old = as_format_1(bundle, tmp_path / "old" / "1", moved)
    assert globals_named(old) & set(MOVED_SPECS)  # the spec by its module of format 1
    current, legacy = load_bundle(bundle), load_bundle(old)
    assert legacy.manifest.format_version == 1 and current.manifest.format_version == 2
    inputs = inputs_for(current.manifest.task, tag_images, tag_images, tag_images)
    assert legacy.predict(inputs) == current.predict(inputs)
