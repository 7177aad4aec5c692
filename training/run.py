"""A whole run from a task's options: data, network, stage handling, fit, metrics file — or, for a
task with a recipe of its own (sentiment's three stages), that recipe.

The CLI is a thin shell over these functions, so tests and notebooks can call them directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from serving.bundle.networks.bodies import body_for
from training.checkpoint import load_checkpoint, write_json_atomic
from training.config import TrainConfig
from training.curves import plot_curves
from training.data import get_transforms, imagenet_stats
from training.data.batch_transforms import BatchAugment
from training.data.bunch import DataBunch, Stats
from training.data.show import show_batch
from training.data.transforms import Transforms
from training.distributed import current_ranks, join
from training.errors import ConfigError
from training.learner import Learner, Reporter
from training.lr_finder import LRFind
from training.lr_suggestions import DEFAULT_RULE
from training.metrics import metric_name
from training.models import Pretrained, create_model, layer_groups
from training.tasks import TaskSetup, setup_task, task_for
from training.tasks.image_config import ImageConfig

__all__ = ["build_learner", "run_lr_find", "run_stage", "run_training", "stage_meta", "train_transforms"]


def build_learner(cfg: ImageConfig, reporter: Reporter | None = None) -> Learner[DataBunch]:
    """Data and network as `cfg` says, weights from `from_stage` if named, frozen if pretrained."""
    return _build(cfg, reporter)[0]


def _build(cfg: ImageConfig, reporter: Reporter | None = None) -> tuple[Learner[DataBunch], TaskSetup]:
    torch.manual_seed(cfg.seed)  # the network's initial weights, reproducibly
    task = setup_task(cfg)
    train_tfms = train_transforms(cfg, task)
    ranks = current_ranks()  # a torchrun launch: join the group, load this rank's shards
    device = join(ranks) if ranks is not None else None
    data = task.src.transform(train_tfms, size=cfg.size).databunch(
        bs=cfg.bs, num_workers=cfg.num_workers, seed=cfg.seed, device=device, ranks=ranks
    )
    if cfg.batch_tfms:
        data.train_dl.batch_tfm = batch_augment(cfg, task)
    previous = _previous_stage(cfg)
    data.normalize(_stats(cfg, previous))
    if previous is not None and previous["meta"]["classes"] != data.classes:
        raise ConfigError(
            f"--from-stage {cfg.from_stage}: trained on classes {previous['meta']['classes']}, "
            f"but this data has {data.classes}"
        )
    # A stage that continues another (or itself, resumed) takes its weights from it, not from ImageNet.
    pretrained = Pretrained(cfg.weights) if cfg.pretrained and previous is None and not cfg.resume else None
    model = create_model(task.spec, pretrained)
    meta = stage_meta(cfg, task, data.classes, data.stats or imagenet_stats)
    learn = Learner(
        data,
        model,
        task.loss_func,
        task.metrics,
        layer_groups(model),
        wd=cfg.wd,
        path=cfg.out,
        reporter=reporter if ranks is None or ranks.main else None,
        meta=meta,
    )
    if previous is not None:
        learn.load_weights(previous, cfg.out / f"{cfg.from_stage}.pt")
    if (cfg.pretrained or cfg.from_stage) and not cfg.unfreeze:
        learn.freeze()  # the practice: fit the new head over a fixed pretrained body first
    if cfg.fp16:
        learn.to_fp16()
    if cfg.channels_last:
        learn.to_channels_last()
    if cfg.compile:
        learn.compile()
    return learn, task


def _stats(cfg: ImageConfig, previous: dict[str, Any] | None) -> Stats | None:
    """A continued stage keeps its stats; a pretrained body gets the input scaling its weights were
    trained with; else the data's own (None: computed from a sample)."""
    if previous is not None:
        mean, std = previous["meta"]["stats"]
        return (tuple(mean), tuple(std))
    if cfg.normalize == "imagenet":
        return imagenet_stats
    if cfg.normalize is None and cfg.pretrained:
        return body_for(cfg.arch).stats
    return None


def train_transforms(cfg: ImageConfig, task: TaskSetup) -> Transforms:
    """The per-item augmentations `cfg` asks for; uncovered mask pixels get the task's Void code.
    With `batch_tfms` only the perspective warp stays per item (the batch path does the rest)."""
    batched = cfg.batch_tfms
    return get_transforms(
        do_flip=cfg.do_flip and not batched,
        flip_vert=cfg.flip_vert and not batched,
        max_rotate=0 if batched else cfg.max_rotate,
        max_zoom=1 if batched else cfg.max_zoom,
        max_lighting=0 if batched else cfg.max_lighting,
        max_warp=cfg.max_warp,
        p_affine=cfg.p_affine,
        p_lighting=cfg.p_lighting,
        mask_fill=task.void or 0,
        flip_pairs=task.flip_pairs,
    )


