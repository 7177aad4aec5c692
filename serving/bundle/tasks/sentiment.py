"""Text sentiment (ULMFiT-style classifier on token ids): a label with every class's probability."""

from __future__ import annotations

from serving.bundle.tasks.single_label import SingleLabelPostprocess, SingleLabelTask

__all__ = ["TASK", "SentimentPostprocess"]

SentimentPostprocess = SingleLabelPostprocess  # the name bundles of format 1 pickled


class SentimentTask(SingleLabelTask):
    name = "sentiment"
    takes = "texts"


TASK = SentimentTask()
