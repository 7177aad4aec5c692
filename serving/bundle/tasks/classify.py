"""Single-label image classification (ImageNet-style folders): one class per image, with every
class's probability."""

from __future__ import annotations

from serving.bundle.tasks.single_label import SingleLabelTask

__all__ = ["TASK"]


class ClassifyTask(SingleLabelTask):
    name = "classify"


TASK = ClassifyTask()
