"""Pareto dominance for objective vectors where every entry is larger-is-better."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nastk.core.objective import Objective
    from nastk.core.trial import Trial


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a_ >= b_) and np.any(a_ > b_))


def non_dominated_sort(points: np.ndarray) -> list[list[int]]:
    """Fronts of row indices: front 0 is non-dominated, front 1 is non-dominated once front 0 is
    removed, and so on (Deb et al.'s fast non-dominated sort)."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    if n == 0:
        return []
    ge = np.all(pts[:, None, :] >= pts[None, :, :], axis=2)
    gt = np.any(pts[:, None, :] > pts[None, :, :], axis=2)
    dom = ge & gt  # dom[i, j]: i dominates j
    counts = dom.sum(axis=0)  # how many dominate j
    fronts: list[list[int]] = []
    current = [int(i) for i in np.flatnonzero(counts == 0)]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in np.flatnonzero(dom[i]):
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(int(j))
        current = sorted(nxt)
    return fronts


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows."""
    pts = np.asarray(points, dtype=float)
    mask = np.zeros(len(pts), dtype=bool)
    if len(pts):
        mask[non_dominated_sort(pts)[0]] = True
    return mask


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front (boundary rows get inf)."""
    pts = np.asarray(points, dtype=float)
    n, m = pts.shape if pts.ndim == 2 else (len(pts), 0)
    dist = np.zeros(n)
    if n <= 2:
        dist[:] = np.inf
        return dist
    for k in range(m):
        order = np.argsort(pts[:, k], kind="stable")
        lo, hi = pts[order[0], k], pts[order[-1], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi == lo:
            continue
        dist[order[1:-1]] += (pts[order[2:], k] - pts[order[:-2], k]) / (hi - lo)
    return dist


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray,
                ref: Sequence[float]) -> float:
    """Volume of the region dominated by ``points`` and dominating ``ref`` (every entry
    larger-is-better; points not strictly better than ``ref`` everywhere add nothing). Exact:
    a sweep in two dimensions, slices along the last dimension above that (fine for the fronts
    of a search, a few hundred points in two or three objectives)."""
    r = np.asarray(ref, dtype=float).reshape(-1)
    pts = np.asarray(points, dtype=float).reshape(-1, r.size) if len(points) else \
        np.zeros((0, r.size))
    pts = pts[np.all(pts > r, axis=1)]
    if len(pts) == 0:
        return 0.0
    return _hv(pts[pareto_mask(pts)], r)


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    if ref.size == 1:
        return float(pts[:, 0].max() - ref[0])
    if ref.size == 2:
        area, top = 0.0, ref[1]
        for x, y in sorted(map(tuple, pts), key=lambda p: (-p[0], -p[1])):
            if y > top:
                area += (x - ref[0]) * (y - top)
                top = y
        return float(area)
    # slice along the last dimension: between consecutive levels, the (m-1)-dimensional
    # volume of the points at or above the upper level
    levels = np.unique(pts[:, -1])[::-1]
    volume = 0.0
    for i, level in enumerate(levels):
        below = levels[i + 1] if i + 1 < len(levels) else ref[-1]
        above = pts[pts[:, -1] >= level][:, :-1]
        volume += _hv(above[pareto_mask(above)], ref[:-1]) * (level - below)
    return float(volume)


def pareto_front(trials: Sequence[Trial], objective: Objective) -> list[Trial]:
    """The successful trials no other one dominates on the objective's metric and costs (the
    single best ones when it has no costs), by the first cost, then by metric, best first.
    Trials a scheduler cut short are left out unless the objective lets them on
    (:meth:`Objective.on_front`)."""
    scored = [(t, objective.vector(t.result)) for t in trials
              if t.result is not None and objective.on_front(t.result)]
    usable = [(t, v) for t, v in scored if v is not None]
    if not usable:
        return []
    mask = pareto_mask(np.array([v for _, v in usable], dtype=float))
    front = [(t, v) for (t, v), keep in zip(usable, mask, strict=True) if keep]
    front.sort(key=lambda tv: (tuple(-x for x in tv[1][1:]), -tv[1][0], tv[0].id))
    return [t for t, _ in front]
