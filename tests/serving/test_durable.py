"""Atomic writes keep the permissions a new file would have: a published manifest is readable by a
server that runs as another user (the Docker image's), which mkstemp's private 0600 would prevent."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from serving.bundle.durable import write_atomically


def test_an_atomic_write_gets_the_default_permissions_and_its_content(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_atomically(target, b"{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert target.read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_the_umask_of_the_process_is_respected(tmp_path: Path) -> None:
    code = "\n".join([
        "import os, sys",
        "os.umask(0o027)  # before serving.bundle.durable reads it, as a service manager would set it",
        "from pathlib import Path",
        "from serving.bundle.durable import write_atomically",
        "write_atomically(Path(sys.argv[1]), b'1')",
    ])  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], check=True)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o640
