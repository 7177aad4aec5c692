"""A trained stage's ResNet body as a torchvision state dict: offline transfer learning.

`train-kit save-body` writes it; `--weights` starts another task's body from it.
"""

from __future__ import annotations

from pathlib import Path

from serving.bundle.pipeline import Network
from training.checkpoint import atomic_save, load_checkpoint
from training.models import body_of
from training.tasks import spec_from_meta

__all__ = ["save_body_weights"]

TORCHVISION_NAMES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def save_body_weights(checkpoint: Path, to: Path) -> None:
    """A stage's body as torchvision names (`conv1.weight`, `layer4.1.bn2.bias`, ...), so that
    `--weights` can start another task from it."""
    state = load_checkpoint(checkpoint)
    model = Network(spec_from_meta(state["meta"]), state["model"]).build()
    body = {
        f"{TORCHVISION_NAMES[int(index)]}.{rest}": tensor
        for key, tensor in body_of(model).state_dict().items()
        for index, rest in [key.split(".", 1)]
    }
    to.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(body, to)
