"""What a supernet trainer does differently as one of several data-parallel workers.

Every worker runs the same sandwich at every step (the sub-networks come from the run seed and
the step, see :class:`~nastk.training.supernet.SupernetTrainer`), on its shard of the step's
global batch. After the sandwich's backward passes the gradients are averaged over the workers
in one flat all-reduce, so every worker takes the same optimizer step from the same weights.

Why not ``DistributedDataParallel``'s wrapper: a sandwich step runs several forward/backward
passes through different sub-networks before one optimizer step, and a sub-network leaves part
of the supernet unused (skipped depth, inactive kernels). DDP would all-reduce on every backward
(or need ``no_sync`` for all but the last, with ``find_unused_parameters``, whose handling of
gradients accumulated under ``no_sync`` for parameters the last pass does not use is not what a
sandwich needs). Averaging once per step over exactly the parameters that received a gradient
(the same set on every worker) is what DDP computes for a single pass, at one collective per
step.

Batch norm: :func:`~nastk.nn.sync_batchnorm.synchronize_batchnorm` makes the training
forward normalise over the global batch, so ``W`` workers with shards of ``b`` train the same
function as one worker with batches of ``W * b``. Rank 0 alone recalibrates BN and evaluates at
the end of an epoch and alone writes the checkpoint; it then broadcasts its weights, buffers and
the epoch's record, so every worker continues from the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class DataParallel:
    """This worker's place in a data-parallel group (``torch.distributed`` initialised)."""

    rank: int
    world: int
    group: Any = None  # None: the default process group
    device: Any = None  # where collectives' own tensors live (a CUDA device under nccl)

    @classmethod
    def from_process_group(cls) -> DataParallel:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DataParallel needs an initialised torch.distributed process "
                               "group (Ray Train's TorchTrainer sets one up)")
        return cls(rank=dist.get_rank(), world=dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This worker's contiguous share of a global batch of ``n`` items (as even as
        possible; every worker gets at least one item when ``n >= world``)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def loss_scale(self, n_local: int, n_global: int) -> float:
        """Factor on a worker's mean loss such that the average of the workers' gradients is
        the gradient of the global batch's mean loss (1.0 for equal shards)."""
        return n_local * self.world / n_global

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace each parameter's gradient by its mean over the workers (one all-reduce over
        the flattened gradients of the parameters that have one)."""
        import torch.distributed as dist

        with_grad = [p for p in params if p.grad is not None]
        if not with_grad:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in with_grad])  # type: ignore[union-attr]
        dist.all_reduce(flat, group=self.group)
        flat.div_(self.world)
        offset = 0
        for p in with_grad:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n

    def broadcast_state(self, module: nn.Module) -> None:
        """Every worker takes rank 0's parameters and buffers."""
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0, group=self.group)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every worker (picklable objects)."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value's mean over the workers (the same keys on every worker)."""
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                         device=self.device)
        dist.all_reduce(t, group=self.group)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist(), strict=True)}

    def sum(self, value: float) -> float:
        """The sum of ``value`` over the workers."""
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, group=self.group)
        return float(t.item())
