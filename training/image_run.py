"""An image task's run: its data block and network as a `Learner`, and its plan, one stage.

The stage is `cfg.stage`, fitted with `fit_one_cycle`: the head over a frozen pretrained body by
default, or (`--from-stage`, `--unfreeze`) a trained stage continued at another size with
discriminative rates. The runner (`training.stages`) fits, resumes and scores it as any stage.

The task modules call this (`ImageTask.stages`), so it names them for type checking only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from serving.bundle.networks.bodies import body_for
from training.checkpoint import load_checkpoint
from training.data import get_transforms, imagenet_stats
from training.data.batch_transforms import BatchAugment
from training.data.bunch import DataBunch, Stats
from training.data.show import show_batch
from training.data.transforms import Transforms
from training.distributed import current_ranks, join
from training.errors import ConfigError
from training.learner import Learner, Reporter
from training.models import Pretrained, create_model, layer_groups
from training.stages import BaselineModel, OneCycle, Stage

if TYPE_CHECKING:  # the task modules import this one, not the other way round
    from training.tasks.base import TaskSetup, TrainingTask
    from training.tasks.image_config import ImageConfig

__all__ = ["batch_augment", "build_image_learner", "image_stages", "stage_meta", "train_transforms"]


def image_stages(cfg: ImageConfig, task: TrainingTask[Any], reporter: Reporter | None = None) -> list[Stage]:
    """The plan of `train-kit train <image task>`: one `fit_one_cycle` stage named `cfg.stage`,
    scored against the task's baseline (and, where the task has them, each label's scores)."""
    learn, setup = build_image_learner(cfg, task, reporter)
    per_label = setup.per_label

    def per_label_scores(learn: Learner[Any]) -> dict[str, Any]:
        return {} if per_label is None else {"per_label": per_label(*learn.get_preds())}

    stage = Stage(
        cfg.stage,
        learn,
        OneCycle(cfg.epochs, cfg.learning_rate, pct_start=cfg.pct_start),
        baseline=BaselineModel(setup.baseline, setup.src.y_train, setup.src.y_valid),
        report=per_label_scores,
        preview=show_batch,
    )
    return [stage]


def build_image_learner(
    cfg: ImageConfig, task: TrainingTask[Any], reporter: Reporter | None = None
) -> tuple[Learner[DataBunch], TaskSetup]:
    """Data and network as `cfg` says, weights from `from_stage` if named, frozen if pretrained;
    with the task's setup (loss, metrics, baseline) it was built from."""
    torch.manual_seed(cfg.seed)  # the network's initial weights, reproducibly
    setup = task.setup(cfg)
    train_tfms = train_transforms(cfg, setup)
    ranks = current_ranks()  # a torchrun launch: join the group, load this rank's shards
    device = join(ranks) if ranks is not None else None
    data = setup.src.transform(train_tfms, size=cfg.size).databunch(
        bs=cfg.bs, num_workers=cfg.num_workers, seed=cfg.seed, device=device, ranks=ranks
    )
    if cfg.batch_tfms:
        data.train_dl.batch_tfm = batch_augment(cfg, setup)
    previous = _previous_stage(cfg)
    data.normalize(_stats(cfg, previous))
    if previous is not None and previous["meta"]["classes"] != data.classes:
        raise ConfigError(
            f"--from-stage {cfg.from_stage}: trained on classes {previous['meta']['classes']}, "
            f"but this data has {data.classes}"
        )
    # A stage that continues another (or itself, resumed) takes its weights from it, not from ImageNet.
    pretrained = Pretrained(cfg.weights) if cfg.pretrained and previous is None and not cfg.resume else None
    model = create_model(setup.spec, pretrained)
    meta = stage_meta(cfg, setup, data.classes, data.stats or imagenet_stats)
    learn = Learner(
        data,
        model,
        setup.loss_func,
        setup.metrics,
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
    return learn, setup


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
