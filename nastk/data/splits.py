"""A task's splits: seeded split indices, the datasets built from them, and their cache.

Two ways to split, shared by the tasks: one permutation of generated examples cut into
``val`` / ``test`` / ``train`` (:func:`shuffled_split_indices`, :func:`synthetic_splits`), or
a held-out share of a real data set's official training split used as ``val``, its official
validation split serving as ``test`` (:func:`holdout_indices`, :func:`holdout_splits`).
:class:`SplitOptions` holds the options of both; :class:`CachedSplits` gives a task a
``splits()`` that builds its datasets once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator
from torch.utils.data import Dataset, Subset

__all__ = ["CachedSplits", "SplitOptions", "check_data_options", "holdout_indices",
           "holdout_splits", "shuffled_split_indices", "synthetic_splits"]


def check_data_options(dataset: str, root: Any, val_fraction: float,
                       test_fraction: float) -> None:
    """The checks every task's data options share (a ``ValueError`` naming the fix): synthetic
    splits must leave at least 10% for training; a real data set needs its local ``root``."""
    if dataset == "synthetic":
        if val_fraction + test_fraction >= 0.9:
            raise ValueError(f"val_fraction + test_fraction must leave at least 10% for "
                             f"training, got {val_fraction} + {test_fraction}")
    elif root is None:
        raise ValueError(f"dataset {dataset!r} needs `root`: the folder holding your local copy")


def shuffled_split_indices(n: int, val_fraction: float, test_fraction: float,
                           seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of ``train``, ``val`` and ``test`` (empty splits left out): one seeded
    permutation, ``val`` its first ``max(1, round(val_fraction * n))`` entries, ``test`` the
    next ``round(test_fraction * n)``, ``train`` the rest."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_fraction * n))
    n_test = round(test_fraction * n)
    parts = {"train": order[n_val + n_test:], "val": order[:n_val],
             "test": order[n_val:n_val + n_test]}
    return {name: np.sort(ix) for name, ix in parts.items() if len(ix)}


def holdout_indices(n: int, fraction: float, seed: int, where: str = "the data"
                    ) -> tuple[list[int], list[int]]:
    """``(train, held_out)`` sorted index lists: a seeded ``max(1, round(fraction * n))`` of
    ``n`` examples held out; a ``ValueError`` naming ``where`` if nothing would be left."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = max(1, round(fraction * n))
    if n_hold >= n:
        raise ValueError(f"{where}: {n} training images are too few to hold out "
                         f"{fraction:.0%} as `val`")
    return np.sort(order[n_hold:]).tolist(), np.sort(order[:n_hold]).tolist()


class SplitOptions(BaseModel):
    """The split options the dense tasks share (a mixin of their ``Options``): synthetic data cut
    into ``val`` / ``test`` / ``train`` shares, a real data set's held-out ``val``, and the seed;
    checked with :func:`check_data_options` against the subclass's ``dataset`` and ``root``."""

    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="synthetic: val share")
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0,
                                 description="synthetic: test share (0: no test split)")
    holdout_fraction: float = Field(0.1, gt=0.0, lt=1.0,
                                    description="real datasets: share of the official "
                                                "training split held out as `val`")
    seed: int = Field(0, description="seed of the data and of the splits")
    data_check: Literal["full", "sample", "first-batch"] = Field(
        "full", description="what a run checks of a real data set before its first trial, "
        "besides reading each split's first batch: full, every file exists and its image "
        "header decodes; sample, 32 items spread over each split are read whole; first-batch, "
        "nothing more")

    @model_validator(mode="after")
    def _data_options(self) -> SplitOptions:
        check_data_options(getattr(self, "dataset", "synthetic"), getattr(self, "root", None),
                           self.val_fraction, self.test_fraction)
        return self


def synthetic_splits(n: int, options: SplitOptions,
                     make: Callable[[np.ndarray], Dataset]) -> dict[str, Dataset]:
    """``make(indices)`` for each split of :func:`shuffled_split_indices` of ``n`` generated
    examples, cut by ``options`` (``train``, ``val``, and ``test`` unless its share is 0)."""
    return {name: make(ix) for name, ix in shuffled_split_indices(
        n, options.val_fraction, options.test_fraction, options.seed).items()}


def holdout_splits(official_train: Dataset, options: SplitOptions, where: str,
                   official_test: Callable[[], Dataset | None]) -> dict[str, Dataset]:
    """``train`` and ``val``: a seeded ``holdout_fraction`` of ``official_train`` held out as
    ``val`` (:func:`holdout_indices`; ``where`` names the data in its error); ``test``: what
    ``official_test()`` returns (the official validation split), unless that is ``None``."""
    train, val = holdout_indices(len(official_train),  # type: ignore[arg-type]
                                 options.holdout_fraction, options.seed, where)
    out: dict[str, Dataset] = {"train": Subset(official_train, train),
                               "val": Subset(official_train, val)}
    test = official_test()
    if test is not None:
        out["test"] = test
    return out


class CachedSplits(ABC):
    """Mixin of a :class:`~nastk.task.contract.Task` whose datasets are built once:
    ``splits()`` calls :meth:`build_splits` the first time and returns a new dict of the same
    datasets every time (list it before the ``Task`` base: ``class MyTask(CachedSplits,
    Task)``)."""

    _splits: dict[str, Dataset] | None = None

    def splits(self) -> dict[str, Dataset]:
        """The task's datasets by split name, built at the first call."""
        if self._splits is None:
            self._splits = self.build_splits()
        return dict(self._splits)

    @abstractmethod
    def build_splits(self) -> dict[str, Dataset]:
        """Build every split's dataset (called once)."""
