"""The correction from a table's sum to a whole network's latency, with an interval.

A table sums the latencies of units measured alone; a whole network runs them back to back,
with the task's head, the framework's per-call overhead and whatever the runtime fuses or
caches between them, none of which the sum sees. :class:`LatencyCorrection` fits
``measured = intercept + slope * table_sum`` by least squares on a handful of whole networks
measured on the device, and turns its leave-one-out errors into an interval: each network's
ratio ``measured / predicted`` by the fit made without it, and the interval of a new network
is its prediction times the ratios' split-conformal quantiles (for ``n`` networks and level
``1 - a``, the ``floor((n + 1) a / 2)``-th smallest and the ``ceil((n + 1)(1 - a / 2))``-th
smallest ratio), which covers a new network's measured latency with probability about
``level`` when the networks were drawn like the ones it is asked about. With too few networks
for the level, the smallest and largest ratios are used and :attr:`achievable_level` says how
much the interval can claim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nastk.core.errors import NastkError

__all__ = ["LatencyCorrection"]


def _fit(table: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``(intercept, slope)`` of the least-squares line; a line through the origin with the
    median ratio when the slope would not be positive (too few or too alike networks)."""
    if len(table) >= 2 and float(np.ptp(table)) > 0:
        slope, intercept = np.polyfit(table, measured, 1)
        if slope > 0:
            return float(intercept), float(slope)
    return 0.0, float(np.median(measured / table))


class LatencyCorrection(BaseModel):
    """``measured ≈ intercept_ms + slope * table_ms``, and the interval's ratio bounds."""

    model_config = ConfigDict(extra="forbid")

    intercept_ms: float
    slope: float = Field(gt=0)
    ratio_low: float = Field(gt=0)
    ratio_high: float = Field(gt=0)
    level: float = Field(gt=0, lt=1)
    n: int = Field(ge=3, description="whole networks it was fitted on")
    loo_mape: float = Field(description="mean absolute percentage error of the leave-one-out "
                            "predictions (%)")

    @classmethod
    def fit(cls, table_ms: Sequence[float], measured_ms: Sequence[float],
            level: float = 0.9) -> LatencyCorrection:
        """Fit on the table sums and the measured latencies of the same networks."""
        table = np.asarray(table_ms, dtype=float)
        measured = np.asarray(measured_ms, dtype=float)
        n = len(table)
        if n < 3 or len(measured) != n:
            raise NastkError(f"a latency correction needs at least 3 measured networks, got "
                             f"{n}; raise --networks")
        if not (np.all(np.isfinite(table)) and np.all(table > 0)
                and np.all(np.isfinite(measured)) and np.all(measured > 0)):
            raise NastkError("latency correction: table sums and measured latencies must be "
                             "positive and finite")
        if not 0 < level < 1:
            raise NastkError(f"latency interval level must be in (0, 1), got {level}")
        intercept, slope = _fit(table, measured)
        ratios = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            a, b = _fit(table[keep], measured[keep])
            ratios[i] = measured[i] / max(a + b * table[i], 1e-9)
        ratios.sort()
        alpha = 1.0 - level
        eps = 1e-9  # 1 - 0.9 is 0.0999...98 in floating point: ranks must not slip by one
        lo = min(max(math.floor((n + 1) * alpha / 2 + eps) - 1, 0), n - 1)
        hi = min(max(math.ceil((n + 1) * (1 - alpha / 2) - eps) - 1, 0), n - 1)
        return cls(intercept_ms=intercept, slope=slope, ratio_low=float(ratios[lo]),
                   ratio_high=float(ratios[hi]), level=level, n=n,
                   loo_mape=float(np.mean(np.abs(1.0 / ratios - 1.0)) * 100.0))

    @property
    def achievable_level(self) -> float:
        """The coverage the interval can claim with :attr:`n` networks: ``level``, or
        ``1 - 2 / (n + 1)`` when there are too few for it."""
        return min(self.level, 1.0 - 2.0 / (self.n + 1))

    def predict(self, table_ms: float) -> tuple[float, float, float]:
        """``(mean, low, high)`` latency in ms of a network whose table sum is ``table_ms``."""
        mean = max(self.intercept_ms + self.slope * float(table_ms), 1e-6)
        return mean, mean * self.ratio_low, mean * self.ratio_high
