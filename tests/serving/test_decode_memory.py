"""The memory budget bounds what decoding holds: each image's decoded size, read from its header,
is held in the budget before a pixel is decoded (a 1 MB request of PNGs declares gigabytes)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from serving.bundle.images import decode_pixels, resize_pixels
from serving.bundle.pipeline import ImagePreprocess
from tests.serving.payloads import images_input
from tests.serving.servers import copy_bundle, running_server

MiB = 1 << 20


def _kib(pid: int | str, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found is not None, f"/proc/{pid}/status has no {field}"
    return int(found[1])


def _encoded(mode: str, side: int, fmt: str, **options: object) -> bytes:
    """A flat image: megapixels that compress to almost nothing."""
    colour: object = {"RGB": (200, 40, 40), "RGBA": (200, 40, 40, 90), "I;16": 30_000}.get(mode, 100)
    buffer = io.BytesIO()
    Image.new(mode, (side, side), colour).save(buffer, fmt, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


_MEASURE = """
import io, json, re, sys
from pathlib import Path
from PIL import Image
from serving.bundle.pipeline import ImagePreprocess

mode, fmt, resize, options = json.loads(sys.argv[1])
colour = {"RGB": (200, 40, 40), "RGBA": (200, 40, 40, 90), "I;16": 30_000}.get(mode, 100)
buffer = io.BytesIO()
Image.new(mode, (3000, 3000), colour).save(buffer, fmt, **options)
preprocess = ImagePreprocess(32, (0.5,) * 3, (0.5,) * 3, resize)
header = preprocess.read_header(buffer.getvalue())
holds = header.holds

def kib(field):
    return int(re.search(rf"^{field}:\\s+(\\d+) kB", Path("/proc/self/status").read_text(), re.M)[1])

Path("/proc/self/clear_refs").write_text("5")  # the resident peak starts again from here
before = kib("VmRSS")
preprocess.prepare_header(header)
print(json.dumps({"holds": holds, "peak": (kib("VmHWM") - before) * 1024}))
"""


def _measured(mode: str, fmt: str, resize: str, options: dict[str, object]) -> tuple[float, float]:
    """(MiB the header says decoding holds, MiB decoding raised a fresh process's resident peak by)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("this kernel does not let a process reset its resident peak")
    argument = json.dumps([mode, fmt, resize, options])
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, argument], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout)
    return found["holds"] / MiB, found["peak"] / MiB


@pytest.mark.parametrize(
    ("mode", "fmt", "resize", "options"),
    [
        ("RGB", "PNG", "squish", {}),
        ("RGBA", "PNG", "squish", {}),
        ("I;16", "PNG", "squish", {}),
        ("RGB", "WEBP", "squish", {"lossless": True}),
        ("RGB", "JPEG", "squish", {"progressive": True}),
        ("RGB", "PNG", "pad", {}),
    ],
)
def test_an_images_header_tells_what_decoding_it_holds(
    mode: str, fmt: str, resize: str, options: dict[str, object]
) -> None:
    holds, peak = _measured(mode, fmt, resize, options)
    # never more than it said; not so much less that the budget turns requests away for nothing
    assert peak <= holds + 2, f"{mode} {fmt}: decoding held {peak:.0f} MiB, the header said {holds:.0f}"
    assert peak >= holds / 2, f"{mode} {fmt}: decoding held {peak:.0f} MiB, the header said {holds:.0f}"


def test_a_large_jpeg_decodes_at_a_reduced_scale_within_parity_of_the_full_decode(bundle_path: Path) -> None:
    """Served large JPEGs decode at 1/2..1/8 scale (libjpeg's draft: less memory, less time), never
    below 4× the model's side; the answers stay within the export's default parity tolerance (0.01
    in score) of the full decode that training's loaders use."""
    bundle = load_bundle(bundle_path)
    pre = bundle.pipeline.preprocess
    assert isinstance(pre, ImagePreprocess)
    sample = Path(np.__file__).parents[1] / "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    if not sample.is_file():
        pytest.skip("matplotlib's sample photo is not installed")
    photo = Image.open(sample).convert("RGB")
    images = []
    for scale in (2, 4, 8):
        buffer = io.BytesIO()
        photo.resize((512 * scale, 600 * scale), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    headers = [pre.read_header(data) for data in images]
    assert all(max(h.image.size) < max(h.size) for h in headers)  # drafted: decoded smaller than sent
    assert all(min(h.image.size) >= 4 * pre.size for h in headers)
    for header in headers:
        header.image.close()

    served = bundle.predict(images)
    full = [resize_pixels(decode_pixels(data), pre.size) for data in images]
    scores = bundle.runtime("onnx").run(pre(full))
    expected = bundle.pipeline.postprocess(scores, [h.size for h in headers])
    for got, want in zip(served, expected, strict=True):
        differences = [abs(got["scores"][k] - want["scores"][k]) for k in want["scores"]]
        assert max(differences) <= 0.01, (got, want)
        # a label may flip only where its score sits on the threshold (0.2), as the export allows
        flipped = set(got["labels"]) ^ set(want["labels"])
        assert all(abs(want["scores"][k] - 0.2) <= 0.01 for k in flipped), (got, want)
    for data, pixels in zip(images, full, strict=True):
        drafted = pre.prepare_item(data).item
        grey = np.abs(drafted - pre.scaled(pixels)) * np.asarray(pre.std, np.float32).reshape(3, 1, 1) * 255
        assert grey.max() <= 4.5 and grey.mean() <= 0.6, (grey.max(), grey.mean())


def test_decoding_is_held_to_the_memory_budget_whatever_a_request_declares(
    bundle_path: Path, tmp_path: Path
) -> None:
    """8 PNGs of 39.7 megapixels (a flat colour: 1 MB on the wire) are 1.2 GB to decode at once;
    with a 256 MiB budget they decode in turn, and one that could never fit is refused."""
    models = tmp_path / "models"
    copy_bundle(bundle_path, models)
    pngs = [_encoded("RGB", 6300, "PNG")] * 8
    with running_server(models, max_inflight_mb=256) as server:
        client = triton.InferenceServerClient(server.address)
        client.infer("tags", [images_input([_encoded("RGB", 64, "PNG")])])  # warm: pools and arenas exist
        before = _kib(server.process.pid, "VmRSS")
        result = client.infer("tags", [images_input(pngs)], client_timeout=120)
        peak = (_kib(server.process.pid, "VmHWM") - before) / 1024
        assert result.as_numpy("scores").shape == (8, 4)

        with pytest.raises(InferenceServerException) as never:  # 8 bytes a pixel: RGBA, then RGB
            client.infer("tags", [images_input([pngs[0], _encoded("RGBA", 6300, "PNG")])])
    assert peak <= 256 + 200, f"peak RSS rose by {peak:.0f} MiB under a 256 MiB budget"
    assert never.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert re.fullmatch(
        r"item 1: decoding it \(a 6300×6300 RGBA PNG\) holds 30\d\.\d MiB, which can never fit in the "
        r"server's 256 MiB for requests in flight \(max_inflight_mb\) beside the \d\.\d MiB this "
        r"request holds already; send a smaller image",
        never.value.message(),
    ), never.value.message()
