"""Segmentation (CamVid-style codes, U-Net): a class id per pixel, at the caller's image size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from serving.bundle.tasks.base import FeedbackLayout, ServedTask, Size, json_mask

if TYPE_CHECKING:
    from serving.bundle.manifest import Manifest
    from serving.bundle.pipeline import Pipeline

__all__ = ["TASK", "SegmentationPostprocess"]


@dataclass(frozen=True)
class SegmentationPostprocess:
    """Per-pixel argmax over the real classes (never `void`), resized back with nearest-neighbour."""

    codes: tuple[str, ...]
    void: int | None = None
    native: bool = False
    """Outputs at the image's own resolution (padded at the bottom and right): cropped, not resized."""

    def class_ids(self, outputs: np.ndarray) -> np.ndarray:
        """(N, classes, h, w) logits → (N, h, w) uint8 class ids at the network's size."""
        if self.void is not None:
            outputs = outputs.copy()
            outputs[:, self.void] = -np.inf
        return outputs.argmax(axis=1).astype(np.uint8)

    def masks(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[np.ndarray]:
        """One (height, width) uint8 mask per item, at that item's original size."""
        return [self._fit(ids, size) for ids, size in zip(self.class_ids(outputs), sizes, strict=True)]

    def _fit(self, ids: np.ndarray, size: Size) -> np.ndarray:
        if ids.shape == tuple(size):
            return ids
        if self.native:
            return np.ascontiguousarray(ids[: size[0], : size[1]])
        return np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.Resampling.NEAREST))

    def __call__(self, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
        return [{"mask": mask} for mask in self.masks(outputs, sizes)]


class SegmentationTask(ServedTask):
    name = "segmentation"
    postprocess = SegmentationPostprocess
    feedback = FeedbackLayout("records.csv", "mask_png")
    spatial = True

    def labels(self, postprocess: SegmentationPostprocess) -> tuple[str, ...]:
        return postprocess.codes

    def problems(self, manifest: Manifest, pipeline: Pipeline) -> list[str]:
        post: SegmentationPostprocess = pipeline.postprocess
        if post.void is not None and not 0 <= post.void < len(post.codes):
            return [f"a void code {post.void} outside the {len(post.codes)} codes"]
        return []

    def json_answer(self, manifest: Manifest, answer: dict[str, Any]) -> dict[str, Any]:
        return json_mask(answer["mask"], manifest.labels)


TASK = SegmentationTask()
