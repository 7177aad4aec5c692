"""A network → the bundle's `model.onnx`: fp16 weights, fp32 inputs and outputs, dynamic axes.

The recipe (checked on torch 2.14 / ORT 1.32): export fp32 with the dynamo exporter at opset 18 with
a dynamic batch axis (and dynamic height and width for a U-Net, length for a text model), convert
with onnxruntime's own float16 converter keeping fp32 inputs and outputs, topologically sort.
Needs `onnx` and `onnxscript` (the `train` extra); imported when called, so reading bundles does not.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from serving.bundle.manifest import MAX_INPUT_SIZE

if TYPE_CHECKING:
    import onnx

__all__ = ["free_lstm_sequence_axis", "refuse_fixed_axes", "to_onnx"]


def to_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    output: str = "logits",
    spatial: bool = False,
    input_name: str = "images",
    max_length: int | None = None,
    fp16: bool = True,
) -> None:
    """fp16 weights (fp32 with `fp16=False`), input `input_name` (fp32 images, or int64 token ids) and
    fp32 output `output`, dynamic batch (and H, W if `spatial`; the sequence axis up to `max_length`)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    dims = {0: torch.export.Dim("N", min=1, max=1024)}
    if spatial:
        dims |= {2: torch.export.Dim("H", min=32, max=MAX_INPUT_SIZE)}
        dims |= {3: torch.export.Dim("W", min=32, max=MAX_INPUT_SIZE)}
    if max_length is not None:
        dims |= {1: torch.export.Dim("T", min=1, max=max_length)}
    fp32 = path.with_suffix(".fp32.onnx")
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its progress
        torch.onnx.export(
            model.eval(),
            (example,),
            str(fp32),
            dynamo=True,
            opset_version=18,
            external_data=False,
            input_names=[input_name],
            output_names=[output],
            dynamic_shapes=(dims,),
        )
    exported = onnx.load(str(fp32))
    refuse_fixed_axes(exported, dims)
    if max_length is not None:
        free_lstm_sequence_axis(exported)
    if fp16:
        half = OnnxModel(convert_float_to_float16(exported, keep_io_types=True))
        half.topological_sort()
        exported = half.model
    onnx.save(exported, str(path))
    fp32.unlink()
    onnx.checker.check_model(str(path))


def refuse_fixed_axes(model: onnx.ModelProto, dims: dict[int, torch.export.Dim]) -> None:
    """Every axis asked to be dynamic must have come out dynamic: torch 2.14's exporter can fix one at
    the example's size without a word (a second LSTM exported in one process gets its token axis
    fixed), and the bundle would then refuse every other length."""
    shape = model.graph.input[0].type.tensor_type.shape.dim
    fixed = {axis: shape[axis].dim_value for axis in dims if shape[axis].dim_value}
    if fixed:
        raise RuntimeError(
            f"the ONNX exporter fixed input axes {fixed} (axis: size) that must stay free; torch's "
            "exporter does so to the second LSTM exported in one process: export it in a process of "
            "its own, as `train-kit export` does"
        )


def free_lstm_sequence_axis(model: onnx.ModelProto) -> int:
    """Undo the exporter baking the example's length into stacked LSTMs; returns the nodes fixed.

    torch 2.14's dynamo exporter turns an LSTM's output (T, 1, N, H) into the next layer's input
    (T, N, H) by Transpose + Reshape to the constant [T_example, -1, H], so any other length fails in
    ONNX Runtime. With allowzero=0, Reshape's 0 means "this axis as it is": [0, -1, H] fits every length.
    """
    import onnx.numpy_helper

    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {init.name: init for init in graph.initializer}
    fixed = 0
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Reshape" else None
        if source is None or source.op_type != "Transpose":
            continue
        if (lstm := producers.get(source.input[0])) is None or lstm.op_type != "LSTM":
            continue
        if node.input[1] not in initializers:  # computed from the input's shape: already free
            continue
        shape = onnx.numpy_helper.to_array(initializers[node.input[1]]).copy()
        shape[0] = 0
        name = f"{node.name}_any_length"
        graph.initializer.append(onnx.numpy_helper.from_array(shape, name))
        node.input[1] = name
        for attribute in node.attribute:  # the exporter sets allowzero=1 (0 = a literal zero)
            if attribute.name == "allowzero":
                attribute.i = 0
        fixed += 1
    used = {name for node in graph.node for name in node.input}
    for stale in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(stale)
    return fixed
