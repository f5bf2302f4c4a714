"""The path-filter contract: what the engine asks of the ``path_filter`` predictor plugin.

A path filter (DetOFA-style) ranks architectures *within cost buckets*. The engine reaches the
plugin only through the ``PREDICTORS`` registry, typed against :class:`PathFilter`; everything
it does with one lives beside this module in :mod:`nastk.prediction.path_filter`. The plugin
(``predictors/path_filter``) subclasses :class:`PathFilter`; a registered ``path_filter`` that
does not is refused with a :class:`~nastk.core.errors.NastkError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nastk.core import registry
from nastk.core.errors import NastkError
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

#: registry name of the path filter (a predictor plugin)
PLUGIN_NAME = "path_filter"

#: ``arch -> cost``: a number, or a mapping read at the filter's :attr:`PathFilter.cost`
CostFn = Callable[[Architecture], "float | Mapping[str, float]"]


class PathFilter(ABC):
    """A ranking model of relative performance among architectures of similar cost."""

    #: costs of architectures not evaluated yet (set by :func:`load_path_filter` to count the
    #: paths of a supernet or a task's models)
    cost_fn: CostFn | None

    @property
    @abstractmethod
    def cost(self) -> str:
        """The cost its buckets are cut on (``flops``, ``params``, ...)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, space: SearchSpace,
             cost_fn: CostFn | None = None) -> PathFilter:
        """A fitted filter read from a file written by :meth:`save`."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the fitted filter to ``path``; returns the path written."""

    @abstractmethod
    def fit(self, archs: Sequence[Architecture], scores: Sequence[float] | Any,
            costs: Sequence[float] | Any | None = None) -> PathFilter:
        """Train on architectures, their scores (larger is better) and costs; returns self."""

    @abstractmethod
    def cost_values(self, archs: Sequence[Architecture], costs: Sequence[Any] | Any | None = None,
                    cost_fn: CostFn | None = None) -> np.ndarray:
        """The float costs of ``archs`` (a numpy vector): from ``costs`` when given, else from
        ``cost_fn`` (or :attr:`cost_fn`); a mapping cost is read at :attr:`cost`."""

    @abstractmethod
    def within_bucket_tau(self, archs: Sequence[Architecture], scores: Sequence[float] | Any,
                          costs: Sequence[float] | Any | None = None) -> float:
        """Kendall tau between ``scores`` and the filter's ranking inside its cost buckets."""

    @abstractmethod
    def prune(self, candidates: SearchSpace | Sequence[Architecture], keep_ratio: float,
              costs: Sequence[float] | Any | None = None, cost_fn: CostFn | None = None,
              n_samples: int = 2000, seed: int | None = None
              ) -> list[Architecture] | SearchSpace:
        """Keep the predicted top ``keep_ratio`` of every cost bucket: of a list of candidates,
        or of a search space (a space whose constraints reject pruned architectures)."""

    @abstractmethod
    def supernet_sampler_factory(self, keep_ratio: float, n_samples: int = 1000, seed: int = 0,
                                 cost_fn: CostFn | None = None) -> Callable[..., Any]:
        """A ``sampler_factory`` for :class:`~nastk.training.supernet.SupernetTrainer` that
        samples only the paths the filter keeps."""


def path_filter_class() -> type[PathFilter]:
    """The registered ``path_filter`` plugin, checked against :class:`PathFilter`."""
    cls = registry.PREDICTORS.get(PLUGIN_NAME)
    if not (isinstance(cls, type) and issubclass(cls, PathFilter)):
        raise NastkError(f"the registered predictor {PLUGIN_NAME!r} "
                         f"({registry.PREDICTORS.source(PLUGIN_NAME)}) is not a path filter: it "
                         "must subclass nastk.prediction.path_filter.PathFilter (load, save, fit, "
                         "cost_values, within_bucket_tau, prune, supernet_sampler_factory, "
                         "cost, cost_fn)")
    return cls


def make_path_filter(options: Mapping[str, Any], space: SearchSpace, *, seed: int = 0,
                     where: str = "path filter options", **kwargs: Any) -> PathFilter:
    """A new, unfitted path filter with ``options`` (validated by the plugin)."""
    path_filter_class()
    return registry.instantiate(registry.PREDICTORS, PLUGIN_NAME, options, space, seed=seed,
                                where=where, **kwargs)
