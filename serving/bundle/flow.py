"""The one request flow: decode → prepare → batch run → postprocess.

`Bundle.predict`, the server's `ServedModel` and the TorchServe handler all walk these steps; only
where the work happens differs (one call here; a thread pool, a batch queue and an inference thread
in the server; TorchServe's own batches in the handler). The pipeline's preprocess is the one thing
that knows whether an item is an image or a text (`ImagePreprocess`, `TextPreprocess`): callers ask
it, never its type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import numpy as np

from serving.bundle.images import MAX_PIXELS

if TYPE_CHECKING:
    from serving.bundle.pipeline import Pipeline

__all__ = [
    "Input",
    "Prepared",
    "Preparing",
    "Run",
    "answer",
    "pad_to_largest",
    "predict",
    "stack_items",
]

Size = tuple[int, int]
"""An image's (height, width) in pixels; a text's (1, tokens)."""
Input = bytes | bytearray | memoryview | str
"""One request item as it arrives: an encoded image, or a text (str or UTF-8 bytes)."""
Run = Callable[[np.ndarray], np.ndarray]
"""A runtime's `run`: one batch in, the network's raw outputs (one row per item) out."""


class Prepared(NamedTuple):
    """One item ready for the network (a float32 image (C, H, W), or int64 token ids (T,)) and its
    original size, which the postprocess answers in (a mask, points in the caller's pixels)."""

    item: Any  # np.ndarray, or a tensor already on the inference device
    size: Size


class Preparing(Protocol):
    """What the flow asks of a pipeline's preprocess; `ImagePreprocess` and `TextPreprocess` answer."""

    @property
    def takes(self) -> Literal["images", "texts"]: ...

    @property
    def item_shape(self) -> tuple[int, ...]:
        """One prepared item's shape, -1 for a free axis (token ids, an image at its own resolution)."""
        ...

    @property
    def item_bytes(self) -> int:
        """What one prepared item holds at most (the server's memory budget counts it before preparing)."""
        ...

    def prepare_item(self, data: Input, max_pixels: int = MAX_PIXELS) -> Prepared:
        """Decode and prepare one item; a bad one raises `ImageDecodeError` or `TextError`."""
        ...

    def batch(self, items: Sequence[Any]) -> Any:
        """Prepared items as one batch the network takes (padded where their sizes differ)."""
        ...

    def run_items(self, items: Sequence[Any], run: Run) -> list[np.ndarray]:
        """The network's output row for each prepared item, in order, in as few runs as suit them."""
        ...

    def warm_up_batch(self, n: int = 1) -> np.ndarray:
        """`n` inputs the network takes, for a first run before any request."""
        ...


def answer(pipeline: Pipeline, outputs: np.ndarray, sizes: Sequence[Size]) -> list[dict[str, Any]]:
    """The network's outputs (one row per item, in order) → answers in the task's terms."""
    return pipeline.postprocess(outputs, sizes)


def predict(
    pipeline: Pipeline, inputs: Sequence[Input], run: Run, max_pixels: int = MAX_PIXELS
) -> list[dict[str, Any]]:
    """The whole flow in the caller's thread: one answer per input, in order."""
    preprocess: Preparing = pipeline.preprocess
    prepared = [preprocess.prepare_item(data, max_pixels) for data in inputs]
    rows = preprocess.run_items([p.item for p in prepared], run)
    return answer(pipeline, stack_items(rows), [p.size for p in prepared])


def stack_items(items: Sequence[Any], multiple: int = 1) -> Any:
    """Prepared images (or a network's per-image outputs) as one batch, where they are (host
    arrays, or tensors on a device); where sizes differ, padded to the largest (`pad_to_largest`)."""
    if len(items) == 1 and multiple == 1:  # a lone request's item: a view, no copy
        item = items[0]
        if isinstance(item, np.ndarray) and not item.flags.writeable:  # never a client's read-only bytes
            return item[None].copy()
        return item[None]
    if multiple == 1 and all(item.shape == items[0].shape for item in items):
        if isinstance(items[0], np.ndarray):
            return np.stack(items)
        import torch

        return torch.stack(list(items))
    return pad_to_largest(items, multiple)


def pad_to_largest(items: Sequence[Any], multiple: int = 1) -> Any:
    """(C, H, W) items of any sizes (arrays, or tensors on one device) → one (N, C, H', W') batch,
    each zero-padded at the bottom and right to the largest height and width, rounded up to a
    multiple of `multiple`."""
    height = max(int(item.shape[-2]) for item in items)
    width = max(int(item.shape[-1]) for item in items)
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    shape = (len(items), int(items[0].shape[0]), height, width)
    if isinstance(items[0], np.ndarray):
        batch: Any = np.zeros(shape, items[0].dtype)
    else:
        batch = items[0].new_zeros(shape)
    for i, item in enumerate(items):
        batch[i, :, : item.shape[-2], : item.shape[-1]] = item
    return batch
