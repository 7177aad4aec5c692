"""Fine-tune a served model on its feedback: the seed's answer to "how to use online feedback".

Add the labelled new data to the training set, load the old model, unfreeze, train some more, and
publish the result as the next version, which the running server hot-swaps. The new version is
published only if it is not worse on the original validation set than the old one by more than
`tolerance` (in the task's primary metric); `force` publishes anyway. A held-out part of the
feedback is scored before and after, so the gain on the corrected cases is measured, not assumed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from serving.bundle import load_bundle
from serving.bundle.pipeline import ImagePreprocess
from training.checkpoint import write_json_atomic
from training.data import ItemList, LabelledData
from training.data.bunch import DataBunch, Stats
from training.errors import ConfigError, DataError
from training.export import export_stage
from training.learner import Learner
from training.metrics import Metric, metric_name
from training.models import layer_groups
from training.run import stage_meta, train_transforms
from training.tasks import TaskSetup, TrainingTask, task_for
from training.tasks.image_config import ImageConfig

__all__ = ["FinetuneReport", "finetune"]

STAGE = "finetune"


@dataclass
class FinetuneReport:
    metric: str
    higher_is_better: bool
    valid_before: dict[str, float]
    valid_after: dict[str, float]
    feedback_before: dict[str, float]
    feedback_after: dict[str, float]
    records: int
    trained_on: int
    held_out: int
    published: str | None
    decision: str


def finetune(
    bundle: Path,
    feedback: Path,
    data: Path,
    out: Path,
    models: Path,
    *,
    config: Path | None = None,
    epochs: int = 5,
    lr: float | str = "1e-5:1e-3",
    lr_find: bool = False,
    bs: int | None = None,
    weight: int = 1,
    holdout: float = 0.2,
    tolerance: float = 0.01,
    force: bool = False,
    seed: int = 0,
    num_workers: int | None = None,
) -> FinetuneReport:
    """Train `bundle`'s network on `data` (its original training set) plus `feedback`, and publish it
    as the next version of the same model in `models` if it holds up; see the module's docstring.
    With `lr_find`, the rate comes from a sweep on the combined data instead of `lr`."""
    if weight < 1 or not 0 <= holdout < 1:
        raise ConfigError(f"--weight must be ≥ 1 and --holdout in [0, 1); got {weight} and {holdout}")
    served = load_bundle(bundle)
    manifest, pipeline = served.manifest, served.pipeline
    trainer = task_for(manifest.task)
    if trainer.served.feedback is None:
        raise ConfigError(f"{bundle}: fine-tuning {manifest.task} models is not supported")
    cfg = _config(config, trainer, data, out, pipeline, epochs, lr, bs, seed, num_workers)
    task = trainer.setup(cfg)
    if task.src.classes != manifest.labels:
        raise ConfigError(
            f"--data {data} has classes {task.src.classes}, but {bundle} was trained on {manifest.labels}"
        )
    fb_train, fb_held = _split(_read_feedback(feedback, trainer, task, cfg), holdout, seed)
    combined = _with_extra_training(task.src, fb_train, weight)
    assert isinstance(pipeline.preprocess, ImagePreprocess)  # the tasks that take feedback take images
    stats: Stats = (pipeline.preprocess.mean, pipeline.preprocess.std)
    loaders = combined.transform(train_transforms(cfg, task), size=cfg.size).databunch(
        bs=cfg.bs, num_workers=cfg.num_workers, seed=seed
    )
    loaders.normalize(stats)
    torch.manual_seed(seed)
    model = pipeline.network.build()
    learn = Learner(
        loaders, model, task.loss_func, task.metrics, layer_groups(model), wd=cfg.wd, path=out,
        meta=stage_meta(cfg, task, manifest.labels, stats),
    )  # fmt: skip
    held_metrics = task.metrics_for(fb_held.train) if task.metrics_for and fb_held else task.metrics
    valid_before, feedback_before = learn.validate()[1], _score(learn, fb_held, held_metrics, stats)
    learn.unfreeze()
    rate: float | slice = cfg.learning_rate
    if lr_find:  # the sweep's suggestion for the head, a tenth of it for the body (fastai's slice(hi))
        found = learn.lr_find()
        found.plot(out / "lr_find.png")
        rate = slice(found.suggestion)
    learn.fit_one_cycle(epochs, rate, stage=STAGE)
    valid_after, feedback_after = learn.validate()[1], _score(learn, fb_held, held_metrics, stats)

    change = valid_after[task.primary] - valid_before[task.primary]
    worse_by = -change if task.higher_is_better else change
    published, decision = None, f"{task.primary} on the original validation set moved by {change:+.4f}"
    if not worse_by <= tolerance and not force:  # NaN (a diverged fit) is never within tolerance
        decision += f": worse by more than --tolerance {tolerance}; not published (--force publishes anyway)"
    else:
        published = str(export_stage(out, STAGE, manifest.name, models))
        decision += f"; published {published}"
    report = FinetuneReport(
        task.primary, task.higher_is_better, valid_before, valid_after, feedback_before, feedback_after,
        len(fb_train) + len(fb_held), len(fb_train), len(fb_held), published, decision,
    )  # fmt: skip
    write_json_atomic(out / f"{STAGE}.report.json", dataclasses.asdict(report))
    return report


def _config(
    path: Path | None,
    task: TrainingTask[Any],
    data: Path,
    out: Path,
    pipeline: Any,
    epochs: int,
    lr: float | str,
    bs: int | None,
    seed: int,
    num_workers: int | None,
) -> ImageConfig:
    """The original run's options (from its `--config` file, if given), with what the bundle fixes:
    its task, architecture, input size, threshold, Void code and point names."""
    fixed: dict[str, Any] = {"task": task.name, "data": data, "out": out, "arch": pipeline.network.spec.arch}
    fixed |= {"size": pipeline.preprocess.size, "epochs": epochs, "lr": lr, "bs": bs, "seed": seed}
    fixed |= {
        "num_workers": num_workers,
        "stage": STAGE,
        "unfreeze": True,
        "from_stage": None,
        "resume": False,
    }
    cfg = task.load_config(path, fixed | task.fixed_config(pipeline.postprocess))
    assert isinstance(cfg, ImageConfig)  # the tasks that take feedback take images
    return cfg


def _read_feedback(
    folder: Path, task: TrainingTask[Any], setup: TaskSetup, cfg: ImageConfig
) -> tuple[ItemList, torch.Tensor]:
    """The stored records as items and targets, encoded with the model's own classes."""
    layout = task.served.feedback
    assert layout is not None  # fine-tuning is offered for tasks that take feedback
    index = layout.csv  # the layout the server's feedback store writes
    if not (folder / index).is_file():
        raise DataError(f"--feedback {folder}: no {index}; is it a feedback store's <model> folder?")
    labeller = task.feedback_labeller(folder, setup, cfg)
    assert labeller is not None
    items = ItemList.from_csv(folder, index, column="image_name", folder="images")
    targets = setup.src.encoder.encode(labeller(items), items)
    task.check_feedback(targets, setup)
    return items, targets


