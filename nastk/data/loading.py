"""``data:`` in a run config: how the engine's loaders read a task's data (worker processes,
prefetching, pinned memory), and what ``auto`` means for each.

Decoding is what a real data set costs: one full-size Cityscapes PNG takes about 0.4 s to read
and resize on one core, so a loader that decodes in the training process leaves an accelerator
waiting. ``workers: auto`` (the default) gives a loader whose data set reads files (a
:class:`~nastk.data.folders.FolderDataset`, or a subset or concatenation of them) worker
processes: as many as the CPUs this process may use (``OMP_NUM_THREADS`` when set, as Ray sets
it to an actor's reserved CPUs, else affinity and cgroup quota), at most
:data:`MAX_AUTO_WORKERS`; a data set held in memory (the generated default of every task), or
one of fewer than :data:`AUTO_MIN_ITEMS` items (where starting workers costs more than
they save), is read in the training process, as before.

Batches do not depend on the number of workers: the order of the indices is drawn in the
training process, workers return batches in that order, and each worker's numpy and ``random``
generators are seeded from torch's per-worker seed, itself drawn from the loader's own seeded
generator. An error nastk raises while reading a file in a worker (a corrupt image, a missing
label) reaches the training process with its own type and message, naming the file, exactly as
without workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from nastk.core.cpus import available_cpus
from nastk.core.errors import ConfigError
from nastk.data.nesting import within

__all__ = ["AUTO_MIN_ITEMS", "MAX_AUTO_WORKERS", "Loading", "reads_files"]

#: the most worker processes ``workers: auto`` starts for one loader
MAX_AUTO_WORKERS = 4
#: the fewest items of a data set read from files for which ``workers: auto`` starts workers
AUTO_MIN_ITEMS = 256


def reads_files(dataset: Dataset) -> bool:
    """Whether ``dataset`` reads its samples from files (a
    :class:`~nastk.data.folders.FolderDataset`, or a subset, concatenation or other wrapper
    holding one, through its ``dataset`` / ``datasets``)."""
    from nastk.data.folders import FolderDataset

    return any(isinstance(d, FolderDataset) or bool(getattr(d, "reads_files", False))
               for d in within(dataset))


def _auto_workers() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    cpus = int(env) if env.isdigit() and int(env) >= 1 else available_cpus()
    return min(MAX_AUTO_WORKERS, cpus)


class Loading(BaseModel):
    """``data:`` in a search, supernet or distillation config (not part of a run's identity:
    the batches are the same whatever these are)."""

    model_config = ConfigDict(extra="forbid")

    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="worker processes per loader; auto: for data read from files "
        f"(at least {AUTO_MIN_ITEMS} items), the CPUs this process may use (at most "
        f"{MAX_AUTO_WORKERS}), else 0 (data held in memory, such as the generated default); "
        "0: read in the training process")
    prefetch: int = Field(2, ge=1, description="batches each worker reads ahead")
    pin_memory: bool | Literal["auto"] = Field(
        "auto", description="page-locked batches for faster copies to a GPU; auto: when CUDA "
        "is available")
    persistent: bool = Field(True, description="keep a loader's workers between its passes "
                                               "(e.g. the evaluation split read once per "
                                               "candidate)")

    def workers_for(self, dataset: Dataset) -> int:
        """The number of worker processes a loader of ``dataset`` gets."""
        if self.workers == "auto":
            big = len(dataset) >= AUTO_MIN_ITEMS  # type: ignore[arg-type]
            return _auto_workers() if big and reads_files(dataset) else 0
        return int(self.workers)

    def loader_kwargs(self, dataset: Dataset, collate: Any, workers: int) -> dict[str, Any]:
        """The ``DataLoader`` arguments of a loader of ``dataset`` with ``workers`` worker
        processes; refuses, naming the fix, a data set or collate function that cannot be sent
        to the workers when they are not forked."""
        pin = torch.cuda.is_available() if self.pin_memory == "auto" else self.pin_memory
        if workers == 0:
            return {"num_workers": 0, "pin_memory": pin}
        _check_sendable(dataset, collate)
        return {"num_workers": workers, "pin_memory": pin, "prefetch_factor": self.prefetch,
                "persistent_workers": self.persistent, "worker_init_fn": seed_worker}


def seed_worker(worker_id: int) -> None:
    """Seed a loader worker's numpy and ``random`` generators from torch's seed for it (which
    the loader derives from its own seeded generator and the worker's id)."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _check_sendable(dataset: Dataset, collate: Any) -> None:
    """Worker processes started by ``spawn`` or ``forkserver`` (macOS, Windows, Python 3.14's
    Linux default) receive the data set and collate function pickled: check that they pickle."""
    if multiprocessing.get_start_method(allow_none=False) == "fork":
        return
    for what, obj in (("the data set", dataset), ("the task's collate function", collate)):
        try:
            pickle.dumps(obj)
        except Exception as err:  # PicklingError, AttributeError, TypeError
            raise ConfigError(
                f"data.workers: {what} ({type(obj).__name__}) cannot be sent to loader worker "
                f"processes (started by {multiprocessing.get_start_method()!r}): {err}. Set "
                "data.workers: 0, or make it picklable (define its functions and classes at "
                "a module's top level, not as lambdas or local functions)") from None
