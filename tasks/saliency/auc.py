"""The AUC family of saliency metrics: AUC-Judd, AUC-Borji and the shuffled AUC of one image
(location-based: positives are the map's values at the fixated pixels).

Conventions: a **constant prediction** scores 0.5. **Randomness** (AUC-Borji, sAUC) is seeded:
``numpy.random.default_rng(seed)`` with ``seed`` an int or a sequence of ints. No jitter is
added anywhere: ties between a positive and a negative value get half credit from the
trapezoid rule. The helpers (:func:`roc_area`, :func:`minmax`, :func:`sauc_from_pool`, ...)
also serve :class:`~nastk.tasks.saliency.meter.SaliencyMeter`'s split-level sAUC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nastk.tasks.saliency.geometry import (
    MapLike,
    Shape,
    fixated_pixels,
    fixation_points,
    linear_indices,
    scored_map,
)

__all__ = ["auc_borji", "auc_judd", "auc_shuffled", "check_splits", "minmax", "roc_area",
           "sauc_from_pool", "threshold_grid"]


def minmax(s: np.ndarray) -> np.ndarray:
    """``(s - min) / (max - min)``; all zeros for a constant map."""
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area along the last axis."""
    return np.sum(np.diff(x, axis=-1) * (y[..., 1:] + y[..., :-1]) / 2.0, axis=-1)


def _at_or_above(values: np.ndarray, thresholds: np.ndarray,
                 weight: np.ndarray | None = None) -> np.ndarray:
    """For each threshold (descending) the number (or total ``weight``) of ``values`` ``>=``
    it: each value is binned to the highest threshold it reaches, then suffix sums."""
    ascending = thresholds[::-1]
    j = np.searchsorted(ascending, values, side="right") - 1  # -1: below every threshold
    keep = j >= 0
    counts = np.bincount(j[keep], weights=None if weight is None else weight[keep],
                         minlength=ascending.size).astype(np.float64)
    return np.cumsum(counts[::-1])  # descending thresholds: prefix sums from the top


