"""The U-Net answers one logit per class for every input pixel, at any size, and exports to ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from serving.bundle.networks.unet import UnetSpec, build_unet


@pytest.mark.parametrize(("height", "width"), [(32, 32), (64, 96), (96, 64), (70, 45)])
def test_the_output_has_the_input_size(height: int, width: int) -> None:
    torch.manual_seed(0)
    model = build_unet(UnetSpec("resnet18", n_classes=12)).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, height, width))
    assert out.shape == (2, 12, height, width)


def test_the_encoder_is_the_classifiers_body_and_learns_with_the_decoder() -> None:
    torch.manual_seed(0)
    model = build_unet(UnetSpec("resnet18", n_classes=3))
    assert len(model.body) == 8
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model.body[0].weight.grad is not None and model.final[1].weight.grad is not None


def test_an_unknown_architecture_is_named() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_unet(UnetSpec("vgg", 2))


def test_it_exports_to_onnx_with_dynamic_batch_height_and_width(tmp_path: Path) -> None:
    import contextlib
    import io

    import numpy as np
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_unet(UnetSpec("resnet18", n_classes=4)).eval()
    dims = {0: torch.export.Dim("N", min=1, max=64), 2: torch.export.Dim("H", min=32, max=1024),
            3: torch.export.Dim("W", min=32, max=1024)}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(tmp_path / "unet.onnx"), dynamo=True,
                          opset_version=18, external_data=False, dynamic_shapes=(dims,))  # fmt: skip
    session = ort.InferenceSession(str(tmp_path / "unet.onnx"), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 64), (2, 3, 96, 64)]:
        x = torch.randn(*shape)
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-3)
