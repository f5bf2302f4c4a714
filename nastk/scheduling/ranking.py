"""Which candidates of a rung go on: the order a scheduler promotes them in.

With one objective, by score (larger is better after the objective's direction); with costs in
the objective, as NSGA-II ranks a population: by non-dominated front, then by crowding
distance within a front (a candidate alone in its corner of the front first), so that a rung
keeps the trade-off front rather than the most accurate and most expensive candidates. Ties
keep arrival order. Failed candidates are never promoted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nastk.core.pareto import crowding_distance, non_dominated_sort

__all__ = ["promotion_order"]


def promotion_order(entries: Sequence[tuple[int, Sequence[float] | None]]) -> list[int]:
    """The ids of ``entries`` (``(id, objective vector)`` in arrival order; every entry of a
    vector larger-is-better; ``None`` for a failed candidate) in promotion order, failed ones
    left out."""
    valid = [(tid, tuple(float(v) for v in vec)) for tid, vec in entries if vec is not None]
    if not valid:
        return []
    points = np.array([vec for _, vec in valid], dtype=float)
    if points.shape[1] == 1:
        order = sorted(range(len(valid)), key=lambda i: (-points[i, 0], i))
        return [valid[i][0] for i in order]
    out: list[int] = []
    for front in non_dominated_sort(points):
        dist = crowding_distance(points[front])
        ranked = sorted(range(len(front)), key=lambda j: (-dist[j], front[j]))
        out.extend(valid[front[j]][0] for j in ranked)
    return out
