"""Writing a bundle: assembled in a hidden staging folder, then renamed into the next free version.

A crash before the rename leaves only a hidden `.staging-*` folder (which the repository never
reads); a failed export inside `staged` leaves nothing at all.
"""

from __future__ import annotations

import os
import pickle
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serving.bundle.durable import fsync_dir, write_atomically
from serving.bundle.manifest import MANIFEST, Manifest, manifest_json
from serving.bundle.pipeline import Pipeline
from serving.bundle.read import sha256_file

__all__ = ["discard", "is_version", "next_version", "publish", "staged", "staging_folder", "write_pipeline"]


def write_pipeline(pipeline: Pipeline, path: Path) -> None:
    """A plain pickle (format 2): the weights are bytes, so reading it needs neither torch nor numpy's
    unpickling globals."""
    path.write_bytes(pickle.dumps(pipeline, protocol=5))


def publish(staging: Path, models: Path, manifest: Manifest) -> Path:
    """Hash the staged files, write the manifest, then rename the folder into the next free version.

    A rename never replaces an existing version: if another export took the number first, the next
    one is tried (an *empty* folder of that number would be replaced: nothing is lost with it).
    """
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file() and p.name != MANIFEST}
    for name in files:  # on disk for good before the rename makes them visible
        with (staging / name).open("rb+") as f:
            os.fsync(f.fileno())
    target_dir = models / manifest.name
    target_dir.mkdir(parents=True, exist_ok=True)
    version = next_version(target_dir)
    while True:
        final = manifest.model_copy(update={"version": version, "files": files})
        write_atomically(staging / MANIFEST, manifest_json(final).encode("utf-8"))
        try:
            staging.rename(target_dir / str(version))
        except OSError:
            if (target_dir / str(version)).exists():
                version += 1
                continue
            raise
        fsync_dir(target_dir)
        return target_dir / str(version)


def is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and is_version(p.name)]
    return max(versions, default=0) + 1


def staging_folder(models: Path, name: str) -> Path:
    """A hidden folder beside the versions (same file system, so the final rename is atomic)."""
    folder = models / name / f".staging-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    return folder


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged(models: Path, name: str) -> Iterator[Path]:
    """A staging folder for the next version of `models/<name>`, removed if the block fails: a
    failed export leaves nothing behind (not even an empty `models/<name>/` it created), and
    `publish` inside the block makes a version of it."""
    created = not (models / name).exists()
    folder = staging_folder(models, name)
    try:
        yield folder
    except BaseException:
        discard(folder)
        if created:
            shutil.rmtree(models / name, ignore_errors=True)
        raise
