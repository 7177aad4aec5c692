"""`train-kit archive`: a TorchServe .mar holding the bundle unchanged, our handler and its config."""

from __future__ import annotations

import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training import archive
from training.archive import ArchiveError, TorchServeConfig, archive_bundle
from training.cli import app


def test_the_archive_holds_the_bundle_the_handler_and_the_batching_config(
    bundle_path: Path, tmp_path: Path
) -> None:
    mar = archive_bundle(
        bundle_path, tmp_path / "store", TorchServeConfig(batch_size=4, max_batch_delay_ms=20)
    )
    assert mar == tmp_path / "store" / "tags.mar"
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
        assert {
            "manifest.json",
            "pipeline.pkl",
            "model.onnx",
            "torchserve_handler.py",
            "model-config.yaml",
        } <= names
        assert archive.read("model.onnx") == (bundle_path / "model.onnx").read_bytes()
        config = archive.read("model-config.yaml").decode()
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
    assert "batchSize: 4\n" in config and "maxBatchDelay: 20\n" in config and "runtime: onnx" in config
    assert manifest["model"]["modelName"] == "tags" and manifest["model"]["modelVersion"] == "1"
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["tags.mar"]  # no staging left behind


def test_no_archive_writes_a_folder_and_replaces_an_older_one(bundle_path: Path, tmp_path: Path) -> None:
    first = archive_bundle(bundle_path, tmp_path, archive_format="no-archive")
    (first / "stale.txt").write_text("from before")
    again = archive_bundle(bundle_path, tmp_path, archive_format="no-archive")
    assert again == first and (again / "MAR-INF" / "MANIFEST.json").is_file()
    assert not (again / "stale.txt").exists()


def test_replacing_a_no_archive_folder_is_atomic(
    bundle_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = archive_bundle(bundle_path, tmp_path, archive_format="no-archive")
    manifest = (first / "MAR-INF" / "MANIFEST.json").read_bytes()

    def fails(a: Path, b: Path) -> None:
        raise ArchiveError("the swap failed")

    monkeypatch.setattr(archive, "exchange", fails)
    with pytest.raises(ArchiveError, match="the swap failed"):
        archive_bundle(bundle_path, tmp_path, archive_format="no-archive")
    assert (first / "MAR-INF" / "MANIFEST.json").read_bytes() == manifest  # the old one is untouched
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # and nothing is left beside it
    monkeypatch.undo()

    missing = []
    done = threading.Event()

    def reader() -> None:  # what TorchServe scanning its model store would see
        while not done.is_set():
            if not (first / "MAR-INF" / "MANIFEST.json").is_file():
                missing.append(time.monotonic())

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        for _ in range(3):
            archive_bundle(bundle_path, tmp_path, archive_format="no-archive")
    finally:
        done.set()
        watcher.join()
    assert missing == []


def test_a_damaged_bundle_is_never_archived(bundle_path: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "models" / "tags" / "1"
    shutil.copytree(bundle_path, damaged)
    (damaged / "pipeline.pkl").write_bytes(b"tampered")
    with pytest.raises(ArchiveError, match=r"pipeline\.pkl"):
        archive_bundle(damaged, tmp_path / "store")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_the_cli_archives_and_names_a_wrong_option(bundle_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["archive", str(bundle_path), "--out", str(tmp_path), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tags.mar").is_file()
    result = runner.invoke(app, ["archive", str(bundle_path), "--out", str(tmp_path), "--runtime", "tf"])
    assert result.exit_code == 2 and "runtime 'tf': choose onnx or torch" in result.output
