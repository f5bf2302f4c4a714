"""Torch's CPU thread count for a block of work: a ``num_threads`` option
(:data:`nastk.core.cpus.Threads`) resolved and applied, the previous count restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from nastk.core.cpus import ThreadCount, resolve_threads

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(value: ThreadCount, workers: int = 1, loader_workers: int = 0
                  ) -> Iterator[int]:
    """Run a block with ``value`` torch threads (``"auto"`` resolved for one of ``workers``
    side-by-side candidates whose loaders start ``loader_workers`` worker processes; None leaves
    torch's count as it is) and yield the count in use; the previous count is restored
    afterwards."""
    before = torch.get_num_threads()
    n = resolve_threads(value, workers, loader_workers)
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
