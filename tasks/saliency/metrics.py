"""Saliency metrics of one image, a streaming split meter and SalNAS's composite loss.

Every metric scores **one image at the ground truth's resolution**: the prediction is first
bilinearly resized to the ground truth's ``(H, W)`` by :func:`resize_to`. Scores are plain
Python floats computed in float64 (the prediction is converted to float64 *before* resizing,
so float32 rounding cannot break ties); split-level means come from :class:`SaliencyMeter` (per
image first, then the mean over images, as the benchmarks do).

Conventions shared by every function (the benchmark's, ``shared/TASKS.md`` §1):

- **Fixations** are ``[k, 2]`` integer ``(row, col)`` pixel indices, 0-based, at the ground
  truth's resolution (a float coordinate is floored, i.e. truncated, to its pixel; a point
  outside the map is a ``ValueError``). The location metrics read them as the benchmark's
  **binary fixation map**: a pixel fixated twice counts **once** (the MIT benchmark marks
  fixations in a 0/1 map, so AUC-Judd, AUC-Borji, sAUC, NSS and IG are averages over fixated
  *pixels*). An image with no fixation makes every location metric raise ``ValueError``.
- **Ground-truth density** maps may have any scale. A distribution metric of an all-zero (or
  zero-sum) density raises ``ValueError``.
- **Density normalisation** (KLD, SIM, IG): a map with negative values is first shifted by its
  minimum, then divided by its sum. A prediction that sums to zero after that (it was constant)
  is read as the uniform density; a ground truth or baseline that does is an error.
- **Constant predictions** give AUC-Judd, AUC-Borji and sAUC 0.5, NSS 0 and CC 0 (never NaN).
- **Randomness** (AUC-Borji, sAUC) is seeded: ``numpy.random.default_rng(seed)`` with ``seed``
  an int or a sequence of ints. No jitter is added anywhere: ties between a positive and a
  negative value get half credit from the trapezoid rule.
- Non-finite predictions raise ``ValueError``.

SalNAS's own metric code is not followed where it departs from these conventions (unbiased std
without eps in CC, NaN NSS without fixations, min-max before SIM, AUC-Judd on one image per
batch, a broken shuffled AUC, no IG).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "LOSS_TERMS",
    "CenterBias",
    "SaliencyMeter",
    "auc_borji",
    "auc_judd",
    "auc_shuffled",
    "cc",
    "gaussian_blur",
    "gaussian_kernel1d",
    "information_gain",
    "kld",
    "nss",
    "rescale_points",
    "resize_to",
    "saliency_loss",
    "sim",
    "uniform_baseline",
]

#: the epsilon of the benchmark's KLD and IG (MATLAB's ``eps``)
EPS = 2.2204e-16
#: the terms :func:`saliency_loss` knows
LOSS_TERMS = ("kld", "cc", "nss", "sim")
_DEFAULT_LOSS_WEIGHTS = {"kld": 1.0, "cc": 1.0, "nss": 1.0}
#: keeps square roots of zero variances differentiable in the loss (float32-representable)
_TINY = 1e-30

MapLike = Any  # a torch.Tensor or numpy array (or nested list) holding a 2-D map
Shape = Sequence[int]


# -- small helpers ----------------------------------------------------------------------------
def _shape2(shape: Shape, what: str = "shape") -> tuple[int, int]:
    """``(H, W)`` of a 2-sequence of positive ints."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return h, w


