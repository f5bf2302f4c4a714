"""Batch norm over the global batch of a data-parallel step.

In data-parallel supernet training each worker holds a shard of the step's batch. Plain batch
norm would normalise every shard with its own statistics, so two workers with ``b`` images
each would train a different function than one worker with ``2b``. :func:`synchronize_batchnorm`
gives every batch-norm layer of a network (plain or elastic: the statistics cover the active
``c`` channels) a training forward whose mean and variance are those of the whole global batch:
one all-reduce of every worker's per-channel count, mean and variance per layer and forward
pass, differentiable, so the backward pass all-reduces the statistics' gradients too. The
running statistics are updated from the global statistics (the same on every worker).

The synchronised forward is active only inside :func:`global_statistics` (the trainer enters it
for its training step); outside it (BN recalibration, evaluation, a teacher's forward) the layers
behave exactly as before, so rank 0 can evaluate alone without the other workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_ACTIVE: dict[str, Any] = {"on": False, "group": None}
_SYNCED_CLASSES: dict[type, type] = {}


@contextlib.contextmanager
def global_statistics(group: Any) -> Iterator[None]:
    """Within this block, synchronised batch-norm layers in training mode normalise over the
    process group's global batch (``group``: a ``torch.distributed`` process group, None for
    the default one)."""
    previous = dict(_ACTIVE)
    _ACTIVE.update(on=True, group=group)
    try:
        yield
    finally:
        _ACTIVE.update(previous)


class _GlobalBatchStats:
    """Mixin placed before a ``_BatchNorm`` subclass: the training forward inside
    :func:`global_statistics` uses the global batch's statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _ACTIVE["on"] or not self.training:  # type: ignore[attr-defined]
            return super().forward(x)  # type: ignore[misc]
        return _global_batch_norm(self, x, _ACTIVE["group"])  # type: ignore[arg-type]


def synchronize_batchnorm(model: nn.Module) -> int:
    """Give every batch-norm layer of ``model`` the global-statistics training forward (each
    layer's class becomes a subclass of its own class; parameters, buffers and state-dict keys
    are unchanged). Returns the number of layers changed."""
    n = 0
    for module in model.modules():
        cls = type(module)
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or issubclass(
                cls, _GlobalBatchStats):
            continue
        if cls not in _SYNCED_CLASSES:
            _SYNCED_CLASSES[cls] = type(f"GlobalStats{cls.__name__}", (_GlobalBatchStats, cls),
                                        {"__module__": __name__})
        module.__class__ = _SYNCED_CLASSES[cls]
        n += 1
    return n


class _SumOverWorkers(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: every worker's statistics
    are the sum of all shards', so each shard's gradient is the sum of all workers' losses'."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        import torch.distributed as dist

        out = grad.contiguous().clone()
        dist.all_reduce(out, group=ctx.group)
        return out, None


def _global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor,
                       group: Any) -> torch.Tensor:
    import torch.distributed as dist

    c = x.size(1)
    if c > bn.num_features:
        raise ValueError(f"{type(bn).__name__}: input has {c} channels, max is "
                         f"{bn.num_features}")
    dims = [0, *range(2, x.dim())]
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # fp16/bf16: in fp32
    shape = [1, c] + [1] * (x.dim() - 2)
    # every worker's (count, mean, variance), gathered by summing rows that are zero except at
    # the worker's own rank, then merged (Chan et al.): as accurate as one batch norm over
    # the whole batch, a constant channel has variance exactly 0 as it would there
    var_local, mean_local = torch.var_mean(xf, dim=dims, unbiased=False)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    row = torch.cat([xf.new_tensor([float(x.numel() // c)]), mean_local, var_local])
    rows = torch.cat([xf.new_zeros((rank, 2 * c + 1)), row[None],
                      xf.new_zeros((world - rank - 1, 2 * c + 1))])
    table = _SumOverWorkers.apply(rows, group)
    counts = table[:, :1].detach()
    means, variances = table[:, 1:c + 1], table[:, c + 1:]
    count = counts.sum()
    mean = (counts * means).sum(0) / count
    var = (counts * (variances + (means - mean) ** 2)).sum(0) / count
    y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.affine:
        y = y * bn.weight[:c].to(xf.dtype).view(shape) + bn.bias[:c].to(xf.dtype).view(shape)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            assert bn.num_batches_tracked is not None and bn.running_var is not None
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            unbiased = var * (count / (count - 1.0)) if float(count) > 1 else var
            rm, rv = bn.running_mean[:c], bn.running_var[:c]
            rm.mul_(1 - factor).add_(mean.detach().to(rm.dtype) * factor)
            rv.mul_(1 - factor).add_(unbiased.detach().to(rv.dtype) * factor)
    return y.to(x.dtype)
