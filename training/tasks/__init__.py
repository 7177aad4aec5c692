"""The task registry: a task's name → its training side (`TrainingTask`). One module per task,
mirroring `serving.bundle.tasks` (each module's `served` is its serving twin).

A task module holds the task's name, its options (`settings`: the flags of `train-kit train <task>`,
its TOML keys and defaults, its run folder `runs/<task>`), its demo data (`train-kit data <task>`) and
everything it trains and exports by. Adding a task is a module here with a `TASK`, one line in
`TASKS`, and its serving twin; nothing else in `training` names a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from serving.bundle.networks import NetworkSpec
from training.config import TrainConfig
from training.errors import ConfigError
from training.tasks import classify, multilabel, pose, segmentation, sentiment
from training.tasks.base import ExportPlan, TaskSetup, TrainingTask

__all__ = [
    "TASKS",
    "ExportPlan",
    "TaskSetup",
    "TrainingTask",
    "config_for",
    "setup_task",
    "spec_from_meta",
    "task_for",
]

TASKS: dict[str, TrainingTask[Any]] = {
    task.name: task for task in (multilabel.TASK, segmentation.TASK, pose.TASK, sentiment.TASK, classify.TASK)
}


def task_for(name: str) -> TrainingTask[Any]:
    """The task called `name`, or a `ConfigError` naming the tasks this kit trains."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task {name!r} is not one this kit trains ({', '.join(TASKS)})") from None


def config_for(values: Mapping[str, Any]) -> TrainConfig:
    """The options of the task `values["task"]` names, validated by that task's settings class."""
    return task_for(str(values["task"])).settings.model_validate(dict(values))


def setup_task(cfg: TrainConfig) -> TaskSetup:
    """Data, network, loss, metrics and baseline of `cfg`'s task, for one stage."""
    return task_for(cfg.task).setup(cfg)


def spec_from_meta(meta: dict[str, Any]) -> NetworkSpec:
    """The network spec a checkpoint was trained with, as its task reads it."""
    return task_for(meta["task"]).spec(meta)
