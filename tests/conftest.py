"""Small, real, learnable image sets written to disk: colour tags plus an optional white square."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def write_tag_images(root: Path, n: int = 96, n_valid: int = 24, size: int = 32, seed: int = 0) -> Path:
    """`root/train/*.jpg`, `root/labels.csv` (image_name,tags) and `root/valid.txt`, like the demo set."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        colour = names[i % len(names)]
        pixels = np.empty((size, size, 3), dtype=np.uint8)
        pixels[:] = COLOURS[colour]
        pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        tags = [colour]
        if i % 2:
            x, y = rng.integers(2, size // 2, 2)
            pixels[y : y + size // 3, x : x + size // 3] = 255
            tags.append("square")
        name = f"img_{i:03d}"
        Image.fromarray(pixels).save(root / "train" / f"{name}.jpg", quality=95)
        rows.append({"image_name": name, "tags": " ".join(tags)})
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_name", "tags"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "valid.txt").write_text("\n".join(r["image_name"] for r in rows[-n_valid:]) + "\n")
    return root


def write_colour_folders(root: Path, n_train: int = 12, n_valid: int = 4, size: int = 32) -> Path:
    """`train/<colour>/*.png` and `valid/<colour>/*.png`: noisy fields of one colour each."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for colour, rgb in COLOURS.items():
            (root / split / colour).mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(-20, 20, (size, size, 3))
                pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / colour / f"{colour}_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def tag_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only shared set; tests that modify data make their own with `write_tag_images`."""
    return write_tag_images(tmp_path_factory.mktemp("tags"))


@pytest.fixture(scope="session")
def trained_run(tag_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a finished `stage-1` (resnet18, 32 px, 2 epochs) on the tag images."""
    from training.run import run_training
    from training.tasks.multilabel import MultilabelConfig

    out = tmp_path_factory.mktemp("run")
    cfg = MultilabelConfig(
        data=tag_images,
        arch="resnet18",
        pretrained=False,
        size=32,
        bs=16,
        epochs=2,
        lr=1e-3,
        num_workers=0,
        out=out,
    )
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def bundle_path(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/tags/1` exported from `trained_run`; read-only: tests that alter it copy it first."""
    from training.export import export_stage

    return export_stage(trained_run, "stage-1", "tags", tmp_path_factory.mktemp("models"), parity_items=24)


def write_segmentation_images(
    root: Path, n: int = 48, n_valid: int = 12, size: int = 64, seed: int = 0
) -> Path:
    """CamVid's layout: `images/*.png`, `labels/*_P.png`, `codes.txt`, `valid.txt`.

    Each noisy grey image holds a red and a blue rectangle; the mask codes them 1 and 2 and marks
    each rectangle's one-pixel rim `Void` (3), as the demo set marks anti-aliased edges.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        pixels = np.clip(120 + rng.integers(-25, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        for code, colour in ((1, COLOURS["red"]), (2, COLOURS["blue"])):
            h, w = rng.integers(size // 5, size // 2, 2)
            top, left = rng.integers(1, size - h - 1), rng.integers(1, size - w - 1)
            mask[top - 1 : top + h + 1, left - 1 : left + w + 1] = 3
            mask[top : top + h, left : left + w] = code
            pixels[top : top + h, left : left + w] = colour
        Image.fromarray(pixels).save(root / "images" / f"seg_{i:03d}.png")
        Image.fromarray(mask).save(root / "labels" / f"seg_{i:03d}_P.png")
    (root / "codes.txt").write_text("Background\nred\nblue\nVoid\n")
    (root / "valid.txt").write_text("".join(f"seg_{i:03d}.png\n" for i in range(n - n_valid, n)))
    return root


def write_point_images(root: Path, n: int = 64, n_valid: int = 16, size: int = 48, seed: int = 0) -> Path:
    """BIWI's layout in small: `images/*.png` with one bright disc, `points.csv` (its centre)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, in continuous coordinates
    rows = []
    for i in range(n):
        x, y = rng.uniform(8, size - 8, 2)
        pixels = np.clip(60 + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        pixels[(xs - x) ** 2 + (ys - y) ** 2 <= 25] = (250, 230, 40)
        name = f"pt_{i:03d}"
        Image.fromarray(pixels).save(root / "images" / f"{name}.png")
        rows.append({"image_name": name, "centre_x": f"{x:.2f}", "centre_y": f"{y:.2f}"})
    with (root / "points.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image_name", "centre_x", "centre_y"])
        writer.writeheader()
        writer.writerows(rows)
    (root / "valid.txt").write_text("".join(f"{r['image_name']}\n" for r in rows[-n_valid:]))
    return root


@pytest.fixture(scope="session")
def seg_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_segmentation_images(tmp_path_factory.mktemp("seg"))


@pytest.fixture(scope="session")
def point_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 discs (32 for validation): enough for a point regressor to beat the mean point clearly."""
    return write_point_images(tmp_path_factory.mktemp("points"), n=160, n_valid=32)


@pytest.fixture(scope="session")
def seg_run(seg_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished U-Net `stage-1` (resnet18, 32 px, 2 epochs) on the rectangles."""
    from training.run import run_training
    from training.tasks.segmentation import SegmentationConfig

    out = tmp_path_factory.mktemp("seg-run")
    cfg = SegmentationConfig(
        data=seg_images, arch="resnet18", pretrained=False, size=32,
        bs=8, epochs=2, lr=3e-3, num_workers=0, out=out,
    )  # fmt: skip
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def pose_run(point_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished point regressor `stage-1` (resnet18, 32 px, 8 epochs) on the discs."""
    from training.run import run_training
    from training.tasks.pose import PoseConfig

    out = tmp_path_factory.mktemp("pose-run")
    cfg = PoseConfig(
        data=point_images, suffix=".png", arch="resnet18", pretrained=False, size=32,
        bs=16, epochs=8, lr=3e-3, num_workers=0, out=out,
    )  # fmt: skip
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def seg_bundle(seg_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/rects/1`; read-only: tests that alter it copy it first."""
    from training.export import export_stage

    return export_stage(seg_run, "stage-1", "rects", tmp_path_factory.mktemp("seg-models"), parity_items=12)


@pytest.fixture(scope="session")
def native_seg_bundle(seg_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/strips/1`: the same U-Net exported to answer each image at its own resolution."""
    from training.export import export_stage

    models = tmp_path_factory.mktemp("native-models")
    return export_stage(seg_run, "stage-1", "strips", models, parity_items=12, resolution="native")


@pytest.fixture(scope="session")
def pose_bundle(pose_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/discs/1`; read-only: tests that alter it copy it first."""
    from training.export import export_stage

    return export_stage(pose_run, "stage-1", "discs", tmp_path_factory.mktemp("pose-models"), parity_items=16)


POSITIVE = ["wonderful", "superb", "moving", "brilliant", "funny", "loved"]
NEGATIVE = ["dull", "terrible", "boring", "awful", "clumsy", "hated"]
FILLER = [
    "the", "film", "story", "actors", "plot", "scenes", "music", "camera",
    "director", "ending", "it", "was", "and", "a", "of", "with",
]  # fmt: skip


def write_review_texts(root: Path, n: int = 120, n_valid: int = 30, seed: int = 0) -> Path:
    """`reviews.csv` (text,label,is_valid) as `train-kit data sentiment` writes it: short reviews of
    filler words whose label shows only in a few sentiment words (and their Capitals, sometimes),
    and `sentences.csv`, unlabelled extra text for the language model."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def review(good: bool) -> str:
        words = list(rng.choice(FILLER, int(rng.integers(6, 30))))
        for _ in range(int(rng.integers(1, 4))):
            word = str(rng.choice(POSITIVE if good else NEGATIVE))
            words.insert(
                int(rng.integers(0, len(words) + 1)), word.capitalize() if rng.random() < 0.3 else word
            )
        return " ".join(words) + " ."

    with (root / "reviews.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "is_valid"])
        for i in range(n):
            good = i % 2 == 0
            writer.writerow([review(good), "pos" if good else "neg", str(i >= n - n_valid).lower()])
    with (root / "sentences.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([review(i % 2 == 0)] for i in range(n // 2))
    return root


@pytest.fixture(scope="session")
def review_texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 toy reviews (100 for validation): enough for a toy classifier to learn the task, so a run
    can be held to beating the majority class (with 120, 30 validation reviews, it was a coin toss)."""
    return write_review_texts(tmp_path_factory.mktemp("reviews"), n=400, n_valid=100)


@pytest.fixture(scope="session")
def sentiment_run(review_texts: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder after `train-kit train sentiment --arch hybrid` (the opt-in LSTM beside the
    n-grams) at toy size: `lm`, `encoder.pt`, `ngram`, `clf-1`, `clf-2`, `clf`."""
    from training.run import run_training
    from training.tasks.sentiment import SentimentConfig

    out = tmp_path_factory.mktemp("sentiment-run")
    cfg = SentimentConfig(
        arch="hybrid", data=review_texts, vocab_size=120, max_tokens=48, emb=24, hidden=32, layers=2,
        bs=8, bptt=16, lm_epochs=1, epochs=2, lr=2e-2, ngram_buckets=4096, out=out,
    )  # fmt: skip
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def sentiment_bundle(sentiment_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`models/reviews/1` exported from `sentiment_run`; read-only."""
    from training.export import export_stage

    return export_stage(
        sentiment_run, "clf", "reviews", tmp_path_factory.mktemp("text-models"), parity_items=32
    )
