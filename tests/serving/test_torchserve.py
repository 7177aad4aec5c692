"""The same bundles under a real TorchServe: same answers as serve-kit and as the bundle itself,
per-request errors, batching; images of each task and texts. The archives are packed here with
torch-model-archiver, as `train-kit archive` packs them."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image

from serving.bundle import load_bundle
from serving.bundle.text_preprocess import MAX_TEXT_BYTES
from tests.serving.payloads import TEXTS, images_input
from tests.serving.servers import ServerProcess
from tests.serving.torchserve import TorchServe, archive, running_torchserve


@pytest.fixture(scope="module")
def torchserve(
    bundle_path: Path,
    seg_bundle: Path,
    pose_bundle: Path,
    sentiment_bundle: Path,
    classify_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TorchServe]:
    root = tmp_path_factory.mktemp("torchserve")
    bundles = (bundle_path, seg_bundle, pose_bundle, sentiment_bundle, classify_bundle)
    models = ",".join(archive(bundle, root / "store") for bundle in bundles)
    with running_torchserve(root / "store", models, root / "instance") as running:
        yield running


def post(url: str, body: bytes, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def multipart(field: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str]:
    boundary = "kit-boundary-7f3a"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x"\r\n'
    body = f"{head}Content-Type: {content_type}\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def grpc_answers(server: ServerProcess, images: list[bytes]) -> tuple[list[str], np.ndarray]:
    result = triton.InferenceServerClient(server.address).infer("tags", [images_input(images)])
    return [b.decode() for b in result.as_numpy("labels")], result.as_numpy("scores")


def test_every_way_of_sending_an_image_gets_the_grpc_servers_answer(
    torchserve: TorchServe, server: ServerProcess, jpegs: list[bytes]
) -> None:
    url = f"{torchserve.inference}/predictions/tags"
    labels, scores = grpc_answers(server, jpegs)
    names = ["blue", "green", "red", "square"]
    for index, image in enumerate(jpegs):
        form, form_type = multipart("data", image)
        as_json = json.dumps({"data": base64.b64encode(image).decode()}).encode()
        for body, content_type in [(image, "image/jpeg"), (form, form_type), (as_json, "application/json")]:
            status, answer = post(url, body, content_type)
            assert status == 200, (content_type, answer)
            assert " ".join(answer["labels"]) == labels[index]
            np.testing.assert_allclose([answer["scores"][n] for n in names], scores[index], atol=1e-4)


def test_a_corrupt_image_gets_400_while_its_batch_neighbours_succeed(
    torchserve: TorchServe, jpegs: list[bytes]
) -> None:
    url = f"{torchserve.inference}/predictions/tags"
    bodies = [*jpegs[:3], b"not an image", *jpegs[3:6]]
    with ThreadPoolExecutor(len(bodies)) as pool:
        outcomes = list(pool.map(lambda body: post(url, body, "application/octet-stream"), bodies))
    assert [status for status, _ in outcomes] == [200, 200, 200, 400, 200, 200, 200]
    assert outcomes[3][1]["error"].startswith("not a decodable image")
    assert all("labels" in answer for status, answer in outcomes if status == 200)


def test_concurrent_requests_are_batched_by_torchserve(torchserve: TorchServe, jpegs: list[bytes]) -> None:
    url = f"{torchserve.inference}/predictions/tags"
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: post(url, jpegs[i % len(jpegs)], "image/jpeg"), range(16)))
    assert all(status == 200 for status, _ in outcomes)
    sizes = [int(n) for n in re.findall(r"batch_size=(\d+)", torchserve.model_log())]
    assert sizes and max(sizes) > 1, f"batch sizes seen: {sizes}"


def test_masks_and_points_come_back_as_json_in_the_request_images_pixels(
    torchserve: TorchServe, seg_bundle: Path, pose_bundle: Path, seg_images: Path, point_images: Path
) -> None:
    seg_png = sorted((seg_images / "images").glob("*.png"))[-1].read_bytes()
    status, answer = post(f"{torchserve.inference}/predictions/rects", seg_png, "image/png")
    assert status == 200, answer
    (expected,) = load_bundle(seg_bundle).predict([seg_png])
    with Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))) as mask:
        np.testing.assert_array_equal(np.asarray(mask), expected["mask"])
    assert (answer["width"], answer["height"]) == (64, 64)
    assert answer["classes"] == ["Background", "red", "blue", "Void"]

    point_png = sorted((point_images / "images").glob("*.png"))[-1].read_bytes()
    status, answer = post(f"{torchserve.inference}/predictions/discs", point_png, "image/png")
    assert status == 200, answer
    (expected,) = load_bundle(pose_bundle).predict([point_png])
    assert [p["name"] for p in answer["points"]] == ["centre"]
    assert answer["points"][0]["x"] == pytest.approx(expected["points"][0]["x"], abs=1e-3)
    assert answer["points"][0]["y"] == pytest.approx(expected["points"][0]["y"], abs=1e-3)


def test_a_classify_model_answers_one_label_with_every_class_probability(
    torchserve: TorchServe, classify_bundle: Path, jpegs: list[bytes]
) -> None:
    url = f"{torchserve.inference}/predictions/colours"
    expected = load_bundle(classify_bundle).predict(jpegs)
    with ThreadPoolExecutor(len(jpegs)) as pool:  # batched together, answered one by one
        outcomes = list(pool.map(lambda image: post(url, image, "image/jpeg"), jpegs))
    for (status, answer), alone in zip(outcomes, expected, strict=True):
        assert status == 200, answer
        assert answer["label"] == alone["label"]
        assert answer["scores"] == pytest.approx(alone["scores"], abs=1e-4)
        assert list(answer["scores"]) == ["blue", "green", "red"]


def test_every_way_of_sending_a_text_gets_the_bundles_own_answer(
    torchserve: TorchServe, sentiment_bundle: Path
) -> None:
    url = f"{torchserve.inference}/predictions/reviews"
    expected = load_bundle(sentiment_bundle).predict(TEXTS)
    for text, alone in zip(TEXTS, expected, strict=True):
        data = text.encode()
        form, form_type = multipart("data", data, "text/plain")
        as_json = json.dumps({"text": text}).encode()
        ways = [
            (data, "text/plain; charset=utf-8"),
            (data, "application/octet-stream"),
            (form, form_type),
            (as_json, "application/json"),
        ]
        for body, content_type in ways:
            status, answer = post(url, body, content_type)
            assert status == 200, (content_type, answer)
            assert answer["label"] == alone["label"]
            assert answer["scores"] == pytest.approx(alone["scores"], abs=1e-4)


def test_texts_batched_with_longer_ones_get_their_answers_alone_and_bad_ones_a_400_each(
    torchserve: TorchServe, sentiment_bundle: Path
) -> None:
    url = f"{torchserve.inference}/predictions/reviews"
    bundle = load_bundle(sentiment_bundle)
    bad = {
        "   ": "text is empty",
        "\xff\xfe not UTF-8": "text is not valid UTF-8",
        '{"words": "no text key"}': "JSON body needs one of ['text', 'data']",
        "x"
        * (
            MAX_TEXT_BYTES + 1
        ): "text of 1,048,577 ",  # a text/plain body (bytes or str, as TorchServe has it)
        json.dumps({"text": "x" * (MAX_TEXT_BYTES + 1)}): "text of 1,048,577 characters, over the limit",
    }
    bodies = [text.encode("latin-1" if "\xff" in text else "utf-8") for text in [*TEXTS, *bad, *TEXTS]]
    kinds = ["application/json" if body.startswith(b"{") else "text/plain" for body in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        outcomes = list(pool.map(post, [url] * len(bodies), bodies, kinds))
    assert [status for status, _ in outcomes] == [200] * len(TEXTS) + [400] * len(bad) + [200] * len(TEXTS)
    for (_, answer), message in zip(outcomes[len(TEXTS) : -len(TEXTS)], bad.values(), strict=True):
        assert answer["error"].startswith(message), answer
    for (_, answer), text in zip(outcomes[: len(TEXTS)] + outcomes[-len(TEXTS) :], TEXTS * 2, strict=True):
        (alone,) = bundle.predict([text])
        assert answer["label"] == alone["label"]
        assert answer["scores"] == pytest.approx(alone["scores"], abs=1e-4)
    sizes = [int(n) for n in re.findall(r"batch_size=(\d+)", torchserve.model_log())]
    assert max(sizes) > 1, f"batch sizes seen: {sizes}"
