"""Mixed precision as a callback: the forward pass and loss under autocast, and on CUDA's fp16 a
loss scaler so that small gradients do not underflow (bf16 on the CPU has fp32's range: no scaler)."""

from __future__ import annotations

import torch

from training.callbacks.core import Callback, Fit

__all__ = ["MixedPrecision"]


class MixedPrecision(Callback):
    """Autocast from `before_batch` to `after_loss` in `dtype`; backward and step stay in fp32."""

    order = 10  # its loss scaler must exist before a resume loads the saved scaler's state
    shapes_the_step = True

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.autocast: torch.autocast | None = None  # entered for the batch in flight

    def before_fit(self, fit: Fit) -> None:
        device = fit.learn.device.type
        fit.scaler = torch.amp.GradScaler(device, enabled=self.dtype == torch.float16)

    def before_batch(self, fit: Fit) -> None:
        self.autocast = torch.autocast(fit.learn.device.type, dtype=self.dtype)
        self.autocast.__enter__()

    def after_loss(self, fit: Fit) -> None:
        self._leave()

    def after_fit(self, fit: Fit) -> None:
        self._leave()  # a batch that failed mid-forward must not leave the thread autocasting

    def _leave(self) -> None:
        if self.autocast is not None:
            self.autocast.__exit__(None, None, None)
            self.autocast = None
