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

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    TensorDataset,
    default_collate,
)

from nastk.core.errors import NastkError
from nastk.data.augment import augmented_in, sample_seed
from nastk.data.images import kept_levels
from nastk.data.loading import Loading

__all__ = ["Batch", "batch_size_of", "calibration_batches", "detach", "iterate",
           "loader_workers", "make_loader", "split_batch", "to_device"]

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
                drop_last: bool = False, num_workers: int | None = None,
                shard: tuple[int, int] | None = None) -> DataLoader:
    """The loader of ``dataset`` for ``task``: batches collated by ``task.collate`` (torch's
    default collate when the task does not override it).

    Worker processes, prefetching and pinned memory follow the task's ``loading`` (the run
    config's ``data:``, :class:`~nastk.data.loading.Loading`; its defaults when the task has
    none): ``num_workers`` overrides its worker count (0 for a loader read for one batch).
    The batches are the same for any number of workers.

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
    if augmented_in(dataset):
        # each sample's augmentation draws are seeded here, in the loading process, from its
        # index and the pass: the same batches for any number of workers
        dataset = _SeedScope(dataset)
        batches = _SeededBatches(batches, generator if generator is not None else own)
    if shard is not None:
        batches = _Shards(batches, *shard)
    loading = _loading_of(task)
    workers = loading.workers_for(dataset) if num_workers is None else num_workers
    if isinstance(dataset, TensorDataset) and _default_collate(task) and workers == 0:
        return DataLoader(dataset, sampler=batches, batch_size=None, generator=own)
    collate = _collate_fn(task)
    if workers == 0:
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, generator=own,
                          **loading.loader_kwargs(dataset, collate, 0))
    return _WorkerLoader(_Guarded(dataset), batch_sampler=batches,
                         collate_fn=_GuardedCollate(collate), generator=own,
                         **loading.loader_kwargs(dataset, collate, workers))


def _loading_of(task: Any) -> Loading:
    """``task``'s ``loading`` (a run config's ``data:``), or the defaults."""
    return getattr(task, "loading", None) or Loading()


def loader_workers(task: Any, dataset: Dataset) -> int:
    """The worker processes :func:`make_loader` starts for ``dataset`` with ``task``'s
    ``loading`` (for the thread count of the process that trains on it)."""
    return _loading_of(task).workers_for(dataset)


class _Carried:
    """A nastk error raised while a loader worker read a sample, carried to the training
    process as data (torch would re-raise it with its traceback folded into the message)."""

    def __init__(self, err: NastkError) -> None:
        self.type, self.text = type(err), str(err)

    def reraise(self) -> NoReturn:
        try:
            err = self.type(self.text)
        except TypeError:  # an error class with other constructor arguments
            err = NastkError(self.text)
        raise err


class _Levels:
    """A float image made from a file's pixels (by :func:`~nastk.data.images.resize_image`),
    carried as its ``uint8`` levels: a quarter of the bytes between processes, turned back into
    the same float values (bit for bit, by the same operations) here."""

    def __init__(self, levels: torch.Tensor) -> None:
        self.levels = levels

    @staticmethod
    def pack(image: torch.Tensor) -> _Levels | None:
        """The levels :func:`~nastk.data.images.from_levels` kept beside ``image``, unless
        the image was changed in place since (its version counter moved)."""
        kept = kept_levels(image)
        return None if kept is None else _Levels(kept)

    @staticmethod
    def unpack(levels: torch.Tensor) -> torch.Tensor:
        return levels.float().div_(255.0)

    def tensor(self) -> torch.Tensor:
        return self.unpack(self.levels)


class _Guarded(Dataset):
    """``dataset`` as a loader worker reads it: a nastk error is returned as
    :class:`_Carried`, and an input image of file levels as :class:`_Levels`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> Any:
        try:
            sample = self.dataset[index]
        except NastkError as err:
            return _Carried(err)
        if isinstance(sample, tuple) and len(sample) == 2 and isinstance(sample[0],
                                                                         torch.Tensor):
            packed = _Levels.pack(sample[0])
            if packed is not None:
                return packed, sample[1]
        return sample


#: tensors up to this many bytes travel from a loader worker inside the pickled batch
#: rather than each in a shared-memory segment of its own (one file, mapping and message
#: apiece: a detection batch's per-image boxes, labels and flags are dozens of them)
INLINE_BYTES = 1 << 16


