"""Segmentation and pose models served: masks and points in the caller's pixels, over KServe V2
(unmodified tritonclient) and the typed Segment / Pose calls, equal to the bundle's own answers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from serving.bundle import load_bundle
from serving.wire import tasks_pb2 as pb
from serving.wire.tasks_pb2_grpc import TasksStub
from tests.serving.payloads import images_input
from tests.serving.servers import ServerProcess, copy_bundle, running_server


@pytest.fixture(scope="module")
def task_server(
    seg_bundle: Path, native_seg_bundle: Path, pose_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("task-models")
    copy_bundle(seg_bundle, root, name="rects")
    copy_bundle(native_seg_bundle, root, name="strips")
    copy_bundle(pose_bundle, root, name="discs")
    with running_server(root, batching__max_batch_size=4, batching__max_queue_delay_us=2000) as running:
        yield running


@pytest.fixture(scope="module")
def client(task_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(task_server.address)


@pytest.fixture(scope="module")
def tasks(task_server: ServerProcess) -> Iterator[TasksStub]:
    with grpc.insecure_channel(task_server.address) as channel:
        yield TasksStub(channel)


def encoded(path: Path, size: tuple[int, int] | None = None) -> bytes:
    """The image as PNG bytes, resized to (width, height) if asked: the caller's own size."""
    with Image.open(path) as opened:
        image = opened.convert("RGB") if size is None else opened.convert("RGB").resize(size)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def seg_pngs(seg_images: Path) -> list[bytes]:
    return [encoded(p, (80, 50)) for p in sorted((seg_images / "images").glob("*.png"))[-3:]]


@pytest.fixture(scope="module")
def point_pngs(point_images: Path) -> list[bytes]:
    paths = sorted((point_images / "images").glob("*.png"))[-3:]
    return [encoded(paths[0]), encoded(paths[1], (96, 40)), encoded(paths[2], (30, 70))]