def _split(
    records: tuple[ItemList, torch.Tensor], holdout: float, seed: int
) -> tuple[LabelledPart, LabelledPart]:
    items, targets = records
    n = len(items)
    if n == 0:
        raise DataError("the feedback store holds no records")
    held = round(n * holdout) if n >= 2 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    pick = lambda idx: LabelledPart(items.subset(idx), targets[idx])  # noqa: E731
    return pick(sorted(order[held:])), pick(sorted(order[:held]))


@dataclass(frozen=True)
class LabelledPart:
    train: ItemList
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.train)


def _with_extra_training(src: LabelledData, extra: LabelledPart, weight: int) -> LabelledData:
    """`src` with `extra` added to its training split `weight` times (oversampling the corrections)."""
    items = list(src.train.items) + list(extra.train.items) * weight
    origins = [src.train.origin(i) for i in range(len(src.train))]
    origins += [extra.train.origin(i) for i in range(len(extra.train))] * weight
    y = torch.cat([src.y_train, *[extra.y.to(src.y_train.dtype)] * weight])
    return dataclasses.replace(src, train=ItemList(items=items, origins=origins), y_train=y)  # type: ignore[arg-type]


def _score(
    learn: Learner[DataBunch], part: LabelledPart, metrics: list[Metric], stats: Stats
) -> dict[str, float]:
    """`metrics` of the learner's model on held-out feedback (empty when none was held out)."""
    if not len(part):
        return {}
    src = learn.data.src
    held = dataclasses.replace(src, train=part.train, valid=part.train, y_train=part.y, y_valid=part.y)
    loader = (
        held.transform(([], []), size=src.size).databunch(bs=learn.data.bs, num_workers=0).normalize(stats)
    )
    preds, targets = learn.get_preds(loader.valid_dl)
    return {metric_name(m): float(m(preds, targets)) for m in metrics}