def batch_augment(cfg: ImageConfig, task: TaskSetup) -> BatchAugment:
    """The batch path's flips, turns, rotation, zoom and lighting, as `cfg` asks for them."""
    return BatchAugment(
        targets=task.targets,
        do_flip=cfg.do_flip,
        flip_vert=cfg.flip_vert,
        max_rotate=cfg.max_rotate,
        max_zoom=cfg.max_zoom,
        max_lighting=cfg.max_lighting,
        p_affine=cfg.p_affine,
        p_lighting=cfg.p_lighting,
        mask_fill=task.void or 0,
        flip_pairs=task.flip_pairs,
    )


def stage_meta(cfg: ImageConfig, task: TaskSetup, classes: list[str], stats: Stats) -> dict[str, Any]:
    """What a checkpoint says about itself: enough to resume it, continue from it, or export it."""
    return {
        "task": cfg.task,
        "spec": dataclasses.asdict(task.spec),
        "classes": classes,
        "size": cfg.size,
        "stats": [list(s) for s in stats],
        "config": cfg.model_dump(mode="json"),
    }


def _previous_stage(cfg: ImageConfig) -> dict[str, Any] | None:
    if not cfg.from_stage:
        return None
    path = cfg.out / f"{cfg.from_stage}.pt"
    if not path.is_file():
        raise ConfigError(f"--from-stage {cfg.from_stage}: no checkpoint {path}")
    state = load_checkpoint(path)
    if not state.get("complete"):
        raise ConfigError(
            f"--from-stage {cfg.from_stage}: {path} is unfinished; finish it with --resume first"
        )
    return state


def use_threads(cfg: TrainConfig) -> None:
    """torch's intra-op threads as `cfg.threads` says (None: torch's default, one per core)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)


def run_training(cfg: TrainConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Train one stage; write `<out>/<stage>.pt`, `<out>/<stage>.metrics.json` and its plot
    `<out>/<stage>.curves.png`; return the metrics.
    A task with its own recipe runs that instead (it writes its own stages and metrics)."""
    use_threads(cfg)
    recipe = task_for(cfg.task).recipe
    if recipe is not None:
        return recipe(cfg, reporter)
    return run_stage(_staged(cfg), reporter)


def run_stage(cfg: ImageConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """One `fit_one_cycle` stage of an image task, its metrics file and plot; returns the metrics."""
    learn, task = _build(cfg, reporter)
    if not cfg.resume and learn.is_main:
        show_batch(learn.data, cfg.out / f"{cfg.stage}.batch.png")
    learn.fit_one_cycle(
        cfg.epochs, cfg.learning_rate, stage=cfg.stage, resume=cfg.resume, pct_start=cfg.pct_start
    )
    last = learn.history[-1]
    y_valid = learn.data.src.y_valid
    trivial = task.baseline(learn.data.src.y_train, y_valid)
    baseline = {metric_name(m): float(m(trivial, y_valid)) for m in learn.metrics}
    result = {
        "stage": cfg.stage,
        "checkpoint": str(learn.stage_path(cfg.stage)),
        "epochs": len(learn.history),
        "train_loss": last.train_loss,
        "valid_loss": last.valid_loss,
        "metrics": last.metrics,
        "baseline": baseline,
        "history": [dataclasses.asdict(r) for r in learn.history],
        "config": cfg.model_dump(mode="json"),
    }
    if task.per_label is not None:
        result["per_label"] = task.per_label(*learn.get_preds())
    if learn.is_main:
        write_json_atomic(cfg.out / f"{cfg.stage}.metrics.json", result)
        plot_curves(result, cfg.out / f"{cfg.stage}.curves.png")
    return result


def _staged(cfg: TrainConfig) -> ImageConfig:
    """`cfg` as the options of a task that trains in `fit_one_cycle` stages (the image tasks')."""
    if not isinstance(cfg, ImageConfig):
        raise ConfigError(
            f"{cfg.task} trains by its own recipe (train-kit train {cfg.task}); it has no stages"
        )
    return cfg


def run_lr_find(
    cfg: ImageConfig, start_lr: float, end_lr: float, num_it: int, rule: str = DEFAULT_RULE
) -> tuple[LRFind, Path]:
    """Sweep rates on the configured learner; `rule` picks the suggestion. The plot (every rule's
    rate marked) goes to `<out>/lr_find.png`, the sweep itself to `<out>/lr_find.json`."""
    if current_ranks() is not None:
        raise ConfigError("lr-find runs in one process; start it without torchrun")
    use_threads(cfg)
    learn = build_learner(cfg)
    found = learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it, rule=rule)
    write_json_atomic(cfg.out / "lr_find.json", dataclasses.asdict(found))
    return found, found.plot(cfg.out / "lr_find.png")
