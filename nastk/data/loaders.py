"""Batches of any task: collating nested samples, moving them to a device, and the one factory
that builds every ``DataLoader`` of the engine.

A sample is ``(inputs, targets)``: ``inputs`` is a tensor (an image), ``targets`` any nested
structure of tensors, numbers, lists and dicts (a class label, a mask, a list of per-image
``{"boxes", "labels"}`` dicts, a density map plus a variable number of fixation points...).
A task that needs more than torch's default collate (e.g. variable-length targets) overrides
:meth:`nastk.task.contract.Task.collate`; the engine builds every loader through
:func:`make_loader`,
so training, evaluation, batch-norm calibration, supernet training, weight-sharing evaluation,
distillation and Ray workers all batch a task the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

__all__ = ["Batch", "batch_size_of", "calibration_batches", "detach", "iterate", "make_loader",
           "split_batch", "to_device"]

#: one collated batch: ``(inputs, targets)``
Batch = tuple[torch.Tensor, Any]


class Collating(Protocol):
    """What the loaders need of a task (:class:`nastk.task.contract.Task` is one)."""

    def collate(self, samples: list[Any]) -> Any: ...


def to_device(data: Any, device: torch.device | str) -> Any:
    """``data`` with every tensor in it moved to ``device``: tensors, and tuples, lists and
    dicts of them, nested to any depth (other values are returned as they are; named tuples
    and dict subclasses keep their type)."""
    if isinstance(data, torch.Tensor):
        return data.to(device, non_blocking=True)
    if isinstance(data, Mapping):
        moved = {k: to_device(v, device) for k, v in data.items()}
        try:
            return type(data)(moved)  # type: ignore[call-arg]
        except TypeError:
            return moved
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a NamedTuple
        return type(data)(*(to_device(v, device) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(v, device) for v in data)
    return data


def split_batch(batch: Any) -> Batch:
    """``(inputs, targets)`` of a collated batch, with an error that says what a task's samples
    must look like when it is something else."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(f"a batch must be (inputs, targets), got {type(batch).__name__}"
                    + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                    + "; a task's datasets yield (input tensor, targets) samples")


def _default_collate(task: Collating | None) -> bool:
    """Whether ``task`` batches with torch's default collate (the base ``Task.collate``)."""
    return task is None or bool(getattr(type(task).collate, "is_default", False))


def _collate_fn(task: Collating | None) -> Callable[[list[Any]], Any] | None:
    return None if task is None else task.collate


def make_loader(task: Collating | None, dataset: Dataset, batch_size: int, *,
                shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, num_workers: int = 0,
                shard: tuple[int, int] | None = None) -> DataLoader:
    """The loader of ``dataset`` for ``task``: batches collated by ``task.collate`` (torch's
    default collate when the task does not override it).

    ``shard=(rank, world)``: every batch of ``batch_size`` is split into ``world`` contiguous
    shards (as even as possible) and this loader yields shard ``rank`` of each, so data-parallel
    workers that share the generator's seed together see exactly the batches of the unsharded
    loader.

    A shuffled loader draws each pass's order as one permutation from ``generator`` (a seeded
    ``torch.Generator``; the global RNG is never used), whatever the dataset type. A
    :class:`~torch.utils.data.TensorDataset` under the default collate is indexed with a whole
    batch of indices at once (one gather instead of a collate per batch; the same batches).
    """
    if shuffle and generator is None:
        raise ValueError("make_loader: a shuffled loader needs a seeded generator (nastk never "
                         "draws from the global RNG)")
    n = len(dataset)  # type: ignore[arg-type]
    batches: Iterable[list[int]]
    if shuffle:
        assert generator is not None
        batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size,
                               drop_last)
        # the loader's own seed (for worker processes) comes from a copy of the generator's
        # seed, not from the global RNG and without drawing from the order's generator
        own = torch.Generator().manual_seed(generator.initial_seed())
    else:
        stop = n - n % batch_size if drop_last else n
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, stop, batch_size)]
        own = torch.Generator().manual_seed(0)
    if shard is not None:
        batches = _Shards(batches, *shard)
    if isinstance(dataset, TensorDataset) and _default_collate(task) and num_workers == 0:
        return DataLoader(dataset, sampler=batches, batch_size=None, generator=own)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=_collate_fn(task),
                      num_workers=num_workers, generator=own)


class _Shards:
    """Shard ``rank`` of ``world`` of every batch of ``batches`` (lists of indices)."""

    def __init__(self, batches: Iterable[list[int]], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"shard rank {rank} is not in [0, {world})")
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            n = len(batch)
            yield batch[self.rank * n // self.world:(self.rank + 1) * n // self.world]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def calibration_batches(task: Collating | None, dataset: Dataset, batch_size: int, n_batches: int,
                        seed: int, device: torch.device | str | None = None
                        ) -> list[torch.Tensor]:
    """The inputs of ``n_batches`` shuffled batches of ``dataset`` (seeded by ``seed``): the
    fixed set every sub-network's batch norm is recalibrated on, so that two candidates are
    compared on the same data."""
    loader = make_loader(task, dataset, batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(seed))
    out: list[torch.Tensor] = []
    for batch in loader:
        if len(out) >= n_batches:
            break
        x, _ = split_batch(batch)
        out.append(x if device is None else x.to(device))
    return out


def iterate(loader: Iterable[Any], device: torch.device | str) -> Iterator[Batch]:
    """``(inputs, targets)`` of every batch of ``loader``, moved to ``device``."""
    for batch in loader:
        x, y = split_batch(batch)
        yield x.to(device), to_device(y, device)


def batch_size_of(targets: Any, inputs: torch.Tensor | None = None) -> int:
    """Number of samples in a batch (the inputs' first dimension, else the targets')."""
    if inputs is not None:
        return int(inputs.shape[0])
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0])
    if isinstance(targets, Sequence):
        return len(targets)
    raise TypeError(f"cannot tell the batch size of {type(targets).__name__}")


def detach(data: Any) -> Any:
    """``data`` with every tensor in it detached (nested like :func:`to_device`)."""
    if isinstance(data, torch.Tensor):
        return data.detach()
    if isinstance(data, Mapping):
        return {k: detach(v) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(detach(v) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(detach(v) for v in data)
    return data
