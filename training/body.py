"""A trained stage's body as its publisher's state dict: offline transfer learning between tasks.

`train-kit save-body` writes it (torchvision's names for a ResNet, EfficientNet-PyTorch's for a
Lite); `--weights` starts another task's body from it.
"""

from __future__ import annotations

from pathlib import Path

from serving.bundle.networks.bodies import BODIES
from serving.bundle.pipeline import Network
from training.checkpoint import atomic_save, load_checkpoint
from training.errors import ConfigError
from training.models import body_of
from training.pretrained import to_external
from training.tasks import spec_from_meta

__all__ = ["save_body_weights"]


def save_body_weights(checkpoint: Path, to: Path) -> None:
    """A stage's body under its publisher's names (`layer4.1.bn2.bias`, `_blocks.15._bn2.bias`), so
    that `--weights` can start another task from it."""
    state = load_checkpoint(checkpoint)
    spec = spec_from_meta(state["meta"])
    arch = getattr(spec, "arch", None)
    if arch not in BODIES:
        raise ConfigError(f"{checkpoint}: a {state['meta']['task']} stage has no image body to save")
    model = Network(spec, state["model"]).build()
    to.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(to_external(arch, body_of(model)), to)
