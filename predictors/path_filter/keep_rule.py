"""Which paths a fitted path filter keeps: per-bucket score thresholds (the score of the
``ceil(keep_ratio * n_b)``-th best of a bucket's ``n_b`` architectures), and :class:`KeepRule`,
the thresholds estimated from samples with a cache of decisions. Both the pruned space and the
pruned supernet sampler judge paths with it; the filter itself computes its thresholds here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from nastk.prediction.base import PredictorError
from nastk.prediction.path_filter.contract import CostFn
from nastk.predictors.buckets import kept_count
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

#: decisions a :class:`KeepRule` remembers before it forgets them all
CACHE_SIZE = 200_000


class BucketRanker(Protocol):
    """What a keep rule asks of a fitted path filter."""

    space: SearchSpace
    cost_fn: CostFn | None

    @property
    def n_buckets(self) -> int:
        """How many cost buckets the filter cuts."""

    def require_fitted(self) -> None:
        """Raise unless the filter is fitted."""

    def cost_values(self, archs: Sequence[Architecture], costs: Any = None,
                    cost_fn: CostFn | None = None) -> np.ndarray:
        """The float costs of ``archs``."""

    def scores_and_buckets(self, archs: Sequence[Architecture],
                           costs: Any) -> tuple[np.ndarray, np.ndarray]:
        """The ranking score and the cost bucket of each architecture."""


def check_keep_ratio(keep_ratio: float) -> None:
    """Refuse a keep ratio outside ``(0, 1]``."""
    if not (isinstance(keep_ratio, (int, float)) and 0 < keep_ratio <= 1):
        raise PredictorError(f"keep_ratio must be in (0, 1], got {keep_ratio!r}")


def bucket_thresholds(scores: np.ndarray, buckets: np.ndarray, keep_ratio: float,
                      n_buckets: int) -> np.ndarray:
    """Per bucket ``0 .. n_buckets - 1``, the lowest of ``scores`` kept when the top
    ``keep_ratio`` of that bucket's scores are kept (:func:`~nastk.predictors.buckets.kept_count`
    of them); ``-inf`` for a bucket without any score, which keeps everything."""
    out = np.full(n_buckets, -np.inf)
    for b in np.unique(buckets):
        vals = np.sort(scores[buckets == b])[::-1]
        out[b] = vals[kept_count(vals.size, keep_ratio) - 1]
    return out


def resolve_cost_fn(path_filter: BucketRanker, cost_fn: CostFn | None) -> CostFn:
    """``cost_fn``, else the filter's own; refused when neither is set."""
    fn = cost_fn or path_filter.cost_fn
    if fn is None:
        raise PredictorError("pruning a search space needs each architecture's cost: pass "
                             "cost_fn(arch) -> float (or give the PathFilter one)")
    return fn


class KeepRule:
    """Per-bucket score thresholds estimated from ``samples``, with a cache of decisions.

    The thresholds are :func:`bucket_thresholds` of the samples' scores; an architecture is kept
    when its score reaches its cost bucket's threshold.
    """

    def __init__(self, path_filter: BucketRanker, cost_fn: CostFn,
                 samples: list[Architecture], keep_ratio: float) -> None:
        path_filter.require_fitted()
        self.filter = path_filter
        self.cost_fn = cost_fn
        self.keep_ratio = keep_ratio
        costs = path_filter.cost_values(samples, cost_fn=cost_fn)
        s, b = path_filter.scores_and_buckets(samples, costs)
        #: per-bucket score thresholds (``-inf``: the bucket keeps everything)
        self.thresholds = bucket_thresholds(s, b, keep_ratio, path_filter.n_buckets)
        kept = s >= self.thresholds[b]
        #: the fraction of the samples that the rule keeps (close to ``keep_ratio``)
        self.sample_share = float(np.mean(kept))
        self._cache: dict[str, tuple[bool, float, float, int]] = {
            a.key: (bool(k), float(sc), float(c), int(bb))
            for a, k, sc, c, bb in zip(samples, kept, s, costs, b, strict=True)}
        #: the kept samples, without repeats, in draw order
        self.kept_samples = list({a.key: a for a, k in zip(samples, kept, strict=True)
                                  if k}.values())

    def judge(self, arch: Architecture) -> tuple[bool, float, float, int]:
        """``(kept, score, cost, bucket)`` of one architecture."""
        hit = self._cache.get(arch.key)
        if hit is None:
            cost = self.filter.cost_values([arch], cost_fn=self.cost_fn)
            score, bucket = self.filter.scores_and_buckets([arch], cost)
            hit = (bool(score[0] >= self.thresholds[bucket[0]]), float(score[0]),
                   float(cost[0]), int(bucket[0]))
            if len(self._cache) > CACHE_SIZE:
                self._cache.clear()
            self._cache[arch.key] = hit
        return hit
