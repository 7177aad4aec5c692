"""Reading images: RGB uint8 (3, H, W) from any common mode, with errors naming file and origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.images import read_image
from training.errors import DataError

from .helpers import write_image


def test_an_rgb_png_is_read_exactly_as_channels_first_uint8(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", size=(20, 12))
    image = read_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 12, 20)
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(np.array(Image.open(path))))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_images_become_rgb(tmp_path: Path, mode: str) -> None:
    path = write_image(tmp_path / f"{mode}.png", size=(10, 6), mode=mode)
    image = read_image(path)
    assert image.shape == (3, 6, 10) and image.dtype == torch.uint8
    expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    if mode == "RGBA":  # alpha is dropped, not blended: colours are kept
        assert torch.equal(image, expected)
    else:
        assert (image.int() - expected.int()).abs().max() <= 1
    if mode == "L":
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_a_missing_image_names_the_file_and_where_it_was_listed(tmp_path: Path) -> None:
    path = tmp_path / "gone.jpg"
    with pytest.raises(DataError, match=rf"^labels\.csv line 9: image {path} does not exist$"):
        read_image(path, "labels.csv line 9")
    with pytest.raises(DataError, match=rf"^image {path} does not exist$"):
        read_image(path, str(path))  # an origin that is just the path is not repeated


def test_a_file_that_is_not_an_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(b"<html>not an image</html>")
    with pytest.raises(DataError, match=rf"^valid\.txt line 2: cannot read image {path}: "):
        read_image(path, "valid.txt line 2")


def test_a_cmyk_jpeg_arrives_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.fromarray(np.full((8, 8, 3), (200, 40, 40), np.uint8)).convert("CMYK").save(path, quality=100)
    image = read_image(path)
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8
    assert (image[:, 4, 4].int() - torch.tensor([200, 40, 40])).abs().max() <= 3


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(8 * 64).reshape(8, 64) * 128).astype(np.uint16)  # 0 … 65408
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    image = read_image(path)
    assert image.shape == (3, 8, 64) and image.dtype == torch.uint8
    assert (image[0].int() - torch.from_numpy(ramp >> 8).int()).abs().max() <= 1
