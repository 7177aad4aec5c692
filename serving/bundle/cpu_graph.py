"""The graph a CPU host runs: int8 where it keeps the answers, else fp32, beside the fp16 GPU graph.

ONNX Runtime's CPU kernels run an fp16 graph's weights through casts on every call, and static int8
(QDQ, per-channel weights, activations calibrated on training images) runs convolutions on the CPU's
integer units. Both candidates go through the export's own parity check; the first that passes is
written as `model.cpu.onnx` and described in the manifest (`CpuGraph`). Export-time only: the
quantizer needs `onnx`, which a serving host does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from serving.bundle.manifest import CPU_ONNX_MODEL, CpuGraph, Parity

if TYPE_CHECKING:
    import torch

__all__ = ["write_cpu_graph"]

CALIBRATION_BATCH = 8


def write_cpu_graph(
    model: torch.nn.Module,
    example: np.ndarray,
    calibration: np.ndarray,
    folder: Path,
    export: Callable[[torch.nn.Module, np.ndarray, Path], None],
    check: Callable[[torch.nn.Module, Path], Parity],
    skip_fp32: bool = False,
    int8: bool = True,
) -> CpuGraph | None:
    """Write `folder/model.cpu.onnx` (int8, else fp32) if one passes `check`; `export` writes an
    fp32 graph of `model` traced on `example`. `skip_fp32`: the main graph is fp32 already; `int8`
    off: no int8 candidate (a segmenter at native resolution sees image sizes its training-size
    calibration never did)."""
    with closing(_candidates(model, example, calibration, folder, export, skip_fp32, int8)) as candidates:
        for precision, path in candidates:
            try:
                parity = check(model, path)
            except Exception:  # the check's way of refusing: this candidate changes the answers
                continue
            path.rename(folder / CPU_ONNX_MODEL)
            return CpuGraph(precision=precision, parity=parity)
    return None


def _candidates(
    model: torch.nn.Module,
    example: np.ndarray,
    calibration: np.ndarray,
    folder: Path,
    export: Callable[[torch.nn.Module, np.ndarray, Path], None],
    skip_fp32: bool,
    int8_wanted: bool,
) -> Generator[tuple[Literal["int8", "fp32"], Path], None, None]:
    fp32 = folder / ".cpu.fp32.onnx"
    int8 = folder / ".cpu.int8.onnx"
    try:
        export(model, example, fp32)
        if int8_wanted and _quantized(fp32, int8, calibration):
            yield "int8", int8
        if not skip_fp32:
            yield "fp32", fp32
    finally:
        for leftover in (fp32, int8):
            leftover.unlink(missing_ok=True)


def _quantized(fp32: Path, int8: Path, calibration: np.ndarray) -> bool:
    """Whether the quantizer made `int8` (an operator it cannot take leaves fp32 the candidate). Its
    advice, logged as warnings on the root logger, is not the exporter's user's to act on: muted."""
    logging.disable(logging.WARNING)
    try:
        _quantize(fp32, int8, calibration)
    except Exception:
        return False
    finally:
        logging.disable(logging.NOTSET)
    return True


def _quantize(fp32: Path, int8: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = _input_name(fp32)
    batches = iter(
        [calibration[i : i + CALIBRATION_BATCH] for i in range(0, len(calibration), CALIBRATION_BATCH)]
    )

    class Batches(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            return None if batch is None else {name: np.ascontiguousarray(batch, np.float32)}

    quantize_static(
        str(fp32),
        str(int8),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _input_name(path: Path) -> str:
    import onnx

    return str(onnx.load(str(path), load_external_data=False).graph.input[0].name)
