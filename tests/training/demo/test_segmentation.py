"""The segmentation demo set: CamVid's layout, masks that match the painted items, Void on the rims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.training.demo.fakes import write_fake_fashion_mnist
from training.demo.segmentation import CODES, VOID, build_segmentation_scenes, mask_of, mask_path
from training.errors import ConfigError


def test_a_mask_gives_solid_item_pixels_their_class_rims_void_and_the_rest_background() -> None:
    alphas = np.zeros((2, 4, 4), np.float32)
    alphas[0, :2, :2] = 1.0  # item 0 (class 3): solid in the top-left
    alphas[0, 2, 0] = 0.3  # ... with a faint rim pixel
    alphas[1, 1, 1] = 0.9  # item 1 (class 7) painted later, on top of item 0 at (1, 1)
    alphas[1, 0, 0] = 0.2  # its faint rim over item 0's solid pixel: ambiguous
    mask = mask_of(alphas, [3, 7])
    assert mask[0, 1] == mask[1, 0] == 1 + 3
    assert mask[1, 1] == 1 + 7
    assert mask[0, 0] == mask[2, 0] == VOID
    assert mask[3, 3] == 0 and CODES[0] == "Background" and CODES[VOID] == "Void"


def test_the_set_is_laid_out_like_camvid_and_masks_match_images(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm")
    out = tmp_path / "seg"
    summary = build_segmentation_scenes(out, n_train=6, n_valid=3, size=64, root=tmp_path / "fm")
    assert sorted(p.name for p in out.iterdir()) == ["codes.txt", "images", "labels", "valid.txt"]
    assert (out / "codes.txt").read_text().splitlines() == list(CODES)
    assert (out / "valid.txt").read_text().splitlines() == [f"valid_{i:05d}.jpg" for i in range(3)]
    for image in sorted((out / "images").iterdir()):
        with Image.open(image) as picture, Image.open(mask_path(image)) as mask:
            assert picture.size == mask.size == (64, 64) and mask.mode == "L"
            assert int(np.asarray(mask).max()) < len(CODES)
    counts = summary.pixel_counts
    assert counts["Background"] > 0 and counts["Void"] > 0 and sum(counts[c] for c in CODES[1:-1]) > 0
    assert sum(counts.values()) == 9 * 64 * 64


def test_the_same_seed_gives_the_same_bytes_and_the_size_must_suit_a_unet(tmp_path: Path) -> None:
    write_fake_fashion_mnist(tmp_path / "fm")
    a = build_segmentation_scenes(tmp_path / "a", n_train=2, n_valid=1, size=64, root=tmp_path / "fm").out
    b = build_segmentation_scenes(tmp_path / "b", n_train=2, n_valid=1, size=64, root=tmp_path / "fm").out
    for path in sorted(a.rglob("*.*")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_segmentation_scenes(tmp_path / "c", size=70, root=tmp_path / "fm")
