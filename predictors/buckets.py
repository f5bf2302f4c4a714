"""Cost buckets: groups of architectures with similar cost, cut at quantiles of the cost.

Used by the path filter (which ranks only inside a bucket) and by the bucketed Kendall tau.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nastk.prediction.base import PredictorError


def quantile_edges(costs: Sequence[float] | np.ndarray, n_buckets: int) -> np.ndarray:
    """Inner bucket edges near the ``1/n .. (n-1)/n`` quantiles of ``costs``.

    Each edge lies halfway between two consecutive distinct costs, at the split whose share of
    costs below it is closest to the target quantile; so equal costs always share a bucket and
    no bucket is empty on ``costs`` itself. With many equal costs, targets can pick the same
    split and fewer than ``n_buckets`` buckets result (one bucket if all costs are equal);
    :func:`bucket_index` then never returns an index above ``len(edges)``.
    """
    if n_buckets < 1:
        raise PredictorError(f"n_buckets must be >= 1, got {n_buckets}")
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise PredictorError("cannot cut cost buckets from an empty list of costs")
    if not np.all(np.isfinite(c)):
        raise PredictorError(f"costs must be finite, got {c[~np.isfinite(c)][0]}; drop or fix "
                             "architectures without a cost")
    values, counts = np.unique(c, return_counts=True)
    if n_buckets == 1 or values.size == 1:
        return np.zeros(0)
    below = np.cumsum(counts)[:-1] / c.size  # share of costs below each split
    splits = (values[:-1] + values[1:]) / 2
    targets = np.arange(1, n_buckets) / n_buckets
    chosen = [int(np.argmin(np.abs(below - t))) for t in targets]
    return np.unique(splits[chosen])


def bucket_index(costs: Sequence[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket of each cost: 0 below the first edge, ``i`` between ``edges[i-1]`` and
    ``edges[i]``, ``len(edges)`` above the last."""
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    return np.searchsorted(np.asarray(edges, dtype=np.float64), c, side="right").astype(np.int64)


def kept_count(n: int, keep_ratio: float) -> int:
    """How many of ``n`` architectures a bucket keeps: ``ceil(keep_ratio * n)``, at least 1
    (0 for an empty bucket). A product that is an integer up to rounding (``0.3 * 10``) is not
    rounded up past it."""
    if n <= 0:
        return 0
    return max(1, min(n, math.ceil(keep_ratio * n - 1e-9)))
