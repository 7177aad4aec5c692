"""The export's parity check starts from what training fed the network, so a bundle whose
preprocessing drifts from training's is refused, not published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.bundle.pipeline import ImagePreprocess
from training.export import ExportError, export_stage


def test_a_bundle_that_prepares_images_otherwise_than_training_is_not_published(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = ImagePreprocess.scaled

    def drifted(self: ImagePreprocess, pixels: np.ndarray) -> np.ndarray:
        return honest(self, pixels) + np.float32(0.5)  # e.g. a normalization of another body

    monkeypatch.setattr(ImagePreprocess, "scaled", drifted)
    models = tmp_path / "models"
    with pytest.raises(ExportError, match=r"disagrees|another"):
        export_stage(trained_run, "stage-1", "tags", models, parity_items=8)
    assert not (models / "tags").exists()


def test_the_same_export_passes_when_both_sides_prepare_alike(trained_run: Path, tmp_path: Path) -> None:
    assert export_stage(trained_run, "stage-1", "tags", tmp_path / "models", parity_items=8).name == "1"