def test_metadata_describes_the_mask_and_points_outputs(client: triton.InferenceServerClient) -> None:
    seg, pose = client.get_model_metadata("rects"), client.get_model_metadata("discs")
    assert [(t.name, t.datatype, list(t.shape)) for t in seg.outputs] == [("mask", "UINT8", [-1, -1, -1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in pose.outputs] == [("points", "FP32", [-1, 1, 2])]


def test_v2_masks_come_back_at_the_callers_size_as_the_bundle_predicts(
    client: triton.InferenceServerClient, seg_bundle: Path, seg_pngs: list[bytes]
) -> None:
    masks = client.infer("rects", [images_input(seg_pngs)]).as_numpy("mask")
    expected = np.stack([a["mask"] for a in load_bundle(seg_bundle).predict(seg_pngs)])
    assert masks.dtype == np.uint8 and masks.shape == (3, 50, 80)
    np.testing.assert_array_equal(masks, expected)
    assert set(np.unique(masks)) <= {0, 1, 2}  # never Void


def test_a_prepared_tensor_gets_a_mask_at_the_tensors_size(
    client: triton.InferenceServerClient, seg_bundle: Path, seg_pngs: list[bytes]
) -> None:
    pixels = load_bundle(seg_bundle).prepare(seg_pngs)
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    masks = client.infer("rects", [tensor]).as_numpy("mask")
    assert masks.shape == (3, 32, 32)
    resized = np.stack([a["mask"] for a in load_bundle(seg_bundle).predict(seg_pngs)])
    back = np.stack(
        [np.asarray(Image.fromarray(m).resize((80, 50), Image.Resampling.NEAREST)) for m in masks]
    )
    np.testing.assert_array_equal(back, resized)


def test_images_of_different_sizes_cannot_share_one_mask_tensor(
    client: triton.InferenceServerClient, seg_pngs: list[bytes], seg_images: Path
) -> None:
    other = encoded(sorted((seg_images / "images").glob("*.png"))[0])  # 64×64, the others 80×50
    with pytest.raises(InferenceServerException) as info:
        client.infer("rects", [images_input([seg_pngs[0], other])])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "must share one size" in info.value.message() and "64x64" in info.value.message()


def test_v2_points_are_in_each_callers_pixels_as_the_bundle_predicts(
    client: triton.InferenceServerClient, pose_bundle: Path, point_pngs: list[bytes]
) -> None:
    points = client.infer("discs", [images_input(point_pngs)]).as_numpy("points")
    answers = load_bundle(pose_bundle).predict(point_pngs)
    expected = np.array([[[p["x"], p["y"]] for p in a["points"]] for a in answers], np.float32)
    assert points.shape == (3, 1, 2)
    np.testing.assert_allclose(points, expected, atol=1e-3)
    for (x, y), (width, height) in zip(points[:, 0], [(48, 48), (96, 40), (30, 70)], strict=True):
        assert 0 <= x <= width and 0 <= y <= height


def test_segment_answers_png_masks_and_the_class_table(
    tasks: TasksStub, seg_bundle: Path, seg_pngs: list[bytes]
) -> None:
    response = tasks.Segment(pb.SegmentRequest(model=pb.ModelRef(name="rects"), images=seg_pngs))
    assert [(c.id, c.name) for c in response.classes] == [
        (0, "Background"),
        (1, "red"),
        (2, "blue"),
        (3, "Void"),
    ]
    expected = load_bundle(seg_bundle).predict(seg_pngs)
    for result, answer in zip(response.results, expected, strict=True):
        with Image.open(io.BytesIO(result.mask_png)) as image:
            assert image.mode == "L" and (result.width, result.height) == image.size == (80, 50)
            np.testing.assert_array_equal(np.asarray(image), answer["mask"])


def test_segment_takes_images_of_any_sizes_in_one_call(
    tasks: TasksStub, seg_pngs: list[bytes], seg_images: Path
) -> None:
    other = encoded(sorted((seg_images / "images").glob("*.png"))[0])
    response = tasks.Segment(pb.SegmentRequest(model=pb.ModelRef(name="rects"), images=[seg_pngs[0], other]))
    assert [(r.width, r.height) for r in response.results] == [(80, 50), (64, 64)]


def test_pose_answers_named_points(tasks: TasksStub, pose_bundle: Path, point_pngs: list[bytes]) -> None:
    response = tasks.Pose(pb.PoseRequest(model=pb.ModelRef(name="discs"), images=point_pngs))
    expected = load_bundle(pose_bundle).predict(point_pngs)
    for result, answer in zip(response.results, expected, strict=True):
        assert [p.name for p in result.points] == ["centre"]
        assert result.points[0].x == pytest.approx(answer["points"][0]["x"], abs=1e-3)
        assert result.points[0].y == pytest.approx(answer["points"][0]["y"], abs=1e-3)


def test_each_task_is_refused_by_the_other_tasks_call(tasks: TasksStub, seg_pngs: list[bytes]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        tasks.Pose(pb.PoseRequest(model=pb.ModelRef(name="rects"), images=seg_pngs[:1]))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "answers segmentation, not pose; call Segment" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        tasks.Segment(pb.SegmentRequest(model=pb.ModelRef(name="discs"), images=[b"not an image"]))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_native_resolution_segmenter_answers_each_image_at_its_own_size_in_one_batch(
    tasks: TasksStub,
    client: triton.InferenceServerClient,
    native_seg_bundle: Path,
    seg_pngs: list[bytes],
    seg_images: Path,
) -> None:
    """Images of three sizes share batches (padded to the largest, cropped back) and each mask is
    the one the bundle gives that image alone; a V2 pixels tensor of any size is taken too."""
    paths = sorted((seg_images / "images").glob("*.png"))
    images = [seg_pngs[0], encoded(paths[0]), encoded(paths[1], (70, 100))]  # 80×50, 64×64, 70×100
    response = tasks.Segment(pb.SegmentRequest(model=pb.ModelRef(name="strips"), images=images))
    assert [(r.width, r.height) for r in response.results] == [(80, 50), (64, 64), (70, 100)]
    bundle = load_bundle(native_seg_bundle)
    for result, image in zip(response.results, images, strict=True):
        (alone,) = bundle.predict([image])
        with Image.open(io.BytesIO(result.mask_png)) as mask:
            assert np.mean(np.asarray(mask) == alone["mask"]) >= 0.99  # fp16 sums in another order
    pixels = bundle.prepare(images[2:])
    assert pixels.shape == (1, 3, 128, 96)  # its own size, padded to the network's stride of 32
    tensor = triton.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    assert client.infer("strips", [tensor]).as_numpy("mask").shape == (1, 128, 96)
    inputs = {t.name: list(t.shape) for t in client.get_model_metadata("strips").inputs}
    assert inputs["pixels"] == [-1, 3, -1, -1]