class _Inline:
    """A small tensor carried as its numpy array (pickled with the batch)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.array = tensor.numpy()

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.array)


def _nested(data: Any, leaf: Callable[[Any], Any]) -> Any:
    """``data`` with ``leaf`` applied to everything in it that is not a dict, list or plain
    tuple."""
    if isinstance(data, Mapping):
        return {k: _nested(v, leaf) for k, v in data.items()}
    if isinstance(data, list):
        return [_nested(v, leaf) for v in data]
    if isinstance(data, tuple) and not hasattr(data, "_fields"):
        return tuple(_nested(v, leaf) for v in data)
    return leaf(data)


class _Narrow:
    """A large integer tensor whose values all fit in ``uint8`` (a segmentation mask: class
    ids and the ignore label 255), carried as ``uint8``: an eighth of an ``int64`` mask's
    bytes, restored to its dtype exactly."""

    def __init__(self, values: torch.Tensor, dtype: torch.dtype) -> None:
        self.values, self.dtype = values, dtype

    @staticmethod
    def pack(x: torch.Tensor) -> _Narrow | None:
        if x.dtype not in (torch.int64, torch.int32, torch.int16) or x.numel() == 0:
            return None
        lo, hi = torch.aminmax(x)
        if int(lo) < 0 or int(hi) > 255:
            return None
        return _Narrow(x.to(torch.uint8), x.dtype)

    def tensor(self) -> torch.Tensor:
        return self.values.to(self.dtype)


def _inline(data: Any) -> Any:
    """``data`` with every small CPU tensor in it as :class:`_Inline`, every map of file
    levels (e.g. a density map read from a grey PNG, kept in a list by the task's collate)
    as :class:`_Levels`, and every large integer tensor of byte values as :class:`_Narrow`."""
    def leaf(x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
            return x
        packed = _Levels.pack(x)
        if packed is not None:
            x = packed.levels
        small = x.numel() * x.element_size() <= INLINE_BYTES
        if packed is not None:
            return _Levels(_Inline(x)) if small else packed
        if small:
            return _Inline(x)
        return _Narrow.pack(x) or x

    return _nested(data, leaf)


def _restore(data: Any) -> Any:
    """:func:`_inline` undone."""
    def leaf(x: Any) -> Any:
        if isinstance(x, _Levels):
            levels = x.levels.tensor() if isinstance(x.levels, _Inline) else x.levels
            return _Levels.unpack(levels)
        return x.tensor() if isinstance(x, (_Inline, _Narrow)) else x

    return _nested(data, leaf)


class _LevelsBatch:
    """A collated batch from a worker: its targets' small tensors inlined and maps of levels
    packed (:func:`_inline`), its inputs as ``uint8`` levels (see :class:`_Levels`) when
    ``levels``."""

    def __init__(self, inputs: torch.Tensor, targets: Any, levels: bool = True) -> None:
        self.inputs, self.targets, self.levels = inputs, targets, levels

    def unpack(self) -> Batch:
        x = _Levels.unpack(self.inputs) if self.levels else self.inputs
        return x, _restore(self.targets)


class _GuardedCollate:
    """The task's collate (torch's default when ``None``) in a loader worker: passes a carried
    error on, and keeps images of file levels as ``uint8`` (:class:`_LevelsBatch`) when the
    task collates their targets without looking at the images."""

    def __init__(self, collate: Callable[[list[Any]], Any] | None) -> None:
        self.collate = collate or default_collate

    def __call__(self, samples: list[Any]) -> Any:
        for sample in samples:
            if isinstance(sample, _Carried):
                return sample
        packed = [isinstance(s, tuple) and isinstance(s[0], _Levels) for s in samples]
        if all(packed) and len({tuple(s[0].levels.shape) for s in samples}) == 1:
            n = len(samples)
            try:  # the targets collated beside empty stand-ins for the images
                batch = self.collate([(torch.empty(0), s[1]) for s in samples])
                ok = (isinstance(batch, (tuple, list)) and len(batch) == 2
                      and isinstance(batch[0], torch.Tensor) and tuple(batch[0].shape) == (n, 0))
            except Exception:
                ok = False
            if ok:
                return _LevelsBatch(default_collate([s[0].levels for s in samples]),
                                    _inline(batch[1]))
        samples = [(_Levels.unpack(s[0].levels), s[1]) if p else s
                   for s, p in zip(samples, packed, strict=True)]
        batch = self.collate(samples)
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0],
                                                                               torch.Tensor):
            return _LevelsBatch(batch[0], _inline(batch[1]), levels=False)
        return batch


class _WorkerLoader(DataLoader):
    """A loader with worker processes that re-raises a carried nastk error here."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        for batch in super().__iter__():
            if isinstance(batch, _Carried):
                batch.reraise()
            yield batch.unpack() if isinstance(batch, _LevelsBatch) else batch


def _pass_seed(generator: torch.Generator) -> int:
    """A 63-bit seed of ``generator``'s state (it draws nothing from it)."""
    return int.from_bytes(hashlib.blake2b(generator.get_state().numpy().tobytes(),
                                          digest_size=8).digest(), "little") >> 1


def _sample_seed(pass_seed: int, index: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{pass_seed}:{index}".encode(),
                                          digest_size=8).digest(), "little") >> 1


class _SeededBatches:
    """Batches of ``(index, seed)`` keys: each sample's augmentation seed made from its index
    and the shuffling generator's state when the pass starts (before it draws the order), so
    every pass draws anew and the same pass draws the same, in any process."""

    def __init__(self, batches: Iterable[list[int]], generator: torch.Generator) -> None:
        self.batches, self.generator = batches, generator

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pass_seed = _pass_seed(self.generator)
        for batch in self.batches:
            yield [(i, _sample_seed(pass_seed, i)) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class _SeedScope(Dataset):
    """``dataset`` read with ``(index, seed)`` keys: the augmentation inside it draws from
    ``seed`` (:func:`~nastk.data.augment.sample_seed`)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with sample_seed(seed):
            return self.dataset[index]


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
