"""The loaders: a `DataBunch` yields normalized float batches and targets on its device."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from training.data import DataBunch, ItemList, LabelledData, get_transforms, imagenet_stats
from training.data.images import read_image
from training.data.show import show_batch
from training.errors import DataError

from .helpers import tag_source

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def src(tag_images: Path) -> LabelledData:
    """72 training and 24 validation 32px images, tags blue/green/red/square, no augmentation."""
    return tag_source(tag_images).transform(size=32)


def bunch(src: LabelledData, bs: int = 16, num_workers: int = 0) -> DataBunch:
    return src.databunch(bs=bs, num_workers=num_workers, device="cpu")


def first_batch(data: DataBunch, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    data.train_dl.set_epoch(epoch)
    return next(iter(data.train_dl))


def test_training_batches_are_float_images_in_0_1_with_multi_hot_targets_on_the_device(
    src: LabelledData,
) -> None:
    x, y = next(iter(bunch(src).train_dl))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and x.device == CPU
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.5
    assert y.shape == (16, 4) and y.dtype == torch.float32 and y.device == CPU
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert y[:, :3].sum(1).tolist() == [1.0] * 16  # exactly one colour each; "square" is optional


def test_shuffled_images_keep_their_own_labels(src: LabelledData) -> None:
    x, y = next(iter(bunch(src, bs=32).train_dl))
    strongest_channel = x.mean((2, 3)).argmax(1)  # R, G, B = 0, 1, 2; classes are blue, green, red
    assert (2 - strongest_channel).tolist() == y[:, :3].argmax(1).tolist()


def test_the_last_partial_training_batch_is_dropped_but_validation_keeps_every_item(
    src: LabelledData,
) -> None:
    data = bunch(src, bs=20)
    assert len(data.train_dl) == 3  # 72 // 20
    assert sum(len(x) for x, _ in data.train_dl) == 60
    assert len(data.valid_dl) == 1  # validation batches are twice as large
    assert sum(len(x) for x, _ in data.valid_dl) == 24


def test_validation_batches_are_the_listed_images_in_order_with_their_labels(
    src: LabelledData, tag_images: Path
) -> None:
    x, y = next(iter(bunch(src).valid_dl))
    assert torch.equal(y, src.y_valid)
    expected = torch.stack([read_image(tag_images / "train" / f"img_{i:03d}.jpg") for i in (72, 73, 95)])
    assert torch.equal(x[[0, 1, 23]], expected.float() / 255)


def test_raw_batches_are_uint8_as_the_workers_made_them(src: LabelledData) -> None:
    data = bunch(src).normalize(imagenet_stats)
    x, y = next(data.valid_dl.raw())
    assert x.dtype == torch.uint8 and x.shape == (24, 3, 32, 32)
    assert torch.equal(y, src.y_valid)


def test_normalize_with_computed_stats_gives_zero_mean_unit_std_training_batches(src: LabelledData) -> None:
    data = bunch(src, bs=24).normalize()  # 72 = 3 × 24: every training image is in some batch
    means, stds = data.stats or ((), ())
    assert len(means) == 3 and len(stds) == 3
    x = torch.cat([x for x, _ in data.train_dl])
    assert x.shape[0] == 72
    assert x.mean((0, 2, 3)).abs().max() < 1e-3
    assert (x.std((0, 2, 3), correction=0) - 1).abs().max() < 1e-3
    assert data.valid_dl.stats == data.stats


def test_normalize_with_imagenet_stats_applies_them_to_every_loader(
    src: LabelledData, tag_images: Path
) -> None:
    data = bunch(src.add_test([tag_images / "train" / "img_000.jpg"])).normalize(imagenet_stats)
    assert data.stats == imagenet_stats
    assert [dl.stats for dl in data.loaders()] == [imagenet_stats] * 3
    raw, _ = next(data.valid_dl.raw())
    x, _ = next(iter(data.valid_dl))
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in imagenet_stats)
    torch.testing.assert_close(x, (raw.float() / 255 - mean) / std)


def test_progressive_resizing_makes_bigger_batches_and_shares_the_same_label_tensors(
    src: LabelledData,
) -> None:
    bigger = src.transform(size=48)
    data = bigger.databunch(bs=8, num_workers=0, device="cpu")
    x, _ = next(iter(data.train_dl))
    assert x.shape == (8, 3, 48, 48)
    assert data.size == 48 and src.size == 32  # the original is untouched
    assert data.src.y_train is src.y_train and data.src.y_valid is src.y_valid
    assert data.src.encoder is src.encoder and data.classes == src.classes
    assert next(iter(data.valid_dl))[0].shape == (16, 3, 48, 48)


def test_resizing_later_does_not_read_the_label_files_again(small_tags: Path) -> None:
    src = tag_source(small_tags).transform(size=16)
    (small_tags / "labels.csv").unlink()
    (small_tags / "valid.txt").unlink()
    x, y = next(iter(src.transform(size=24).databunch(bs=4, num_workers=0, device="cpu").valid_dl))
    assert x.shape == (3, 3, 24, 24)
    assert torch.equal(y, src.y_valid)


def test_a_test_set_is_loaded_in_order_with_empty_targets(src: LabelledData, tag_images: Path) -> None:
    paths = [tag_images / "train" / f"img_{i:03d}.jpg" for i in (4, 0, 7)]
    data = bunch(src.add_test(paths))
    assert data.test_dl is not None
    x, y = next(iter(data.test_dl))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (3, 0) and y.numel() == 0
    assert torch.equal(x[1], read_image(paths[1]).float() / 255)


def test_a_test_set_can_be_an_item_list_and_its_paths_are_checked(
    src: LabelledData, tag_images: Path
) -> None:
    items = ItemList.from_folder(tag_images / "train").subset([0, 1])
    assert bunch(src.add_test(items)).test_dl is not None
    with pytest.raises(DataError, match=r"img_999\.jpg: no such file"):
        src.add_test([tag_images / "train" / "img_999.jpg"])


def test_without_a_test_set_there_is_no_test_loader(src: LabelledData) -> None:
    data = bunch(src)
    assert data.test_dl is None
    assert data.loaders() == [data.train_dl, data.valid_dl]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_corrupt_image_names_the_file_and_its_csv_line_when_its_batch_loads(
    small_tags: Path, num_workers: int
) -> None:
    src = tag_source(small_tags).transform(size=16)  # labelling reads no pixels: the file is listed fine
    broken = small_tags / "train" / "img_005.jpg"
    broken.write_bytes(b"this is not a JPEG" * 20)
    data = src.databunch(bs=4, num_workers=num_workers, device="cpu")
    # With a worker, the error is re-raised as the same type, its message inside the worker's traceback.
    with pytest.raises(
        DataError, match=rf"labels\.csv line 7: cannot read image {re.escape(str(broken))}"
    ) as err:
        for _ in data.train_dl:
            pass
    # The traceback holds the failed loader in a reference cycle; left to the garbage collector, its
    # worker is shut down in the wrong order and a later test waits out a 5 s join. Free it now.
    err.value.__traceback__ = None
    del err


def test_an_image_deleted_after_labelling_names_the_file_and_its_csv_line(small_tags: Path) -> None:
    src = tag_source(small_tags).transform(size=16)
    gone = small_tags / "train" / "img_010.jpg"
    gone.unlink()
    with pytest.raises(
        DataError, match=rf"^labels\.csv line 12: image {re.escape(str(gone))} does not exist$"
    ):
        next(iter(src.databunch(bs=4, num_workers=0, device="cpu").valid_dl))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_set_epoch_replays_the_same_augmented_batch_and_another_epoch_differs(
    src: LabelledData, num_workers: int
) -> None:
    augmented = src.transform(get_transforms(flip_vert=True, p_affine=1.0, p_lighting=1.0))
    data = bunch(augmented, num_workers=num_workers)
    x3, y3 = first_batch(data, 3)
    again_x, again_y = first_batch(data, 3)
    resumed_x, resumed_y = first_batch(bunch(augmented, num_workers=num_workers), 3)  # a fresh run
    x4, y4 = first_batch(data, 4)
    assert torch.equal(again_x, x3) and torch.equal(again_y, y3)
    assert torch.equal(resumed_x, x3) and torch.equal(resumed_y, y3)
    assert not torch.equal(x4, x3) and not torch.equal(y4, y3)


def test_without_set_epoch_each_pass_draws_a_new_order(src: LabelledData) -> None:
    data = bunch(src)
    _, first = next(iter(data.train_dl))
    _, second = next(iter(data.train_dl))
    assert not torch.equal(first, second)


def test_the_same_seed_gives_the_same_order_and_another_seed_another(src: LabelledData) -> None:
    def order(seed: int) -> torch.Tensor:
        return next(iter(src.databunch(bs=16, num_workers=0, device="cpu", seed=seed).train_dl))[1]

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))


def test_loading_augmented_batches_leaves_the_global_random_state_alone(src: LabelledData) -> None:
    data = bunch(src.transform(get_transforms(p_affine=1.0, p_lighting=1.0)))
    before = torch.random.get_rng_state()
    for _ in data.train_dl:
        pass
    assert torch.equal(torch.random.get_rng_state(), before)


def test_channels_last_batches_keep_their_values(src: LabelledData) -> None:
    plain, _ = next(iter(bunch(src).valid_dl))
    x, _ = next(iter(bunch(src).to_channels_last().valid_dl))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, plain)


def test_the_device_defaults_to_cuda_when_there_is_one(src: LabelledData) -> None:
    data = src.databunch(bs=8, num_workers=0)
    assert data.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_arrive_normalized_on_the_gpu(src: LabelledData) -> None:
    data = src.databunch(bs=8, num_workers=0, device="cuda").normalize(imagenet_stats)
    x, y = next(iter(data.valid_dl))
    raw, raw_y = next(data.valid_dl.raw())
    assert x.device.type == "cuda" and y.device.type == "cuda"
    assert raw.device.type == "cpu" and raw_y.device.type == "cpu"
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in imagenet_stats)
    torch.testing.assert_close(x.cpu(), (raw.float() / 255 - mean) / std)
    torch.testing.assert_close(y.cpu(), raw_y)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("rows", "valid", "size"), [(3, False, (660, 720)), (2, True, (440, 480))])
def test_show_batch_writes_a_png_grid(
    src: LabelledData, tmp_path: Path, rows: int, valid: bool, size: tuple[int, int]
) -> None:
    out = show_batch(bunch(src, bs=8), tmp_path / "plots" / "batch.png", rows=rows, valid=valid)
    assert out == tmp_path / "plots" / "batch.png"
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 20  # images were drawn, not a blank canvas
