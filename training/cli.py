"""`train-kit`: build demo data, find a learning rate, train stages.

    train-kit data multilabel --out data/scenes
    train-kit lr-find multilabel --data data/scenes            # ImageNet EfficientNet-Lite0, body frozen
    train-kit train multilabel --data data/scenes --size 64 --epochs 1 --lr 1e-2
    train-kit train multilabel --data data/scenes --unfreeze --lr 3e-4:3e-3 --from-stage stage-1 --stage s2
    train-kit train multilabel --data data/scenes --arch resnet18 --no-pretrained  # from random weights
    train-kit train multilabel --config run.toml --resume
    train-kit train sentiment --data data/reviews        # ULMFiT: tokenizer, language model, classifier

Errors in the user's data or options print as one red line and exit with status 2.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from training.cli_data import data_app
from training.cli_options import config_command, option
from training.cli_shared import console, user_errors
from training.errors import ConfigError
from training.tasks import TASKS

app = typer.Typer(
    help="Train image and text models the fastai way: tags, classes, segmentation, pose, sentiment.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help texts say `models/<name>[/<version>]`: brackets are text, not markup
)
app.add_typer(data_app, name="data")
train_app = typer.Typer(
    help="Train a task: one stage with fit_one_cycle (sentiment: its ULMFiT stages); metrics JSON at "
    "the end. `train-kit train <task> --help` lists that task's options.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(train_app, name="train")
lr_find_app = typer.Typer(
    help="Sweep learning rates for a task that trains in stages; print the suggestions, plot them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(lr_find_app, name="lr-find")


@app.command("save-body")
@user_errors
def save_body(
    to: Annotated[Path, typer.Argument(help="weights file to write (the body publisher's state dict)")],
    out: Annotated[
        Path, typer.Option(help="run folder holding the stage: its train --out (runs/<task> by default)")
    ],
    stage: Annotated[str, typer.Option(help="trained stage whose body to save")] = "stage-1",
) -> None:
    """Save a trained stage's body (torchvision's or EfficientNet-PyTorch's names), for `--weights`
    in another task."""
    from training.body import save_body_weights

    save_body_weights(out / f"{stage}.pt", to)
    console.print(f"wrote {to}; use it with --weights {to}")


def lr_find(
    cfg: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    suggest: str = "valley",
) -> None:
    """Sweep learning rates; print every rule's suggestion and write the plot (lr_find.png)."""
    from training.lr_suggestions import RULES
    from training.run import run_lr_find

    if suggest not in RULES:
        raise ConfigError(f"--suggest {suggest!r}: choose one of {', '.join(RULES)}")
    found, plot = run_lr_find(cfg, start_lr, end_lr, num_it, rule=suggest)
    for name, rate in found.suggestions.items():
        console.print(f"  {name:<8} {rate:.2e}" + ("  <- suggested" if name == found.rule else ""))
    console.print(f"suggested learning rate: {found.suggestion:.2e} ({found.rule})  (plot: {plot})")


LR_FIND_OWN = [
    option("start_lr", float, 1e-7, "lowest rate of the sweep"),
    option("end_lr", float, 10.0, "highest rate of the sweep"),
    option("num_it", int, 100, "mini-batches in the sweep"),
    option("suggest", str, "valley", "the rule that picks the rate: valley | steep | minimum | slide"),
]
LR_FIND_SKIPS = {"lr", "epochs", "pct_start", "stage", "resume"}
"""Options of a stage that a sweep has no use for: it picks the rate and trains nothing to keep."""


def train(cfg: Any) -> None:
    """Train one stage with fit_one_cycle (sentiment: its ULMFiT stages); metrics JSON at the end."""
    from training.distributed import current_ranks
    from training.progress import RichReporter
    from training.run import run_training

    result = run_training(cfg, RichReporter(console))
    if (ranks := current_ranks()) is not None and not ranks.main:
        return  # under torchrun, rank 0 speaks for the run
    if "per_label" in result:
        console.print(per_label_table(result["per_label"]))
    keys = ("metrics", "baseline", "language_model", "checkpoint")
    console.print_json(json.dumps({key: result[key] for key in keys if key in result}))


