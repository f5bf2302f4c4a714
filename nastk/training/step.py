"""One optimizer step of nastk's training loops (a candidate's in the train evaluator, a
supernet's sandwich): the forward passes under the configured precision, every loss checked
for divergence and back-propagated (scaled for fp16), then the gradients unscaled and clipped,
the optimizer stepped and the loss scale updated.

With fp32 and bf16 a step is exactly ``loss.backward(); clip_grad_norm_(...);
optimizer.step()``; with fp16 on CUDA a :class:`~nastk.training.precision.GradScaling` scales
the loss and skips a step whose gradients hold inf or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from nastk.core.errors import NastkError
from nastk.training.precision import GradScaling, Precision, autocast

__all__ = ["Diverged", "OptimizerStep", "finite_loss"]


class Diverged(NastkError):
    """The training loss became NaN or infinite."""


def finite_loss(loss: torch.Tensor, at: str, *, what: str = "loss", run: str = "",
                terms: Mapping[str, torch.Tensor] | None = None, hint: str = "") -> float:
    """The value of ``loss``; raises :class:`Diverged` when it is NaN or infinite, saying
    ``{run} diverged: {what} became {value} at {at}``, then the value of every named loss
    ``terms`` and the ``hint`` (what to change)."""
    value = float(loss.detach())
    if math.isfinite(value):
        return value
    text = f"{run} diverged" if run else "diverged"
    text += f": {what} became {value} at {at}"
    if terms:
        text += f" (terms: { {k: float(v) for k, v in terms.items()} })"
    raise Diverged(text + (f"; {hint}" if hint else ""))


class OptimizerStep:
    """The mechanics of an optimizer step around the forward passes of ``model``: call
    :meth:`zero_grad`, then for every loss of the step :meth:`backward` (after forward passes
    under :meth:`autocast`), then :meth:`step`. ``grad_clip`` (max norm over all of
    ``model``'s parameters, ``None``: no clipping) applies to the gradients unscaled."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device, precision: Precision,
                 grad_clip: float | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.precision: Precision = precision
        self.grad_clip = grad_clip
        #: fp16 loss scaling (a pass-through otherwise); its state belongs in checkpoints
        self.scaling = GradScaling(device, precision)

    def autocast(self) -> AbstractContextManager[Any]:
        """The context of the step's forward passes (a no-op for fp32)."""
        return autocast(self.device, self.precision)

    def zero_grad(self) -> None:
        """Clear the gradients of the optimizer's parameters (set to ``None``)."""
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``, adding to the step's gradients."""
        self.scaling.backward(loss)

    def step(self) -> None:
        """Clip the step's gradients, take the optimizer step (skipped by fp16 loss scaling
        when they are not finite) and update the loss scale."""
        if self.grad_clip is not None:
            self.scaling.unscale(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaling.step(self.optimizer)
        self.scaling.update()
