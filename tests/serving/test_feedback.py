"""Feedback over the typed API: corrections checked against the model that answered, stored durably in
the layout `train-kit finetune` reads, refused precisely (and nothing written) when they do not fit."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.serving.servers import copy_bundle, running_server


@pytest.fixture(scope="module")
def store(
    bundle_path: Path, seg_bundle: Path, pose_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TasksStub, Path]]:
    root = tmp_path_factory.mktemp("feedback-server")
    for bundle, name in ((bundle_path, "tags"), (seg_bundle, "rects"), (pose_bundle, "discs")):
        copy_bundle(bundle, root / "models", name=name)
    feedback = root / "feedback"
    with (
        running_server(root / "models", feedback__dir=feedback, feedback__max_record_mb=0.1) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        yield TasksStub(channel), feedback


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def refused(stub: TasksStub, request: pb.FeedbackRequest, feedback: Path) -> grpc.RpcError:
    before = files(feedback)
    with pytest.raises(grpc.RpcError) as info:
        stub.Feedback(request)
    assert files(feedback) == before  # nothing written
    return info.value


def test_a_multilabel_correction_is_stored_as_a_planet_style_row(
    store: tuple[TasksStub, Path], jpegs: list[bytes]
) -> None:
    stub, feedback = store
    answer = stub.Feedback(
        pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=jpegs[0], labels=["square", "red"])
    )
    assert answer.records >= 1 and len(answer.record_id) == 15
    row = next(
        r for r in rows(feedback / "tags" / "labels.csv") if r["image_name"].startswith(answer.record_id)
    )
    assert row == {
        "image_name": f"{answer.record_id}.jpg",
        "tags": "red square",
        "version": "1",
    }  # model order
    assert (feedback / "tags" / "images" / row["image_name"]).read_bytes() == jpegs[0]


def test_parallel_corrections_all_land_with_distinct_ids(
    store: tuple[TasksStub, Path], jpegs: list[bytes]
) -> None:
    stub, feedback = store
    request = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=jpegs[1], labels=["blue"])
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stub.Feedback(request), range(16)))
    ids = {a.record_id for a in answers}
    stored = rows(feedback / "tags" / "labels.csv")
    assert len(ids) == 16 and ids <= {r["image_name"].split(".")[0] for r in stored}
    assert len(stored) == max(a.records for a in answers)
    assert all((feedback / "tags" / "images" / r["image_name"]).is_file() for r in stored)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"labels": ["purple"]}, "unknown label 'purple'; the model knows"),
        ({"labels": ["red", "red"]}, "a label is given twice"),
        ({}, "a multilabel model's correction is `labels` alone"),
        ({"labels": ["red"], "mask_png": b"x"}, "a multilabel model's correction is `labels` alone"),
    ],
)
def test_a_multilabel_correction_that_does_not_fit_is_refused(
    store: tuple[TasksStub, Path], jpegs: list[bytes], fields: dict[str, Any], message: str
) -> None:
    stub, feedback = store
    request = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=jpegs[0], **fields)
    err = refused(stub, request, feedback)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()


def test_a_mask_is_stored_in_camvids_layout_and_checked_against_the_image(
    store: tuple[TasksStub, Path],
) -> None:
    stub, feedback = store
    image = png(np.full((40, 60, 3), 120, np.uint8))
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 10:30] = 2
    answer = stub.Feedback(
        pb.FeedbackRequest(model=pb.ModelRef(name="rects"), image=image, mask_png=png(mask))
    )
    stored = feedback / "rects" / "labels" / f"{answer.record_id}_P.png"
    np.testing.assert_array_equal(np.asarray(Image.open(stored)), mask)
    assert (feedback / "rects" / "codes.txt").read_text().split() == ["Background", "red", "blue", "Void"]
    assert rows(feedback / "rects" / "records.csv")[-1]["image_name"] == f"{answer.record_id}.png"
    for bad, message in [
        (png(mask[:, :50]), "mask_png is 50×40, the image 60×40; they must match"),
        (png(np.full((40, 60), 9, np.uint8)), "mask_png holds class id 9; the model has 4"),
        (png(np.zeros((40, 60, 3), np.uint8)), "must be an 8-bit grayscale PNG"),
        (b"not a png", "mask_png is not a readable PNG"),
    ]:
        request = pb.FeedbackRequest(model=pb.ModelRef(name="rects"), image=image, mask_png=bad)
        err = refused(stub, request, feedback)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()


def test_points_are_stored_and_must_lie_inside_the_image(store: tuple[TasksStub, Path]) -> None:
    stub, feedback = store
    image = png(np.full((30, 50, 3), 60, np.uint8))
    ok = pb.FeedbackRequest(
        model=pb.ModelRef(name="discs"), image=image, points=[pb.Point(name="centre", x=12.5, y=29.0)]
    )
    answer = stub.Feedback(ok)
    assert rows(feedback / "discs" / "points.csv")[-1] == {
        "image_name": f"{answer.record_id}.png", "centre_x": "12.50", "centre_y": "29.00", "version": "1",
    }  # fmt: skip
    for points, message in [
        ([pb.Point(name="centre", x=51, y=3)], "point 'centre' at (51, 3) lies outside the 50×30 image"),
        ([pb.Point(name="nose", x=1, y=1)], "points must name each of ['centre'] once"),
        ([pb.Point(name="centre", x=1, y=1)] * 2, "points must name each of ['centre'] once"),
    ]:
        request = pb.FeedbackRequest(model=pb.ModelRef(name="discs"), image=image, points=points)
        err = refused(stub, request, feedback)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()


def test_bad_images_and_oversized_records_are_refused(store: tuple[TasksStub, Path]) -> None:
    stub, feedback = store
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)  # ~120 KB as PNG
    for image, message in [
        (b"garbage", "image: not a decodable image"),
        (png(noise), "over the limit of 104,857 bytes"),
        (b"", "no image"),
    ]:
        request = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=image, labels=["red"])
        err = refused(stub, request, feedback)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()
    err = refused(stub, pb.FeedbackRequest(model=pb.ModelRef(name="nope"), image=b"x"), feedback)
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_a_full_store_says_so(bundle_path: Path, jpegs: list[bytes], tmp_path: Path) -> None:
    copy_bundle(bundle_path, tmp_path / "models")
    with (
        running_server(tmp_path / "models", feedback__dir=tmp_path / "fb", feedback__max_records=2) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = TasksStub(channel)
        request = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=jpegs[0], labels=["red"])
        assert [stub.Feedback(request).records for _ in range(2)] == [1, 2]
        err = refused(stub, request, tmp_path / "fb")
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "maximum of 2 records" in err.details()


def test_a_crash_while_storing_loses_only_that_record(
    bundle_path: Path, jpegs: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record is its image, then its CSV row: dying between the two leaves an image no row names,
    and the CSV as it was, readable, with every earlier record."""
    from serving.bundle import load_bundle
    from serving.server import feedback_store as module

    bundle = load_bundle(bundle_path)
    store = module.FeedbackStore(tmp_path, max_records=10)
    correction, limits = module.Correction(jpegs[0], ["red"]), (10**8, 10**8)
    first, _ = store.add(bundle, correction, *limits)
    real_write = module.write_atomically

    def dies_on_the_csv(path: Path, data: bytes) -> None:
        if path.suffix == ".csv":
            raise OSError("power cut")
        real_write(path, data)

    monkeypatch.setattr(module, "write_atomically", dies_on_the_csv)
    with pytest.raises(OSError, match="power cut"):
        store.add(bundle, correction, *limits)
    monkeypatch.undo()
    assert [r["image_name"] for r in rows(tmp_path / "tags" / "labels.csv")] == [f"{first}.jpg"]
    assert len(list((tmp_path / "tags" / "images").iterdir())) == 2  # the orphan, which no row names
    assert not [p for p in (tmp_path / "tags").rglob(".*.tmp")]  # no half-written file anywhere
    third, count = module.FeedbackStore(tmp_path, max_records=10).add(
        bundle, correction, *limits
    )  # restarted
    assert count == 2 and third != first


