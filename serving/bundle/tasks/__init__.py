"""The task registry: a task's name → its serving side (`ServedTask`). One module per task.

Adding a task is a module here with a `TASK`, one line in `TASKS`, and its training twin in
`training/tasks/`; nothing else in `serving` names a task.
"""

from __future__ import annotations

from serving.bundle.errors import BundleError
from serving.bundle.tasks import classify, multilabel, pose, segmentation, sentiment
from serving.bundle.tasks.base import ServedTask

__all__ = ["TASKS", "ServedTask", "task_for"]

TASKS: dict[str, ServedTask] = {
    task.name: task for task in (multilabel.TASK, segmentation.TASK, pose.TASK, sentiment.TASK, classify.TASK)
}


def task_for(name: str) -> ServedTask:
    """The task called `name`, or a `BundleError` naming the tasks this code serves."""
    try:
        return TASKS[name]
    except KeyError:
        raise BundleError(f"task {name!r} is not one this code serves ({', '.join(TASKS)})") from None