def per_label_table(report: dict[str, dict[str, float]]) -> Any:
    """Each label's validation scores, worst recall first: where the model still guesses."""
    from rich.table import Table

    table = Table("label", "support", "precision", "recall", "accuracy", title="per label (validation)")
    for label, scores in sorted(report.items(), key=lambda kv: kv[1]["recall"]):
        table.add_row(
            label,
            str(scores["support"]),
            *(f"{scores[key]:.3f}" for key in ("precision", "recall", "accuracy")),
        )
    return table


for task in TASKS.values():  # each task's own options, and no other's
    config_command(train_app, task.name, train, task.settings, help=task.settings.__doc__)
    for older in task.older_commands:
        config_command(app, older, train, task.settings, help=f"The same as `train {task.name}`.")
    if task.sweeps_rates:  # a task whose options build one learner to sweep
        config_command(
            lr_find_app, task.name, lr_find, task.settings, own=LR_FIND_OWN, skip=LR_FIND_SKIPS,
            help=task.settings.__doc__,
        )  # fmt: skip


def main() -> None:
    app()


@app.command("export")
@user_errors
def export(
    out: Annotated[
        Path, typer.Option(help="run folder holding the stage: its train --out (runs/<task> by default)")
    ],
    stage: Annotated[
        str, typer.Option(help="the trained stage to export (an image task's --stage; sentiment: clf)")
    ] = "stage-1",
    name: Annotated[
        str | None,
        typer.Option(help="model name in the repository (default: the stage's task, e.g. classify)"),
    ] = None,
    models: Annotated[Path, typer.Option(help="model repository")] = Path("models"),
    parity_items: Annotated[
        int, typer.Option(help="validation items for the parity check (texts: all, up to 2000 or this)")
    ] = 64,
    tolerance: Annotated[
        float, typer.Option(help="largest score or probability difference the bundle may show")
    ] = 1e-2,
    resolution: Annotated[
        str,
        typer.Option(help="squish (to the training size) | native (segmentation: each image at its own)"),
    ] = "squish",
    precision: Annotated[
        str,
        typer.Option(
            help="the weights: auto (fp16 where it passes the parity check, else fp32) | fp16 | fp32"
        ),
    ] = "auto",
    cpu_graph: Annotated[
        bool,
        typer.Option(
            help="image models: also write model.cpu.onnx for CPU hosts (int8 calibrated on training "
            "images, else fp32) where one passes the same parity check"
        ),
    ] = True,
) -> None:
    """Write a bundle (pipeline.pkl + model.onnx + manifest) as the next version, if it checks out."""
    from serving.bundle import read_manifest
    from serving.bundle.tasks import task_for
    from training.export import export_stage
    from training.export.stage import WeightPrecision

    if resolution not in ("squish", "native"):
        raise ConfigError(f"--resolution {resolution!r}: choose squish or native")
    if precision not in get_args(WeightPrecision):
        raise ConfigError(f"--precision {precision!r}: choose {', '.join(get_args(WeightPrecision))}")
    folder = export_stage(
        out,
        stage,
        name,
        models,
        parity_items,
        tolerance,
        resolution,  # type: ignore[arg-type]
        precision,  # type: ignore[arg-type]
        cpu_graph,
    )
    manifest = read_manifest(folder)
    parity = manifest.parity
    agreeing = "pixels with the same class" if parity.measure == "logit" else "items with the same answer"
    items = task_for(manifest.task).takes
    console.print(
        f"published {folder} ({manifest.precision} weights): parity on {parity.items} {items}, "
        f"max {parity.measure} difference "
        f"{parity.max_abs_diff:.2e}, {agreeing} {parity.agreement:.2%}"
    )
    if manifest.cpu_graph is not None:
        cpu = manifest.cpu_graph
        console.print(
            f"  and model.cpu.onnx ({cpu.precision}) for CPU hosts: max {cpu.parity.measure} difference "
            f"{cpu.parity.max_abs_diff:.2e}, {agreeing} {cpu.parity.agreement:.2%}"
        )


