"""Batch-norm recalibration: recompute running statistics with the weights fixed.

Used after training a candidate (short runs leave the running averages far from the final
weights' statistics), and before scoring every sub-network of a supernet (the statistics
depend on the active sub-network). One implementation serves both.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["batchnorm_layers", "recalibrate_bn"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms of ``model`` that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor | tuple | list], *,
                   device: torch.device | str | None = None) -> int:
    """Reset every batch norm's running statistics and re-estimate them as the exact average
    over ``batches`` (input tensors, or ``(inputs, targets)`` pairs), in train mode with no
    gradient; the weights, each layer's momentum and the model's train/eval mode are left as
    they were. Batches of a single example are skipped (batch norm cannot normalise them).
    Returns the number of batches used. Calibrate on training data only: calibrating on the
    validation split leaks it into the score.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    saved = [(bn, bn.momentum) for bn in layers]
    was_training = model.training
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: the exact mean over the batches
    model.train()
    n = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if len(x) <= 1:
                continue
            model(x if device is None else x.to(device))
            n += 1
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.train(was_training)
    if n == 0:
        raise ValueError("recalibrate_bn: no batch of two or more examples given")
    return n
