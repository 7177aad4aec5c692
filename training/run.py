"""A whole run from a task's options: the task plans its stages (`TrainingTask.stages`: an image
task one `fit_one_cycle` stage, sentiment ULMFiT's several) and the one runner, `training.stages`,
fits, resumes, saves and scores each of them the same way.

The CLI is a thin shell over these functions, so tests and notebooks can call them directly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import write_json_atomic
from training.config import TrainConfig
from training.data.bunch import DataBunch
from training.distributed import current_ranks
from training.errors import ConfigError
from training.image_run import build_image_learner, stage_meta, train_transforms
from training.learner import Learner, Reporter
from training.lr_finder import LRFind
from training.lr_suggestions import DEFAULT_RULE
from training.stages import run_stages
from training.tasks import task_for
from training.tasks.image_config import ImageConfig

__all__ = ["build_learner", "run_lr_find", "run_training", "stage_meta", "train_transforms", "use_threads"]


def build_learner(cfg: ImageConfig, reporter: Reporter | None = None) -> Learner[DataBunch]:
    """Data and network as `cfg` says, weights from `from_stage` if named, frozen if pretrained."""
    return build_image_learner(cfg, task_for(cfg.task), reporter)[0]


def use_threads(cfg: TrainConfig) -> None:
    """torch's intra-op threads as `cfg.threads` says (None: torch's default, one per core)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)


def run_training(cfg: TrainConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the stages `cfg`'s task plans; each writes `<out>/<stage>.pt`, `<out>/<stage>.metrics.json`
    and its plot `<out>/<stage>.curves.png`. Returns the last stage's metrics."""
    use_threads(cfg)
    return run_stages(task_for(cfg.task).stages(cfg, reporter), cfg)


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
