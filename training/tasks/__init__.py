"""The task registry: a task's name → its training side (`TrainingTask`). One module per task,
mirroring `serving.bundle.tasks` (each module's `served` is its serving twin).

Adding a task is a module here with a `TASK`, one line in `TASKS`, its name in
`training.config.TaskName`, and its serving twin; nothing else in `training` names a task.
"""

from __future__ import annotations

from typing import Any

from serving.bundle.networks import NetworkSpec
from training.config import TrainConfig
from training.errors import ConfigError
from training.tasks import classify, multilabel, pose, segmentation, sentiment
from training.tasks.base import ExportPlan, TaskSetup, TrainingTask

__all__ = ["TASKS", "ExportPlan", "TaskSetup", "TrainingTask", "setup_task", "spec_from_meta", "task_for"]

TASKS: dict[str, TrainingTask] = {
    task.name: task for task in (multilabel.TASK, segmentation.TASK, pose.TASK, sentiment.TASK, classify.TASK)
}


def task_for(name: str) -> TrainingTask:
    """The task called `name`, or a `ConfigError` naming the tasks this kit trains."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"task {name!r} is not one this kit trains ({', '.join(TASKS)})") from None


def setup_task(cfg: TrainConfig) -> TaskSetup:
    """Data, network, loss, metrics and baseline of `cfg`'s task, for one stage."""
    return task_for(cfg.task).setup(cfg)


def spec_from_meta(meta: dict[str, Any]) -> NetworkSpec:
    """The network spec a checkpoint was trained with, as its task reads it."""
    return task_for(meta["task"]).spec(meta)
