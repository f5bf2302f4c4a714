"""Data sets inside data sets: the one walk through the wrappers a split is made of (a subset,
a concatenation, an augmented training split, a loader's own wrappers), by their ``dataset``
or ``datasets`` attribute, as torch's wrappers name them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["inner_datasets", "within"]


def inner_datasets(dataset: Any) -> list[Any]:
    """The data sets ``dataset`` wraps (empty for a data set that wraps none)."""
    inner = getattr(dataset, "datasets", None)
    if isinstance(inner, (list, tuple)):
        return list(inner)
    sub = getattr(dataset, "dataset", None)
    return [] if sub is None else [sub]


def within(dataset: Any) -> Iterator[Any]:
    """``dataset`` and every data set inside it, depth first."""
    yield dataset
    for inner in inner_datasets(dataset):
        yield from within(inner)
