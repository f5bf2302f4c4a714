"""Where a saliency metric looks: maps and their shapes, resizing, fixation points and the
binary fixation map, and the parts of a batch (the helpers every metric module reads its inputs
with).

Every metric scores **one image at the ground truth's resolution**: the prediction is first
bilinearly resized to the ground truth's ``(H, W)`` by :func:`resize_to`. Scores are computed
in float64 (the prediction is converted to float64 *before* resizing, so float32 rounding
cannot break ties).

**Fixations** are ``[k, 2]`` integer ``(row, col)`` pixel indices, 0-based, at the ground
truth's resolution (a float coordinate is floored, i.e. truncated, to its pixel; a point
outside the map is a ``ValueError``). The location metrics read them as the benchmark's
**binary fixation map** (:func:`fixated_pixels`): a pixel fixated twice counts **once** (the
MIT benchmark marks fixations in a 0/1 map, so AUC-Judd, AUC-Borji, sAUC, NSS and IG are
averages over fixated *pixels*). An image with no fixation makes every location metric raise
``ValueError``. Non-finite predictions raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MapLike", "Shape", "as_map", "as_shape", "as_tensor", "fixated_pixels",
           "fixation_points", "linear_indices", "rescale_points", "resize_to", "scored_map",
           "single_channel", "target_parts"]


MapLike = Any  # a torch.Tensor or numpy array (or nested list) holding a 2-D map
Shape = Sequence[int]


def as_shape(shape: Shape, what: str = "shape") -> tuple[int, int]:
    """``(H, W)`` of a 2-sequence of positive ints."""
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive, got {(h, w)}")
    return h, w


def as_tensor(x: MapLike) -> torch.Tensor:
    """``x`` as a detached tensor (numpy arrays and lists are converted, not copied twice)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def as_map(x: MapLike, what: str) -> torch.Tensor:
    """A 2-D float64 CPU tensor from ``[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``; rejects
    other shapes and non-finite values."""
    t = as_tensor(x)
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{what} must be one 2-D map [H, W] (or [1, H, W], [1, 1, H, W]), "
                         f"got shape {tuple(as_tensor(x).shape)}")
    t = t.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} has non-finite values (NaN or inf)")
    return t


def scored_map(pred: MapLike, shape: Shape | None) -> np.ndarray:
    """The prediction as a 2-D float64 array, resized to ``shape`` when given."""
    p = as_map(pred, "the prediction")
    if shape is not None:
        p = resize_to(p, as_shape(shape))
    return p.numpy()


def fixation_points(fix: Any, what: str = "fixations") -> np.ndarray:
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


def linear_indices(points: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
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


def fixated_pixels(fix: Any, shape: tuple[int, int], metric: str) -> np.ndarray:
    """Sorted unique linear indices of the fixated pixels (the binary fixation map); raises
    ``ValueError`` when there is none."""
    lin = np.unique(linear_indices(fixation_points(fix), shape, f"{metric}: fixations"))
    if lin.size == 0:
        raise ValueError(f"{metric}: the image has no fixations, so this location-based "
                         f"metric is undefined (SaliencyMeter skips such images and counts "
                         f"them in skipped_no_fixations)")
    return lin


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
    h, w = as_shape(shape)
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
    hm, wm = as_shape(from_shape, "from_shape")
    hn, wn = as_shape(to_shape, "to_shape")
    p = fixation_points(points, "rescale_points: points")
    linear_indices(p, (hm, wm), "rescale_points")
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


def single_channel(maps: torch.Tensor, what: str) -> torch.Tensor:
    """A batch of maps ``[N, 1, H, W]`` or ``[N, H, W]`` as ``[N, H, W]``; a ``ValueError``
    naming ``what`` for any other shape."""
    if maps.ndim == 4:
        if maps.shape[1] != 1:
            raise ValueError(f"{what}: predictions [N, C, H, W] must have C = 1, got "
                             f"shape {tuple(maps.shape)}")
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(f"{what}: predictions must be [N, 1, H, W] or [N, H, W], got "
                         f"shape {tuple(maps.shape)}")
    return maps


def target_parts(target: Any, i: int, what: str) -> tuple[Any, Any]:
    """``(density, fixations)`` of the ``i``-th target of a batch, or a ``ValueError`` naming
    ``what`` and saying what a target must hold."""
    if not isinstance(target, Mapping) or "density" not in target or "fixations" not in target:
        raise ValueError(f"{what}: target {i} must be a dict with 'density' [H, W] and "
                         f"'fixations' [k, 2], got {type(target).__name__}"
                         f"{sorted(target) if isinstance(target, Mapping) else ''}")
    return target["density"], target["fixations"]