def test_a_huge_image_is_held_to_the_memory_budget_as_an_inference_item_is(
    bundle_path: Path, jpegs: list[bytes], tmp_path: Path
) -> None:
    """A flat 39.7-megapixel PNG is ~120 KB sent and hundreds of MiB decoded: a record's image is
    budgeted from its header before it decodes, as an inference item's is, so under a 64 MiB budget
    it is refused RESOURCE_EXHAUSTED (nothing written) while a normal record is stored."""
    copy_bundle(bundle_path, tmp_path / "models")
    feedback = tmp_path / "fb"
    feedback.mkdir()
    flat = io.BytesIO()
    Image.new("RGB", (6300, 6300), (200, 40, 40)).save(flat, "PNG")
    with (
        running_server(tmp_path / "models", feedback__dir=feedback, max_inflight_mb=64) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = TasksStub(channel)
        huge = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=flat.getvalue(), labels=["red"])
        err = refused(stub, huge, feedback)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert re.search(
            r"decoding it \(a 6300×6300 RGB PNG\) holds [\d,]+\.\d MiB, which can never fit in the server's "
            r"64 MiB for requests in flight \(max_inflight_mb\)",
            err.details(),
        ), err.details()
        normal = pb.FeedbackRequest(model=pb.ModelRef(name="tags"), image=jpegs[0], labels=["red"])
        assert stub.Feedback(normal).records == 1
    assert [r["tags"] for r in rows(feedback / "tags" / "labels.csv")] == ["red"]
