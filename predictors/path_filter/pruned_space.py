"""Pruning a search space with a fitted path filter: :class:`PrunedSpace`, whose constraint
check rejects what the filter's keep rule (:mod:`nastk.predictors.path_filter.keep_rule`)
prunes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nastk.core.errors import InvalidArchitectureError, NastkError
from nastk.prediction.base import PredictorError
from nastk.prediction.path_filter.contract import CostFn
from nastk.predictors.path_filter.keep_rule import (
    BucketRanker,
    KeepRule,
    check_keep_ratio,
    resolve_cost_fn,
)
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.space.wrapped import WrappedSpace


class PrunedSpace(WrappedSpace):
    """A search space restricted to the paths a fitted path filter keeps.

    Same dimensions as the wrapped space; :meth:`check_constraints` runs the wrapped space's
    rules and then rejects an architecture whose filter score is below its cost bucket's
    threshold (the score of the ``ceil(keep_ratio * n_b)``-th best of the ``n_b`` samples in
    that bucket, from ``n_samples`` draws of ``space.sample``; a bucket no sample fell in keeps
    everything). So ``validate``, ``is_valid``, ``mutate``, ``crossover`` and ``neighbours``
    stay inside the kept part, and :meth:`sample` draws from the wrapped space's own
    distribution until an architecture is kept. ``build`` and every other attribute (e.g.
    ``largest``, ``build_supernet``) are the wrapped space's.
    """

    def __init__(self, space: SearchSpace, path_filter: BucketRanker, keep_ratio: float,
                 cost_fn: CostFn | None = None, n_samples: int = 2000, seed: int = 0) -> None:
        check_keep_ratio(keep_ratio)
        if n_samples < 1:
            raise PredictorError(f"n_samples must be >= 1, got {n_samples}")
        if space.encoding_size() != path_filter.space.encoding_size():
            raise PredictorError(
                f"the path filter was fitted on search space {path_filter.space.name!r}, whose "
                f"encoding differs from {space.name!r}'s; prune the space it was fitted on")
        super().__init__(space, name=f"{space.name}-pruned")
        self.keep_ratio = float(keep_ratio)
        rng = np.random.default_rng(seed)
        samples = [space.sample(rng) for _ in range(n_samples)]
        self.rule = KeepRule(path_filter, resolve_cost_fn(path_filter, cost_fn), samples,
                             keep_ratio)
        self._max_tries = max(1000, math.ceil(50 / keep_ratio))

    @property
    def path_filter(self) -> BucketRanker:
        """The filter that prunes the space."""
        return self.rule.filter

    @property
    def thresholds(self) -> np.ndarray:
        """Per-bucket score thresholds (``-inf``: the bucket keeps everything)."""
        return self.rule.thresholds

    def is_kept(self, arch: Architecture | Mapping[str, Any]) -> bool:
        """Whether the filter keeps ``arch`` (which must be valid in the wrapped space)."""
        return self.rule.judge(self.base.validate(arch))[0]

    def check_constraints(self, arch: Architecture) -> None:
        self.base.check_constraints(arch)
        kept, score, cost, bucket = self.rule.judge(arch)
        if not kept:
            raise InvalidArchitectureError(
                f"search space {self.name!r}: architecture pruned by the path filter (score "
                f"{score:.4g} below {self.thresholds[bucket]:.4g}, the keep threshold of cost "
                f"bucket {bucket}, cost {cost:.4g}, keep_ratio={self.keep_ratio}); pick a kept "
                f"architecture or search the unpruned space {self.base.name!r}")

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A draw of the wrapped space's ``sample`` that the filter keeps."""
        for _ in range(self._max_tries):
            arch = self.base.sample(rng)
            if self.rule.judge(arch)[0]:
                return arch
        raise NastkError(f"search space {self.name!r}: no kept architecture in "
                         f"{self._max_tries} draws (keep_ratio={self.keep_ratio}); raise "
                         "keep_ratio")

    def size(self) -> int | float:
        """An *estimate*: the wrapped space's size times the share of samples kept (infinite
        for a space with a continuous dimension)."""
        base = self.base.size()
        if base == float("inf"):
            return base
        return max(1, round(base * self.rule.sample_share))
