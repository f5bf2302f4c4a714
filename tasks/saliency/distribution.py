"""The saliency metrics that score a map's values rather than its ranking: CC, KLD and SIM
against the ground-truth density map (distribution-based), NSS and information gain at the
fixations (location-based, on the z-scored and the density-normalised map).

Conventions: **ground-truth density** maps may have any scale; a distribution metric of an
all-zero (or zero-sum) density raises ``ValueError``. **Density normalisation** (KLD, SIM, IG;
:func:`as_density`): a map with negative values is first shifted by its minimum, then divided
by its sum; a prediction that sums to zero after that (it was constant) is read as the uniform
density, a ground truth or baseline that does is an error. A **constant prediction** gives NSS
0 and CC 0 (never NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nastk.tasks.saliency.geometry import (
    MapLike,
    Shape,
    as_map,
    fixated_pixels,
    resize_to,
    scored_map,
)

__all__ = ["EPS", "as_density", "cc", "ground_truth", "information_gain", "kld", "nss", "sim"]

#: the epsilon of the benchmark's KLD and IG (MATLAB's ``eps``)
EPS = 2.2204e-16


def as_density(x: MapLike, what: str, *, zero_is_uniform: bool) -> np.ndarray:
    """A map turned into a density: shifted by its minimum only if it has negative values, then
    divided by its sum. A zero-sum map becomes uniform when ``zero_is_uniform`` (a constant
    prediction), else raises ``ValueError`` (a ground truth or baseline with no mass)."""
    m = x if isinstance(x, np.ndarray) else as_map(x, what).numpy()
    m = m.astype(np.float64, copy=True)
    lo = m.min()
    if lo < 0:
        m -= lo
    total = m.sum()
    if total <= 0:
        if zero_is_uniform:
            return np.full(m.shape, 1.0 / m.size)
        raise ValueError(f"{what} sums to zero (all-zero map): it is not a density, so the "
                         f"distribution metrics are undefined")
    return m / total


def ground_truth(gt: MapLike, metric: str) -> np.ndarray:
    """The density map as float64, rejecting an all-zero one."""
    g = as_map(gt, f"{metric}: the ground-truth density").numpy()
    if not np.any(g):
        raise ValueError(f"{metric}: the ground-truth density is all zero, so the "
                         f"distribution metric is undefined")
    return g


def cc(pred: MapLike, gt: MapLike) -> float:
    """Pearson's linear correlation coefficient of the prediction (resized to ``gt``'s shape)
    and the density map ``gt`` over all pixels (scale-free, so no normalisation). A constant
    prediction (or a constant non-zero ground truth) gives 0. An all-zero ``gt`` raises
    ``ValueError``."""
    g = ground_truth(gt, "cc")
    p = scored_map(pred, g.shape)
    if p.max() == p.min() or g.max() == g.min():
        return 0.0
    pc, gc = p - p.mean(), g - g.mean()
    r = float(np.sum(pc * gc) / math.sqrt(np.sum(pc * pc) * np.sum(gc * gc)))
    return min(1.0, max(-1.0, r))


def kld(pred: MapLike, gt: MapLike, eps: float = EPS) -> float:
    """KL divergence ``KL(G || P) = sum g * log(eps + g / (p + eps))``, **natural log**, with
    ``G`` the ground truth and ``P`` the prediction (resized to ``gt``'s shape), both shifted
    if they have negative values and divided by their sums (a constant prediction is
    uniform). Lower is better; the direction matters. An all-zero ``gt`` raises
    ``ValueError``."""
    g = as_density(ground_truth(gt, "kld"), "kld: the ground-truth density",
                 zero_is_uniform=False)
    p = as_density(scored_map(pred, g.shape), "the prediction", zero_is_uniform=True)
    return float(np.sum(g * np.log(eps + g / (p + eps))))


def sim(pred: MapLike, gt: MapLike) -> float:
    """Similarity (histogram intersection) ``sum min(p, g)`` of the prediction (resized to
    ``gt``'s shape) and the ground truth, both normalised as for :func:`kld` (shift if
    negative, divide by the sum; **no** min-max step, unlike the MIT MATLAB code). In
    ``[0, 1]``, 1 for identical densities. An all-zero ``gt`` raises ``ValueError``."""
    g = as_density(ground_truth(gt, "sim"), "sim: the ground-truth density",
                 zero_is_uniform=False)
    p = as_density(scored_map(pred, g.shape), "the prediction", zero_is_uniform=True)
    return float(np.sum(np.minimum(p, g)))


def nss(pred: MapLike, fix: Any, *, shape: Shape | None = None) -> float:
    """Normalised scanpath saliency of one image: the map z-scored with its mean and
    **population** std (ddof 0, the reference Python code's; MATLAB's uses ddof 1), averaged
    over the fixated pixels (each once). A constant map gives 0."""
    s = scored_map(pred, shape)
    idx = fixated_pixels(fix, s.shape, "nss")
    if s.max() == s.min():
        return 0.0
    return float(np.mean((s.ravel()[idx] - s.mean()) / s.std()))


def _baseline_map(baseline: Any, shape: tuple[int, int]) -> np.ndarray:
    """A baseline density at ``shape``: a callable ``shape -> map`` is called, a map is
    resized bilinearly if its shape differs; then normalised (shift if negative, sum 1)."""
    b = baseline(shape) if callable(baseline) else baseline
    b = as_map(b, "the IG baseline")
    if tuple(b.shape) != shape:
        b = resize_to(b, shape)
    return as_density(b.numpy(), "the IG baseline", zero_is_uniform=False)


def information_gain(pred: MapLike, fix: Any, baseline: Any, eps: float = EPS, *,
                     shape: Shape | None = None) -> float:
    """Information gain of one image over ``baseline``, in **bits per fixation**: the mean
    over fixated pixels (each once) of ``log2(eps + p) - log2(eps + b)``, with ``p`` the
    prediction and ``b`` the baseline both made densities (shifted if negative, divided by
    their sums; a constant prediction is uniform). ``baseline``: a map (resized bilinearly to
    the prediction's shape if it differs) or a callable ``shape -> map`` such as a fitted
    :class:`~nastk.tasks.saliency.baseline.CenterBias` or
    :func:`~nastk.tasks.saliency.baseline.uniform_baseline`. With the uniform baseline IG is
    ``mean log2(eps + p) + log2(H W)`` (up to eps)."""
    s = scored_map(pred, shape)
    idx = fixated_pixels(fix, s.shape, "information_gain")
    p = as_density(s, "the prediction", zero_is_uniform=True).ravel()
    b = _baseline_map(baseline, s.shape).ravel()
    return float(np.mean(np.log2(eps + p[idx]) - np.log2(eps + b[idx])))