@app.command("finetune")
@user_errors
def finetune(
    bundle: Annotated[Path, typer.Option(help="the served model: models/<name>[/<version>]")],
    feedback: Annotated[Path, typer.Option(help="its feedback store folder: feedback/<name>")],
    data: Annotated[Path, typer.Option(help="the original training data folder")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file of the options the bundle does not fix")
    ] = None,
    out: Annotated[Path, typer.Option(help="run folder for the fine-tuned stage")] = Path("runs/finetune"),
    models: Annotated[Path, typer.Option(help="model repository to publish into")] = Path("models"),
    epochs: Annotated[int, typer.Option(min=1, help="epochs of fine-tuning")] = 5,
    lr: Annotated[str, typer.Option(help="max learning rate, or low:high over layer groups")] = "1e-5:1e-3",
    lr_find: Annotated[
        bool, typer.Option("--lr-find", help="take the rate from a sweep (plot in --out)")
    ] = False,
    bs: Annotated[int | None, typer.Option(help="batch size (default: the bundle's run's)")] = None,
    weight: Annotated[int, typer.Option(min=1, help="times each feedback record joins the training set")] = 1,
    holdout: Annotated[float, typer.Option(help="share of feedback held out to measure the gain")] = 0.2,
    tolerance: Annotated[
        float, typer.Option(help="how much worse on the original valid set is allowed")
    ] = 0.01,
    force: Annotated[bool, typer.Option(help="publish even when worse than --tolerance")] = False,
    seed: Annotated[int, typer.Option(help="seed of the holdout split and of training")] = 0,
    num_workers: Annotated[int | None, typer.Option(help="data loader worker processes")] = None,
) -> None:
    """Train a served model some more on its feedback; publish the next version if it holds up."""
    import dataclasses

    from training.finetune import finetune as run_finetune

    report = run_finetune(
        bundle, feedback, data, out, models, config=config, epochs=epochs, lr=lr, lr_find=lr_find, bs=bs,
        weight=weight,
        holdout=holdout, tolerance=tolerance, force=force, seed=seed, num_workers=num_workers,
    )  # fmt: skip
    console.print_json(json.dumps(dataclasses.asdict(report)))
    if report.published is None:
        raise typer.Exit(1)


class ArchiveFormat(enum.StrEnum):
    default = "default"
    no_archive = "no-archive"


@app.command("archive")
@user_errors
def archive(
    bundle: Annotated[Path, typer.Argument(help="models/<name>[/<version>] (newest version by default)")],
    out: Annotated[Path, typer.Option(help="the TorchServe model store")] = Path("model_store"),
    batch_size: Annotated[int, typer.Option(min=1, help="TorchServe batchSize")] = 8,
    max_batch_delay: Annotated[int, typer.Option(min=0, help="TorchServe maxBatchDelay (ms)")] = 50,
    workers: Annotated[int, typer.Option(min=1, help="workers for this model")] = 1,
    response_timeout: Annotated[int, typer.Option(min=1, help="TorchServe responseTimeout (s)")] = 120,
    runtime: Annotated[str, typer.Option(help="onnx or torch")] = "onnx",
    threads: Annotated[int | None, typer.Option(min=1, help="intra-op threads per worker")] = None,
    archive_format: Annotated[ArchiveFormat, typer.Option(help="no-archive: a folder, faster starts")] = (
        ArchiveFormat.default
    ),
) -> None:
    """Write a TorchServe .mar of a bundle: its files, our handler and a model-config.yaml."""
    from training.archive import TorchServeConfig, archive_bundle

    config = TorchServeConfig(batch_size, max_batch_delay, workers, response_timeout, runtime, threads)
    target = archive_bundle(bundle, out, config, archive_format.value)
    console.print(f"wrote {target}")