def _tensor(x: MapLike) -> torch.Tensor:
    """``x`` as a detached tensor (numpy arrays and lists are converted, not copied twice)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def _as_map(x: MapLike, what: str) -> torch.Tensor:
    """A 2-D float64 CPU tensor from ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``; rejects
    other shapes and non-finite values."""
    t = _tensor(x)
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{what} must be one 2-D map [H, W] (or [1, H, W], [1, 1, H, W]), "
                         f"got shape {tuple(_tensor(x).shape)}")
    t = t.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} has non-finite values (NaN or inf)")
    return t


def _scored(pred: MapLike, shape: Shape | None) -> np.ndarray:
    """The prediction as a 2-D float64 array, resized to ``shape`` when given."""
    p = _as_map(pred, "the prediction")
    if shape is not None:
        p = resize_to(p, _shape2(shape))
    return p.numpy()


def _density(x: MapLike, what: str, *, zero_is_uniform: bool) -> np.ndarray:
    """A map turned into a density: shifted by its minimum only if it has negative values, then
    divided by its sum. A zero-sum map becomes uniform when ``zero_is_uniform`` (a constant
    prediction), else raises ``ValueError`` (a ground truth or baseline with no mass)."""
    m = x if isinstance(x, np.ndarray) else _as_map(x, what).numpy()
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


def _ground_truth(gt: MapLike, metric: str) -> np.ndarray:
    """The density map as float64, rejecting an all-zero one."""
    g = _as_map(gt, f"{metric}: the ground-truth density").numpy()
    if not np.any(g):
        raise ValueError(f"{metric}: the ground-truth density is all zero, so the "
                         f"distribution metric is undefined")
    return g


def _points(fix: Any, what: str = "fixations") -> np.ndarray:
    """``[k, 2]`` int64 ``(row, col)`` points; floats are floored; no range check."""
    a = fix.detach().cpu().numpy() if isinstance(fix, torch.Tensor) else np.asarray(fix)
    if a.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{what} must be a [k, 2] array of (row, col) points, got shape "
                         f"{a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(f"{what} has non-finite coordinates")
        a = np.floor(a)
    elif not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must hold integer (or float) coordinates, got {a.dtype}")
    return a.astype(np.int64)


def _linear(points: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    """Linear indices ``row * W + col`` of in-range points (``ValueError`` naming the first
    point outside the map otherwise)."""
    h, w = shape
    bad = (points[:, 0] < 0) | (points[:, 0] >= h) | (points[:, 1] < 0) | (points[:, 1] >= w)
    if bad.any():
        r, c = points[np.flatnonzero(bad)[0]]
        raise ValueError(f"{what}: point (row={r}, col={c}) lies outside the {h}x{w} map "
                         f"({int(bad.sum())} of {len(points)} points are out of range); "
                         f"fixations must be 0-based pixel indices at the ground truth's "
                         f"resolution (see rescale_points)")
    return points[:, 0] * w + points[:, 1]


def _fixated(fix: Any, shape: tuple[int, int], metric: str) -> np.ndarray:
    """Sorted unique linear indices of the fixated pixels (the binary fixation map); raises
    ``ValueError`` when there is none."""
    lin = np.unique(_linear(_points(fix), shape, f"{metric}: fixations"))
    if lin.size == 0:
        raise ValueError(f"{metric}: the image has no fixations, so this location-based "
                         f"metric is undefined (SaliencyMeter skips such images and counts "
                         f"them in skipped_no_fixations)")
    return lin


def _minmax(s: np.ndarray) -> np.ndarray:
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


def _roc_area(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray,
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


def _grid(step: float) -> np.ndarray:
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
    t = _grid(step)
    tp = (pos[None, :] >= t[:, None]).mean(axis=1)  # [T]
    fp = (neg[:, :, None] >= t[None, None, :]).mean(axis=1)  # [S, T]
    n_splits = neg.shape[0]
    zeros, ones = np.zeros((n_splits, 1)), np.ones((n_splits, 1))
    x = np.concatenate([zeros, fp, ones], axis=1)
    y = np.concatenate([zeros, np.broadcast_to(tp, fp.shape), ones], axis=1)
    return float(_trapezoid(x, y).mean())


def _check_splits(n_splits: int | None) -> None:
    if n_splits is not None and (isinstance(n_splits, bool) or not isinstance(n_splits, int)
                                 or n_splits < 1):
        raise ValueError(f"n_splits must be a positive int or None, got {n_splits!r}")


# -- resizing, points, blur -------------------------------------------------------------------
def resize_to(pred: MapLike, shape: Shape) -> torch.Tensor:
    """``pred`` (a tensor or array whose last two dims are ``H, W``; any leading dims) resized
    to ``shape = (H', W')`` over its last two dims.

    Convention: bilinear, ``align_corners=False``, no antialiasing (``F.interpolate``), the
    resize every metric applies to bring a prediction to the ground truth's resolution. An
    exactly constant map stays exactly constant (interpolation rounding could otherwise make it
    vary in the last bits and give it a spurious ranking). The same shape is returned
    unchanged; a non-float input becomes float32. Differentiable.
    """
    t = pred if isinstance(pred, torch.Tensor) else torch.as_tensor(np.asarray(pred))
    if t.ndim < 2:
        raise ValueError(f"resize_to needs a map with at least 2 dims, got shape "
                         f"{tuple(t.shape)}")
    h, w = _shape2(shape)
    if not t.is_floating_point():
        t = t.float()
    if tuple(t.shape[-2:]) == (h, w):
        return t
    lead = t.shape[:-2]
    x = t.reshape(-1, 1, *t.shape[-2:])
    out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    flat = x.flatten(1)
    const = (flat.amax(dim=1) == flat.amin(dim=1)).view(-1, 1, 1, 1)
    out = torch.where(const, flat[:, :1].view(-1, 1, 1, 1).expand_as(out), out)
    return out.reshape(*lead, h, w)


def rescale_points(points: Any, from_shape: Shape, to_shape: Shape) -> Any:
    """Fixations of an ``from_shape = (H_m, W_m)`` image mapped to ``to_shape = (H_n, W_n)``.

    Convention (TASKS.md, the shuffled AUC's): ``row' = floor(row * H_n / H_m)``, ``col' =
    floor(col * W_n / W_m)`` (exact integer arithmetic for integer points), so a point inside
    the source map lands inside the target. Points outside ``from_shape`` raise ``ValueError``.
    Returns an int64 tensor for a tensor input, else an int64 numpy array, shape ``[k, 2]``.
    """
    hm, wm = _shape2(from_shape, "from_shape")
    hn, wn = _shape2(to_shape, "to_shape")
    p = _points(points, "rescale_points: points")
    _linear(p, (hm, wm), "rescale_points")
    raw = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if raw.size and np.issubdtype(raw.dtype, np.floating):  # floor(x * n / m) of the float x
        f = raw.astype(np.float64)
        out = np.stack([np.floor(f[:, 0] * hn / hm), np.floor(f[:, 1] * wn / wm)], axis=1)
        out = np.minimum(out, [hn - 1, wn - 1]).astype(np.int64)
    else:
        out = np.stack([(p[:, 0] * hn) // hm, (p[:, 1] * wn) // wm], axis=1).astype(np.int64)
    if isinstance(points, torch.Tensor):
        return torch.from_numpy(out).to(points.device)
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The sampled 1-D Gaussian ``exp(-x^2 / (2 sigma^2))`` at integer offsets ``|x| <= radius
    = ceil(truncate * sigma)`` (at least 1), normalised to sum 1; float64."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number of pixels, got {sigma!r}")
    if not (math.isfinite(truncate) and truncate > 0):
        raise ValueError(f"truncate must be positive, got {truncate!r}")
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _reflect_index(n: int, radius: int) -> torch.Tensor:
    """Source indices of ``[-radius, n + radius)`` under reflection about the edge pixels
    (``d c b | a b c d | c b a``, the edge not repeated; works for any radius)."""
    i = torch.arange(-radius, n + radius)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def _blur_operator(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """The ``n x n`` matrix of a 1-D convolution with ``kernel`` (odd length, centred) under
    reflect padding: row ``i`` holds the kernel's weights at the (reflected) source pixels."""
    r = (kernel.numel() - 1) // 2
    src = _reflect_index(n, r)[torch.arange(n)[:, None] + torch.arange(2 * r + 1)[None, :]]
    rows = torch.arange(n)[:, None].expand_as(src)
    op = torch.zeros(n, n, dtype=kernel.dtype)
    return op.index_put_((rows, src), kernel.expand_as(src).clone(), accumulate=True)


def gaussian_blur(saliency: MapLike, sigma: float | None, truncate: float = 4.0) -> torch.Tensor:
    """``saliency`` (last two dims ``H, W``, any leading dims) blurred by an isotropic Gaussian
    of standard deviation ``sigma`` pixels.

    Convention: separable (columns, then rows) with :func:`gaussian_kernel1d` (sampled, sum 1,
    radius ``ceil(truncate * sigma)``); **reflect** padding, the edge pixel not repeated
    (``torch``'s ``"reflect"``, OpenCV's ``BORDER_REFLECT_101``, kornia's default), for any
    ``sigma`` on any map size. Each 1-D pass is a product with a banded ``n x n`` matrix that
    folds the padding in (``B_H @ map @ B_W^T``, fast in float64). Away from the borders the
    total is preserved. ``sigma`` None or 0 returns the input unchanged. Computed in the
    input's float dtype (a non-float input becomes float32) on its device; differentiable.

    SalNAS blurs its evaluation outputs with kornia's 11x11 kernel at ``sigma = 10.5``, i.e.
    truncated at half a sigma; pass ``truncate=5 / 10.5`` to reproduce that.
    """
    t = saliency if isinstance(saliency, torch.Tensor) else torch.as_tensor(np.asarray(saliency))
    if sigma is None or sigma == 0:
        return t
    if t.ndim < 2:
        raise ValueError(f"gaussian_blur needs a map with at least 2 dims, got shape "
                         f"{tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    k = gaussian_kernel1d(float(sigma), truncate)
    h, w = t.shape[-2:]
    bh = _blur_operator(h, k).to(dtype=t.dtype, device=t.device)
    bw = _blur_operator(w, k).to(dtype=t.dtype, device=t.device)
    return bh @ t @ bw.T


# -- location-based metrics -------------------------------------------------------------------
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
    s = _scored(pred, shape)
    flat = s.ravel()
    idx = _fixated(fix, s.shape, "auc_judd")
    mask = np.zeros(flat.size, dtype=bool)
    mask[idx] = True
    if mask.all():
        raise ValueError("auc_judd: every pixel is fixated, so there are no negatives")
    pos = flat[idx]
    return _roc_area(pos, flat[~mask], np.unique(pos)[::-1])


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
    _check_splits(n_splits)
    s = _minmax(_scored(pred, shape))
    flat = s.ravel()
    idx = _fixated(fix, s.shape, "auc_borji")
    pos = flat[idx]
    if n_splits is None:
        return _roc_area(pos, flat, np.unique(flat)[::-1])
    _grid(step)
    draws = np.random.default_rng(seed).integers(0, flat.size, size=(n_splits, idx.size))
    return _stepped_auc(pos, flat[draws], step)


def _sauc_from_pool(pos: np.ndarray, n_pool: int, pool_values: Callable[[np.ndarray],
                    np.ndarray], n_splits: int | None, step: float,
                    seed: int | Sequence[int]) -> float:
    """Shuffled AUC given the positives and a pool of ``n_pool`` negative candidates whose
    values ``pool_values(indices)`` returns (the map must be min-max normalised)."""
    if n_splits is None:
        neg = pool_values(np.arange(n_pool))
        return _roc_area(pos, neg, np.unique(np.concatenate([pos, neg]))[::-1])
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
    _check_splits(n_splits)
    if n_splits is not None:
        _grid(step)
    s = _minmax(_scored(pred, shape))
    flat = s.ravel()
    idx = _fixated(fix, s.shape, "auc_shuffled")
    others = _linear(_points(other_fix, "other_fix"), s.shape, "auc_shuffled: other_fix")
    if others.size == 0:
        raise ValueError("auc_shuffled: other_fix is empty: the shuffled AUC needs the "
                         "fixations of other images as negatives")
    return _sauc_from_pool(flat[idx], others.size, lambda ix: flat[others[ix]], n_splits,
                           step, seed)


def nss(pred: MapLike, fix: Any, *, shape: Shape | None = None) -> float:
    """Normalised scanpath saliency of one image: the map z-scored with its mean and
    **population** std (ddof 0, the reference Python code's; MATLAB's uses ddof 1), averaged
    over the fixated pixels (each once). A constant map gives 0."""
    s = _scored(pred, shape)
    idx = _fixated(fix, s.shape, "nss")
    if s.max() == s.min():
        return 0.0
    return float(np.mean((s.ravel()[idx] - s.mean()) / s.std()))


def uniform_baseline(shape: Shape) -> torch.Tensor:
    """The uniform density ``1 / (H * W)`` of a ``(H, W)`` map (float64); as the IG baseline it
    gives ``log2 p_baseline = -log2(H * W)`` at every fixation."""
    h, w = _shape2(shape)
    return torch.full((h, w), 1.0 / (h * w), dtype=torch.float64)


class CenterBias:
    """A centre-bias baseline for information gain: the **mean of the training split's density
    maps**, each normalised to sum 1 (every image weighs the same) and brought to a fixed
    ``size`` grid (adaptive average pooling when the map is at least as large in both dims,
    else bilinear :func:`resize_to`).

    ``fit(maps)`` takes an iterable of density maps (``[H, W]`` tensors or arrays of any sizes,
    or target dicts with a ``"density"`` entry) and returns ``self``; calling the fitted
    baseline, ``cb(shape)``, returns its density bilinearly resized to ``shape``, clipped at 0
    and renormalised to sum 1 (float64; the last shape's map is cached, do not modify it).
    ``density`` holds the fitted ``size`` map (None before ``fit``); :meth:`from_density`
    restores a saved one. Fit it on the training split only.
    """

    def __init__(self, size: Shape = (64, 64)) -> None:
        self.size = _shape2(size, "CenterBias size")
        self.density: torch.Tensor | None = None
        self.n_maps = 0
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def __repr__(self) -> str:
        state = f"fitted on {self.n_maps} maps" if self.density is not None else "not fitted"
        return f"CenterBias(size={self.size}, {state})"

    @classmethod
    def from_density(cls, density: MapLike) -> CenterBias:
        """A baseline whose fitted map is ``density`` (e.g. a saved ``CenterBias.density``)."""
        d = torch.from_numpy(_density(density, "CenterBias density", zero_is_uniform=False))
        cb = cls(tuple(d.shape))
        cb.density = d
        return cb

    def fit(self, maps: Iterable[Any]) -> CenterBias:
        acc = torch.zeros(self.size, dtype=torch.float64)
        n = 0
        for m in maps:
            if isinstance(m, Mapping):
                m = m["density"]
            d = torch.from_numpy(_density(m, f"CenterBias.fit: map {n}", zero_is_uniform=False))
            if d.shape[0] >= self.size[0] and d.shape[1] >= self.size[1]:
                r = F.adaptive_avg_pool2d(d[None, None], self.size)[0, 0]
            else:
                r = resize_to(d, self.size).clamp_min(0.0)
            acc += r / r.sum()
            n += 1
        if n == 0:
            raise ValueError("CenterBias.fit: no maps given")
        self.density = acc / n
        self.n_maps = n
        self._cache = {}
        return self

    def __call__(self, shape: Shape) -> torch.Tensor:
        if self.density is None:
            raise RuntimeError("CenterBias is not fitted: call fit(training density maps) "
                               "first")
        hw = _shape2(shape)
        if hw not in self._cache:
            r = resize_to(self.density, hw).clamp_min(0.0)
            self._cache = {hw: r / r.sum()}  # the last shape: a split usually has one or few
        return self._cache[hw]


def _baseline_map(baseline: Any, shape: tuple[int, int]) -> np.ndarray:
    """A baseline density at ``shape``: a callable ``shape -> map`` is called, a map is
    resized bilinearly if its shape differs; then normalised (shift if negative, sum 1)."""
    b = baseline(shape) if callable(baseline) else baseline
    b = _as_map(b, "the IG baseline")
    if tuple(b.shape) != shape:
        b = resize_to(b, shape)
    return _density(b.numpy(), "the IG baseline", zero_is_uniform=False)


def information_gain(pred: MapLike, fix: Any, baseline: Any, eps: float = EPS, *,
                     shape: Shape | None = None) -> float:
    """Information gain of one image over ``baseline``, in **bits per fixation**: the mean
    over fixated pixels (each once) of ``log2(eps + p) - log2(eps + b)``, with ``p`` the
    prediction and ``b`` the baseline both made densities (shifted if negative, divided by
    their sums; a constant prediction is uniform). ``baseline``: a map (resized bilinearly to
    the prediction's shape if it differs) or a callable ``shape -> map`` such as a fitted
    :class:`CenterBias` or :func:`uniform_baseline`. With the uniform baseline IG is
    ``mean log2(eps + p) + log2(H W)`` (up to eps)."""
    s = _scored(pred, shape)
    idx = _fixated(fix, s.shape, "information_gain")
    p = _density(s, "the prediction", zero_is_uniform=True).ravel()
    b = _baseline_map(baseline, s.shape).ravel()
    return float(np.mean(np.log2(eps + p[idx]) - np.log2(eps + b[idx])))


# -- distribution-based metrics ---------------------------------------------------------------
def cc(pred: MapLike, gt: MapLike) -> float:
    """Pearson's linear correlation coefficient of the prediction (resized to ``gt``'s shape)
    and the density map ``gt`` over all pixels (scale-free, so no normalisation). A constant
    prediction (or a constant non-zero ground truth) gives 0. An all-zero ``gt`` raises
    ``ValueError``."""
    g = _ground_truth(gt, "cc")
    p = _scored(pred, g.shape)
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
    g = _density(_ground_truth(gt, "kld"), "kld: the ground-truth density",
                 zero_is_uniform=False)
    p = _density(_scored(pred, g.shape), "the prediction", zero_is_uniform=True)
    return float(np.sum(g * np.log(eps + g / (p + eps))))


def sim(pred: MapLike, gt: MapLike) -> float:
    """Similarity (histogram intersection) ``sum min(p, g)`` of the prediction (resized to
    ``gt``'s shape) and the ground truth, both normalised as for :func:`kld` (shift if
    negative, divide by the sum; **no** min-max step, unlike the MIT MATLAB code). In
    ``[0, 1]``, 1 for identical densities. An all-zero ``gt`` raises ``ValueError``."""
    g = _density(_ground_truth(gt, "sim"), "sim: the ground-truth density",
                 zero_is_uniform=False)
    p = _density(_scored(pred, g.shape), "the prediction", zero_is_uniform=True)
    return float(np.sum(np.minimum(p, g)))


# -- the split meter --------------------------------------------------------------------------
def _batch_maps(pred_maps: Any, what: str) -> torch.Tensor:
    """``[N, 1, H, W]`` or ``[N, H, W]`` as a detached ``[N, H, W]`` tensor."""
    t = _tensor(pred_maps)
    if t.ndim == 4:
        if t.shape[1] != 1:
            raise ValueError(f"{what}: predictions [N, C, H, W] must have C = 1, got "
                             f"shape {tuple(t.shape)}")
        t = t[:, 0]
    if t.ndim != 3:
        raise ValueError(f"{what}: predictions must be [N, 1, H, W] or [N, H, W], got "
                         f"shape {tuple(t.shape)}")
    return t


def _target_parts(target: Any, i: int, what: str) -> tuple[Any, Any]:
    if not isinstance(target, Mapping) or "density" not in target or "fixations" not in target:
        raise ValueError(f"{what}: target {i} must be a dict with 'density' [H, W] and "
                         f"'fixations' [k, 2], got {type(target).__name__}"
                         f"{sorted(target) if isinstance(target, Mapping) else ''}")
    return target["density"], target["fixations"]


class SaliencyMeter:
    """Streaming saliency metrics over a split: per-image scores, then means over images.

    ``update(pred_maps, targets)``: ``pred_maps`` ``[N, 1, H, W]`` or ``[N, H, W]`` (tensor or
    array; the network's saliency maps, any resolution), ``targets`` a list of ``N`` dicts
    ``{"density": [H_i, W_i], "fixations": [k_i, 2]}`` at each image's own ground-truth
    resolution. Each prediction is resized to its ground truth (:func:`resize_to`), then, if
    ``blur_sigma`` is set, blurred by :func:`gaussian_blur` at that resolution (sigma in
    ground-truth pixels), and scored by this module's functions.

    ``compute()`` returns the means over the images added: ``cc``, ``kld``, ``sim`` over every
    image; ``auc_judd``, ``auc_borji``, ``sauc``, ``nss``, ``ig_uniform`` and, when a
    ``baseline`` is given (a map, or a callable ``shape -> map`` such as a fitted
    :class:`CenterBias`), ``ig`` over the images with fixations. An image without fixations
    is skipped for the location metrics explicitly and counted in ``skipped_no_fixations``
    (never a NaN in a mean); when no image of the split has fixations those keys are absent.

    Randomness is seeded per image, independent of batching: image ``i`` (in update order)
    uses ``seed=[seed, 0, i]`` for AUC-Borji and ``[seed, 1, i]`` for sAUC. ``auc_splits``
    (``n_splits`` of both; None: their deterministic limits) and ``step`` as in
    :func:`auc_borji`.

    sAUC needs the whole split, so it is computed in ``compute()``: the negatives of image
    ``i`` are the fixated pixels of every other image (each image's binary fixation map,
    mapped to image ``i``'s size by :func:`rescale_points`, concatenated in update order), as
    in :func:`auc_shuffled`. An image with fixations whose split has no other fixations is
    skipped for ``sauc`` (counted in ``skipped_sauc_no_others``). For this the meter keeps
    the prediction of every image with fixations (detached, on the CPU, at the prediction's
    resolution: ``N * H * W`` values) and every image's fixations and shape; ``sauc=False``
    keeps none and omits ``sauc``.
    """

    _LOCATION = ("auc_judd", "auc_borji", "nss", "ig_uniform", "ig")
    _DISTRIBUTION = ("cc", "kld", "sim")

    def __init__(self, blur_sigma: float | None = None, auc_splits: int | None = 100,
                 seed: int = 0, baseline: Any = None, *, step: float = 0.1,
                 sauc: bool = True) -> None:
        if blur_sigma is not None and not (math.isfinite(blur_sigma) and blur_sigma >= 0):
            raise ValueError(f"blur_sigma must be None or >= 0 pixels, got {blur_sigma!r}")
        _check_splits(auc_splits)
        _grid(step)
        self.blur_sigma = blur_sigma
        self.auc_splits = auc_splits
        self.seed = int(seed)
        self.baseline = baseline
        self.step = step
        self.sauc = bool(sauc)
        self.reset()

    def reset(self) -> None:
        """Forget every image added."""
        self.scores: dict[str, list[float]] = {k: [] for k in
                                               (*self._DISTRIBUTION, *self._LOCATION)}
        self.n_images = 0
        self.skipped_no_fixations = 0
        self.skipped_sauc_no_others = 0
        self._preds: list[torch.Tensor | None] = []  # None for an image without fixations
        self._shapes: list[tuple[int, int]] = []
        self._fix: list[np.ndarray] = []  # per image: unique fixated (row, col), [m, 2]

    def _score_map(self, pred: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        m = resize_to(pred.to(device="cpu", dtype=torch.float64), shape)
        if self.blur_sigma:
            m = gaussian_blur(m, self.blur_sigma)
        return m.numpy()

    def update(self, pred_maps: Any, targets: Sequence[Mapping[str, Any]]) -> None:
        """Score a batch: see the class docstring."""
        preds = _batch_maps(pred_maps, "SaliencyMeter.update")
        if len(targets) != preds.shape[0]:
            raise ValueError(f"SaliencyMeter.update: {preds.shape[0]} predictions but "
                             f"{len(targets)} targets")
        for pred, target in zip(preds, targets, strict=True):
            density, fixations = _target_parts(target, self.n_images, "SaliencyMeter.update")
            g = _ground_truth(density, f"SaliencyMeter image {self.n_images}")
            shape = (int(g.shape[0]), int(g.shape[1]))
            s = self._score_map(pred, shape)
            self.scores["cc"].append(cc(s, g))
            self.scores["kld"].append(kld(s, g))
            self.scores["sim"].append(sim(s, g))
            pts = _points(fixations, f"SaliencyMeter image {self.n_images}: fixations")
            lin = np.unique(_linear(pts, shape, f"SaliencyMeter image {self.n_images}"))
            if lin.size == 0:
                self.skipped_no_fixations += 1
            else:
                i = self.n_images
                self.scores["auc_judd"].append(auc_judd(s, pts))
                self.scores["auc_borji"].append(
                    auc_borji(s, pts, self.auc_splits, self.step, seed=[self.seed, 0, i]))
                self.scores["nss"].append(nss(s, pts))
                self.scores["ig_uniform"].append(information_gain(s, pts, uniform_baseline))
                if self.baseline is not None:
                    self.scores["ig"].append(information_gain(s, pts, self.baseline))
            if self.sauc:
                self._preds.append(pred.detach().to("cpu").clone() if lin.size else None)
                self._shapes.append(shape)
                self._fix.append(np.stack([lin // shape[1], lin % shape[1]], axis=1))
            self.n_images += 1

    def _sauc_scores(self) -> list[float]:
        """Shuffled AUC of every image with fixations whose split has other fixations."""
        with_fix = [i for i, f in enumerate(self._fix) if len(f)]
        pools: dict[tuple[int, int], tuple[np.ndarray, dict[int, tuple[int, int]],
                                           np.ndarray]] = {}
        out: list[float] = []
        self.skipped_sauc_no_others = 0
        for i in with_fix:
            shape = self._shapes[i]
            if shape not in pools:  # every image's fixations mapped to this shape, in order
                parts, spans, start = [], {}, 0
                for j in with_fix:
                    r = rescale_points(self._fix[j], self._shapes[j], shape)
                    parts.append(r[:, 0] * shape[1] + r[:, 1])
                    spans[j] = (start, start + len(r))
                    start += len(r)
                pool = np.concatenate(parts)
                pools[shape] = (pool, spans, np.bincount(pool, minlength=shape[0] * shape[1]))
            pool, spans, counts = pools[shape]
            lo, hi = spans[i]
            n_others = pool.size - (hi - lo)
            if n_others == 0:
                self.skipped_sauc_no_others += 1
                continue
            s = _minmax(self._score_map(self._preds[i], shape))
            flat = s.ravel()
            own = self._fix[i][:, 0] * shape[1] + self._fix[i][:, 1]
            if self.auc_splits is None:
                # every other fixation a negative: pixel values weighted by how often the other
                # images fixate them (the same curve as the pooled values, O(H W log H W))
                weight = counts.astype(np.float64)
                weight[own] -= 1.0  # image i's own span of the pool is exactly ``own``
                keep = weight > 0
                pos, neg = flat[own], flat[keep]
                out.append(_roc_area(pos, neg, np.unique(np.concatenate([pos, neg]))[::-1],
                                     weight[keep]))
                continue

            def values(ix: np.ndarray, flat=flat, pool=pool, lo=lo, hi=hi) -> np.ndarray:
                # index ix into the pool with image i's own span [lo, hi) cut out
                return flat[pool[np.where(ix >= lo, ix + (hi - lo), ix)]]

            out.append(_sauc_from_pool(flat[own], n_others, values, self.auc_splits,
                                       self.step, [self.seed, 1, i]))
        return out

    def compute(self) -> dict[str, float]:
        """Means over the images added (see the class docstring)."""
        if self.n_images == 0:
            raise ValueError("SaliencyMeter.compute: no image was added")
        out = {k: float(np.mean(v)) for k, v in self.scores.items() if v}
        if self.sauc:
            sauc = self._sauc_scores()
            if sauc:
                out["sauc"] = float(np.mean(sauc))
        return out


# -- the training loss ------------------------------------------------------------------------
def _zscore_t(x: torch.Tensor, std_eps: float) -> torch.Tensor:
    """``(x - mean) / sqrt(var + std_eps * mean(x^2) + tiny)``: the population std with an eps
    relative to the map's scale (detached), so a constant map gives 0 with a finite
    gradient."""
    xc = x - x.mean()
    scale = (x * x).mean().detach()
    return xc / torch.sqrt((xc * xc).mean() + std_eps * scale + _TINY)


def saliency_loss(pred_maps: torch.Tensor, targets: Sequence[Mapping[str, Any]],
                  weights: Mapping[str, float] | None = None, *, eps: float = EPS,
                  std_eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """SalNAS's composite saliency loss as named, weighted terms, each averaged over the batch.

    ``pred_maps`` ``[N, 1, H, W]`` or ``[N, H, W]`` non-negative saliency maps (e.g. a
    sigmoid's output); ``targets`` ``N`` dicts ``{"density": [H_i, W_i], "fixations": [k_i,
    2]}`` as for :class:`SaliencyMeter` (the density may be a self-KD blend). Each prediction
    is bilinearly resized to its density's resolution (``F.interpolate``, ``align_corners=
    False``) and computed in float32 or wider. Terms (``weights`` default ``{"kld": 1, "cc": 1,
    "nss": 1}``; a weight of 0 drops the term; ``"sim"`` is optional):

    - ``kld``: ``w * mean_i sum g log(eps + g / (p + eps))`` with ``p``, ``g`` sum-normalised;
    - ``cc``: ``w * (1 - mean_i CC_i)``;
    - ``nss``: ``w * mean_i (1 - sigmoid(NSS_i))`` over the images with fixations (NSS on the
      fixated pixels, each once); 0 (still in the graph) if no image of the batch has any;
    - ``sim``: ``w * (1 - mean_i SIM_i)``.

    CC and NSS z-score with ``sqrt(var + std_eps * mean(x^2))``, an eps relative to the map's
    scale, so a constant prediction gives CC = NSS = 0 and finite gradients. Differentiable
    (torch ops only); the optimised loss is the sum of the terms. Raises ``ValueError`` for a
    negative prediction (kld/sim), an all-zero density, a fixation outside its map, unknown or
    negative weights, all weights 0, or (kld/sim) a negative density value.
    """
    w = dict(_DEFAULT_LOSS_WEIGHTS if weights is None else weights)
    unknown = sorted(set(w) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"saliency_loss: unknown terms {unknown}; known: {list(LOSS_TERMS)}")
    for k, v in w.items():
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and math.isfinite(v)
                                       and v >= 0):
            raise ValueError(f"saliency_loss: weight {k}={v!r} must be a finite number >= 0")
    active = {k: float(v) for k, v in w.items() if v != 0}
    if not active:
        raise ValueError("saliency_loss: every weight is 0, so there is no loss")
    pred = pred_maps if isinstance(pred_maps, torch.Tensor) else torch.as_tensor(pred_maps)
    if pred.ndim == 4:
        if pred.shape[1] != 1:
            raise ValueError(f"saliency_loss: predictions [N, C, H, W] must have C = 1, got "
                             f"{tuple(pred.shape)}")
        pred = pred[:, 0]
    if pred.ndim != 3:
        raise ValueError(f"saliency_loss: predictions must be [N, 1, H, W] or [N, H, W], got "
                         f"{tuple(pred.shape)}")
    if len(targets) != pred.shape[0]:
        raise ValueError(f"saliency_loss: {pred.shape[0]} predictions but {len(targets)} "
                         f"targets")
    if pred.dtype not in (torch.float32, torch.float64):
        pred = pred.float()
    if ("kld" in active or "sim" in active) and bool((pred.detach() < 0).any()):
        raise ValueError("saliency_loss: kld/sim need non-negative predictions (e.g. a "
                         "sigmoid's output), got negative values")

    terms: dict[str, list[torch.Tensor]] = {k: [] for k in active}
    has_fix: list[torch.Tensor] = []
    gsums: list[torch.Tensor] = []
    gmins: list[torch.Tensor] = []
    bad_fix: list[torch.Tensor] = []
    for i, target in enumerate(targets):
        density, fixations = _target_parts(target, i, "saliency_loss")
        g = torch.as_tensor(density).to(device=pred.device, dtype=pred.dtype)
        while g.ndim > 2 and g.shape[0] == 1:
            g = g[0]
        if g.ndim != 2:
            raise ValueError(f"saliency_loss: target {i}'s density must be [H, W], got "
                             f"{tuple(g.shape)}")
        h, wd = g.shape
        p = pred[i]
        if tuple(p.shape) != (h, wd):
            p = F.interpolate(p[None, None], size=(h, wd), mode="bilinear",
                              align_corners=False)[0, 0]
        gsum = g.sum()
        gsums.append(gsum.detach())
        gmins.append(g.detach().min())
        if "kld" in active or "sim" in active:
            pn = p / p.sum().clamp_min(_TINY)
            gn = g / gsum.clamp_min(_TINY)
            if "kld" in active:
                terms["kld"].append((gn * torch.log(eps + gn / (pn + eps))).sum())
            if "sim" in active:
                terms["sim"].append(torch.minimum(pn, gn).sum())
        if "cc" in active:
            zp, zg = _zscore_t(p, std_eps), _zscore_t(g, std_eps)
            terms["cc"].append((zp * zg).mean())
        if "nss" in active:
            f = torch.as_tensor(fixations, device=pred.device)
            if f.numel() == 0:
                f = torch.zeros((0, 2), dtype=torch.long, device=pred.device)
            if f.ndim != 2 or f.shape[1] != 2:
                raise ValueError(f"saliency_loss: target {i}'s fixations must be [k, 2], got "
                                 f"{tuple(f.shape)}")
            f = f.floor().long() if f.is_floating_point() else f.long()
            outside = (f[:, 0] < 0) | (f[:, 0] >= h) | (f[:, 1] < 0) | (f[:, 1] >= wd)
            bad_fix.append(outside.any())
            lin = (f[:, 0].clamp(0, h - 1) * wd + f[:, 1].clamp(0, wd - 1))
            mask = torch.zeros(h * wd, dtype=pred.dtype, device=pred.device)
            mask = mask.index_fill(0, lin, 1.0)  # the binary fixation map: duplicates once
            n = mask.sum()
            z = _zscore_t(p, std_eps).reshape(-1)
            nss_i = (z * mask).sum() / n.clamp_min(1.0)
            terms["nss"].append(1.0 - torch.sigmoid(nss_i))
            has_fix.append((n > 0).to(pred.dtype))
    if bool((torch.stack(gsums) <= 0).any()):
        raise ValueError("saliency_loss: a target density sums to zero (all-zero map)")
    if ("kld" in active or "sim" in active) and bool((torch.stack(gmins) < 0).any()):
        raise ValueError("saliency_loss: kld/sim need non-negative target densities")
    if bad_fix and bool(torch.stack(bad_fix).any()):
        raise ValueError("saliency_loss: a fixation lies outside its density map; fixations "
                         "must be 0-based (row, col) at the density's resolution")

    out: dict[str, torch.Tensor] = {}
    for k, wk in active.items():
        v = torch.stack(terms[k])
        if k == "kld":
            out[k] = wk * v.mean()
        elif k in ("cc", "sim"):
            out[k] = wk * (1.0 - v.mean())
        else:  # nss: mean over the images with fixations
            m = torch.stack(has_fix)
            out[k] = wk * (v * m).sum() / m.sum().clamp_min(1.0)
    return out