def roc_area(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray,
              neg_weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve through the points ``(FP rate, TP rate)`` at each threshold
    ``t`` (descending): TP rate = share of ``pos`` ``>= t``, FP rate = (weighted) share of
    ``neg`` ``>= t``; anchored at (0, 0) and (1, 1); trapezoid rule."""
    tp = _at_or_above(pos, thresholds) / pos.size
    total = neg.size if neg_weight is None else float(neg_weight.sum())
    fp = _at_or_above(neg, thresholds, neg_weight) / total
    x = np.concatenate([[0.0], fp, [1.0]])
    y = np.concatenate([[0.0], tp, [1.0]])
    return float(_trapezoid(x, y))


def threshold_grid(step: float) -> np.ndarray:
    """Thresholds ``1 >= ... >= step >= 0`` of the stepped AUCs, descending; multiples of
    ``step`` rounded to 12 decimals so that ``3 * 0.1`` is 0.3."""
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise ValueError(f"step must be in (0, 1], got {step!r}")
    n = math.floor(1.0 / step + 1e-9)
    return np.round(np.arange(n, -1, -1) * float(step), 12)


def _stepped_auc(pos: np.ndarray, neg: np.ndarray, step: float) -> float:
    """Mean over the rows of ``neg`` (one row per split) of the ROC area at the thresholds
    ``0, step, 2 step, ... <= 1`` of a min-max-normalised map. Thresholds above every value
    add only (0, 0) points, so the result equals the benchmark's grid up to the split's max."""
    t = threshold_grid(step)
    tp = (pos[None, :] >= t[:, None]).mean(axis=1)  # [T]
    fp = (neg[:, :, None] >= t[None, None, :]).mean(axis=1)  # [S, T]
    n_splits = neg.shape[0]
    zeros, ones = np.zeros((n_splits, 1)), np.ones((n_splits, 1))
    x = np.concatenate([zeros, fp, ones], axis=1)
    y = np.concatenate([zeros, np.broadcast_to(tp, fp.shape), ones], axis=1)
    return float(_trapezoid(x, y).mean())


def check_splits(n_splits: int | None) -> None:
    if n_splits is not None and (isinstance(n_splits, bool) or not isinstance(n_splits, int)
                                 or n_splits < 1):
        raise ValueError(f"n_splits must be a positive int or None, got {n_splits!r}")


def auc_judd(pred: MapLike, fix: Any, *, shape: Shape | None = None) -> float:
    """AUC-Judd of one image.

    Positives: the prediction at the fixated pixels (each fixated pixel once, the binary
    fixation map); negatives: the prediction at every pixel not fixated. Thresholds: the
    distinct positive values, descending; at each, TP rate = share of positives ``>=`` it,
    FP rate = share of negatives ``>=`` it; the curve is anchored at (0, 0) and (1, 1) and
    integrated by the trapezoid rule. No jitter and no min-max step (the AUC is rank
    invariant): a tie between a positive and a negative value gets half credit, so a constant
    map scores 0.5. ``shape``: resize the prediction to it first (else it is taken to be at
    the ground truth's resolution). Raises ``ValueError`` for no fixations or when every pixel
    is fixated (no negatives).
    """
    s = scored_map(pred, shape)
    flat = s.ravel()
    idx = fixated_pixels(fix, s.shape, "auc_judd")
    mask = np.zeros(flat.size, dtype=bool)
    mask[idx] = True
    if mask.all():
        raise ValueError("auc_judd: every pixel is fixated, so there are no negatives")
    pos = flat[idx]
    return roc_area(pos, flat[~mask], np.unique(pos)[::-1])


def auc_borji(pred: MapLike, fix: Any, n_splits: int | None = 100, step: float = 0.1,
              seed: int | Sequence[int] = 0, *, shape: Shape | None = None) -> float:
    """AUC-Borji of one image.

    The map is min-max normalised to ``[0, 1]`` (a constant map becomes 0). Positives: the map
    at the ``k`` fixated pixels (each once). For each of ``n_splits`` splits the negatives are
    ``k`` pixels drawn uniformly **with replacement** from all ``H * W`` pixels (fixated ones
    included) by ``numpy.random.default_rng(seed).integers(0, H * W, (n_splits, k))``; the
    thresholds are ``0, step, 2 step, ...`` up to the maximum; TP/FP rates are shares ``>=``
    the threshold; anchored at (0, 0), (1, 1); trapezoid rule; the result is the mean over
    splits. ``n_splits=None``: the deterministic limit, every pixel a negative and every
    distinct value a threshold (``step`` unused), which equals the Mann-Whitney statistic with
    ties counted half. A constant map scores 0.5.
    """
    check_splits(n_splits)
    s = minmax(scored_map(pred, shape))
    flat = s.ravel()
    idx = fixated_pixels(fix, s.shape, "auc_borji")
    pos = flat[idx]
    if n_splits is None:
        return roc_area(pos, flat, np.unique(flat)[::-1])
    threshold_grid(step)
    draws = np.random.default_rng(seed).integers(0, flat.size, size=(n_splits, idx.size))
    return _stepped_auc(pos, flat[draws], step)


def sauc_from_pool(pos: np.ndarray, n_pool: int, pool_values: Callable[[np.ndarray],
                    np.ndarray], n_splits: int | None, step: float,
                    seed: int | Sequence[int]) -> float:
    """Shuffled AUC given the positives and a pool of ``n_pool`` negative candidates whose
    values ``pool_values(indices)`` returns (the map must be min-max normalised)."""
    if n_splits is None:
        neg = pool_values(np.arange(n_pool))
        return roc_area(pos, neg, np.unique(np.concatenate([pos, neg]))[::-1])
    m = min(pos.size, n_pool)
    if m == n_pool:  # the whole pool every split: no randomness left
        neg = np.broadcast_to(pool_values(np.arange(n_pool)), (n_splits, n_pool))
    else:
        rng = np.random.default_rng(seed)
        neg = np.stack([pool_values(rng.choice(n_pool, size=m, replace=False))
                        for _ in range(n_splits)])
    return _stepped_auc(pos, neg, step)


def auc_shuffled(pred: MapLike, fix: Any, other_fix: Any, n_splits: int | None = 100,
                 step: float = 0.1, seed: int | Sequence[int] = 0, *,
                 shape: Shape | None = None) -> float:
    """Shuffled AUC (sAUC) of one image.

    Like :func:`auc_borji` (min-max normalised map, positives at the fixated pixels counted
    once, thresholds ``0, step, ...``, mean over splits), but the negatives come from
    ``other_fix``: the fixations of the **other** images of the evaluated split, already
    mapped to this image's size by :func:`rescale_points`, taken as given (a multiset: a pixel
    fixated in several other images counts several times, which is how sAUC discounts centre
    bias). Per split ``min(k, len(other_fix))`` of them are drawn **without replacement** with
    ``numpy.random.default_rng(seed).choice`` (the MIT code's sampling; when the pool is no
    larger than ``k`` all of it is used and the result is deterministic).
    ``n_splits=None``: the TASKS.md definition, every other fixation a negative and every
    distinct value a threshold (``step`` unused). A constant map scores 0.5. Raises
    ``ValueError`` for no fixations, no other fixations, or an other point outside the map.
    """
    check_splits(n_splits)
    if n_splits is not None:
        threshold_grid(step)
    s = minmax(scored_map(pred, shape))
    flat = s.ravel()
    idx = fixated_pixels(fix, s.shape, "auc_shuffled")
    others = linear_indices(fixation_points(other_fix, "other_fix"), s.shape,
                            "auc_shuffled: other_fix")
    if others.size == 0:
        raise ValueError("auc_shuffled: other_fix is empty: the shuffled AUC needs the "
                         "fixations of other images as negatives")
    return sauc_from_pool(flat[idx], others.size, lambda ix: flat[others[ix]], n_splits,
                           step, seed)