@app.command("predict")
@user_errors
def predict(
    bundle: Annotated[Path, typer.Argument(help="models/<name> (newest version) or models/<name>/<version>")],
    images: Annotated[list[Path], typer.Argument(help="image files; for a text model, texts or .txt files")],
    runtime: Annotated[str, typer.Option(help="onnx | torch")] = "onnx",
    masks: Annotated[Path | None, typer.Option(help="segmentation: write <image>_mask.png here")] = None,
    show: Annotated[
        Path | None, typer.Option(help="draw the answers on the images: a PNG grid, one panel per image")
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="CSV of name,labels rows (labels.csv): print each image's true labels beside the answer"
        ),
    ] = None,
    bs: Annotated[int, typer.Option(min=1, help="inputs run together; answers print batch by batch")] = 32,
) -> None:
    """Answer with the bundle alone: one JSON line per input (a mask as its classes' pixel shares)."""
    from serving.bundle import BundleError, load_bundle
    from serving.bundle.images import ImageDecodeError
    from serving.bundle.text_preprocess import TextError

    if runtime not in ("onnx", "torch"):
        raise ConfigError(f"--runtime {runtime!r}: choose onnx or torch")
    known = true_labels(truth) if truth is not None else None
    drawn: list[dict[str, Any]] = []
    try:
        loaded = load_bundle(bundle)
        task, manifest = loaded.task, loaded.manifest
        if task.takes == "texts" and show is not None:
            raise ConfigError(f"--show draws on images; {bundle} is a text model: read its JSON lines")
        for start in range(0, len(images), bs):  # a batch at a time: memory stays flat, lines come early
            chunk = images[start : start + bs]
            if task.takes == "texts":  # each argument is a text, or a .txt file holding one
                texts = [
                    p.read_text("utf-8") if p.suffix == ".txt" and p.is_file() else str(p) for p in chunk
                ]
                for text, answer in zip(texts, loaded.predict(texts, runtime=runtime), strict=True):  # type: ignore[arg-type]
                    typer.echo(json.dumps({"text": text[:80], **task.json_answer(manifest, answer)}))
                continue
            answers = loaded.predict(chunk, runtime=runtime)  # type: ignore[arg-type]  # checked above
            if show is not None:
                drawn += [dict(answer) for answer in answers]  # the loop below takes the masks out
            for path, answer in zip(chunk, answers, strict=True):
                typer.echo(json.dumps(_answer_line(path, answer, task, manifest, masks, known)))
        if show is not None:
            from training.show_answers import show_answers

            show_answers(images, drawn, manifest.labels, show)
    except (BundleError, ImageDecodeError, TextError, OSError) as err:
        raise ConfigError(str(err)) from err


def _answer_line(
    path: Path,
    answer: dict[str, Any],
    task: Any,
    manifest: Any,
    masks: Path | None,
    known: dict[str, str] | None,
) -> dict[str, Any]:
    """One image's JSON line: its name, its true labels if known, then the answer (a mask as its
    classes' pixel shares, written as a PNG to `masks` if given)."""
    head: dict[str, Any] = {"image": str(path)}
    if known is not None:  # beside the image's name, before the answer's long score list
        head["truth"] = known.get(path.name, known.get(path.stem))
    if "mask" in answer:  # a terminal shows a mask's class shares, not its PNG
        return {**head, **mask_summary(answer.pop("mask"), manifest.labels, path, masks)}
    return {**head, **task.json_answer(manifest, answer)}


def true_labels(csv_path: Path) -> dict[str, str]:
    """name → labels from a CSV whose first two columns are an image's name and its labels."""
    import csv

    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--truth {csv_path}: cannot read it ({err})") from err
    if not rows or len(rows[0]) < 2:
        raise ConfigError(f"--truth {csv_path}: expected a header and name,labels rows")
    return {row[0]: row[1] for row in rows[1:] if len(row) >= 2}


def mask_summary(mask: Any, codes: list[str], image: Path, folder: Path | None) -> dict[str, Any]:
    """What a terminal can show of a mask: its size and each class's share of pixels (and the
    PNG file, when asked for)."""
    import numpy as np

    from serving.bundle.images import encode_mask_png

    counts = np.bincount(mask.ravel(), minlength=len(codes))
    summary: dict[str, Any] = {
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "classes": {code: round(float(n) / mask.size, 4) for code, n in zip(codes, counts, strict=True) if n},
    }
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{image.stem}_mask.png"
        target.write_bytes(encode_mask_png(mask))
        summary["mask"] = str(target)
    return summary
