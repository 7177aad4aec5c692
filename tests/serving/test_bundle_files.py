"""A bundle's files are checked before they are read whole: no symbolic links, no file larger than
any bundle file can be (the manifest included, at its own cap), and hashes computed in streamed
chunks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.bundle import BundleError, load_bundle, read_manifest
from serving.bundle.manifest import MAX_MANIFEST_BYTES
from serving.bundle.read import MAX_FILE_BYTES


def _copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tags" / "1"
    shutil.copytree(bundle, copy)
    return copy


def test_a_symlinked_file_is_refused_even_with_the_right_hash(bundle_path: Path, tmp_path: Path) -> None:
    copy = _copy(bundle_path, tmp_path)
    elsewhere = tmp_path / "elsewhere.onnx"
    (copy / "model.onnx").rename(elsewhere)
    (copy / "model.onnx").symlink_to(elsewhere)
    with pytest.raises(
        BundleError, match=r"model\.onnx: a symbolic link \(to .*elsewhere\.onnx\); a bundle's"
    ):
        load_bundle(copy)


def test_a_file_larger_than_any_bundle_file_is_refused_unread(bundle_path: Path, tmp_path: Path) -> None:
    copy = _copy(bundle_path, tmp_path)
    huge = copy / "model.onnx"
    os.truncate(huge, 0)
    os.truncate(huge, 3 << 30)  # 3 GiB, sparse: takes no disk, and reading it whole would take 3 GiB
    assert MAX_FILE_BYTES < 3 << 30
    with pytest.raises(BundleError, match=r"model\.onnx: 3,221,225,472 bytes, larger than any bundle file"):
        load_bundle(copy)


_LOAD = """
import json, re, sys
from pathlib import Path
from serving.bundle import BundleError, load_bundle

def kib(field):
    return int(re.search(rf"^{field}:\\s+(\\d+) kB", Path("/proc/self/status").read_text(), re.M)[1])

Path("/proc/self/clear_refs").write_text("5")  # the resident peak starts again from here
before = kib("VmRSS")
try:
    load_bundle(sys.argv[1])
    error = None
except BundleError as err:
    error = str(err)
print(json.dumps({"error": error, "peak": (kib("VmHWM") - before) * 1024}))
"""


def test_a_damaged_file_is_hashed_in_chunks_never_read_whole(bundle_path: Path, tmp_path: Path) -> None:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("this kernel does not let a process reset its resident peak")
    copy = _copy(bundle_path, tmp_path)
    damaged = copy / "model.onnx"
    os.truncate(damaged, 0)
    os.truncate(damaged, 256 << 20)  # sparse zeros: not the graph the manifest's hash names
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, str(copy)], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout)
    assert found["error"] is not None and "model.onnx: sha256 does not match the manifest" in found["error"]
    # pipeline.pkl (22 MiB) is read whole, as it verifies; the 256 MiB file never is
    assert found["peak"] < 96 << 20, f"loading raised the resident peak by {found['peak'] >> 20} MiB"


def test_a_symlinked_manifest_is_refused_naming_it(bundle_path: Path, tmp_path: Path) -> None:
    copy = _copy(bundle_path, tmp_path)
    elsewhere = tmp_path / "elsewhere.json"
    (copy / "manifest.json").rename(elsewhere)
    (copy / "manifest.json").symlink_to(elsewhere)  # a valid manifest, but not the bundle's own file
    with pytest.raises(
        BundleError, match=r"manifest\.json: a symbolic link \(to .*elsewhere\.json\); a bundle's"
    ):
        load_bundle(copy)


def test_a_manifest_over_its_cap_is_refused_unread(bundle_path: Path, tmp_path: Path) -> None:
    """A valid manifest padded past 16 MiB with whitespace (valid JSON still): refused by its size,
    before a byte of it is read."""
    copy = _copy(bundle_path, tmp_path)
    manifest = copy / "manifest.json"
    size = manifest.stat().st_size
    with manifest.open("ab") as f:
        f.write(b" " * (MAX_MANIFEST_BYTES + 1 - size))
    assert json.loads(manifest.read_bytes())["name"] == "tags" and MAX_MANIFEST_BYTES == 16 << 20
    with pytest.raises(
        BundleError, match=r"manifest\.json: 16,777,217 bytes, larger than any manifest can be \(16,777,216\)"
    ):
        read_manifest(copy)
    with pytest.raises(BundleError, match=r"manifest\.json: 16,777,217 bytes"):
        load_bundle(copy)
    manifest.write_bytes(manifest.read_bytes()[:MAX_MANIFEST_BYTES])  # at the cap: read as ever
    assert read_manifest(copy).name == "tags"
