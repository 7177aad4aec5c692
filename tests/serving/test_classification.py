"""Triton's classification extension: `class_count` k answers the top k classes as "score:index:label"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from tests.serving.payloads import images_input
from tests.serving.servers import ServerProcess


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def test_the_server_lists_the_classification_extension(client: triton.InferenceServerClient) -> None:
    assert "classification" in client.get_server_metadata().extensions


def test_class_count_answers_the_top_classes_of_the_scores(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    bundle = load_bundle(bundle_path)
    labels = bundle.manifest.labels
    answers = bundle.predict(jpegs[:3])
    result = client.infer(
        "tags", [images_input(jpegs[:3])], outputs=[triton.InferRequestedOutput("scores", class_count=2)]
    )
    top = result.as_numpy("scores")
    assert top.shape == (3, 2)
    for row, answer in zip(top, answers, strict=True):
        fields = [element.decode().split(":") for element in row]
        scores = [float(score) for score, _, _ in fields]
        assert scores == sorted(scores, reverse=True)
        expected = sorted(labels, key=lambda label: -answer["scores"][label])[:2]
        assert [label for _, _, label in fields] == expected
        assert [int(index) for _, index, _ in fields] == [labels.index(label) for label in expected]
        assert np.allclose(scores, [answer["scores"][label] for label in expected], atol=1e-5)


def test_class_count_is_capped_at_the_number_of_classes(
    client: triton.InferenceServerClient, bundle_path: Path, jpegs: list[bytes]
) -> None:
    result = client.infer(
        "tags", [images_input(jpegs[:1])], outputs=[triton.InferRequestedOutput("scores", class_count=99)]
    )
    assert result.as_numpy("scores").shape == (1, len(load_bundle(bundle_path).manifest.labels))


def test_class_count_on_an_output_without_classes_is_refused(
    client: triton.InferenceServerClient, jpegs: list[bytes]
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.infer(
            "tags", [images_input(jpegs[:1])], outputs=[triton.InferRequestedOutput("labels", class_count=2)]
        )
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "classification ranks the 'scores' output, not 'labels'" in refused.value.message()
