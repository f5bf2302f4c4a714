"""A continuous dimension: :class:`Float`, a real number in a range (a learning rate, a weight
decay), and the grid through which strategies that need finitely many options see it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nastk.core.errors import InvalidArchitectureError
from nastk.space.dimensions import Dimension

__all__ = ["Float"]


class Float(Dimension):
    """A real number in ``[low, high]`` (``log=True``: spread on a log scale, ``low > 0``; a
    learning rate, a weight decay). Values are rounded to ``digits`` significant digits, so an
    architecture's key is stable. :meth:`size` is infinite.

    Sampling draws uniformly on the (log) scale; :meth:`mutate` moves by a Gaussian step of a
    tenth of the range on that scale, kept inside it. The decision view, what strategies that
    need finitely many options read (the RL controller's tokens, :meth:`neighbours`), is a
    documented discretisation: ``grid`` points evenly spaced on the scale, ``low`` and ``high``
    included; :meth:`to_decisions` takes the nearest one, so such strategies propose grid
    values only. Bayesian optimisation reads the real value instead (a continuous input of its
    kernel, :mod:`nastk.strategies.bayesian`)."""

    def __init__(self, name: str, low: float, high: float, log: bool = False,
                 grid: int = 16, digits: int = 6) -> None:
        if not name:
            raise ValueError("a dimension needs a non-empty name")
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"dimension {name!r}: need finite low < high, got low={low}, "
                             f"high={high}")
        if log and low <= 0:
            raise ValueError(f"dimension {name!r}: a log-scale range needs low > 0, got {low}")
        if grid < 2 or digits < 1:
            raise ValueError(f"dimension {name!r}: need grid >= 2 and digits >= 1, got "
                             f"grid={grid}, digits={digits}")
        self.name, self.low, self.high = name, float(low), float(high)
        self.log, self.grid, self.digits = bool(log), int(grid), int(digits)

    # -- the scale ----------------------------------------------------------------------------
    def to_unit(self, value: float) -> float:
        """``value``'s place in [0, 1] on the dimension's scale."""
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high)
                                                             - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(u, 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return self._round(min(max(v, self.low), self.high))

    def _round(self, v: float) -> float:
        return float(f"{v:.{self.digits}g}")

    # -- the decision view (a grid) -------------------------------------------------------------
    def decisions(self) -> list[int]:
        return [self.grid]

    def to_decisions(self, value: Any) -> list[int]:
        return [round(self.to_unit(float(value)) * (self.grid - 1))]

    def from_decisions(self, indices: Sequence[int]) -> Any:
        return self.from_unit(int(indices[0]) / (self.grid - 1))

    # -- checks and variation -------------------------------------------------------------------
    def validate(self, value: Any) -> Any:
        if isinstance(value, (int, float, np.integer, np.floating)) and \
                not isinstance(value, bool) and math.isfinite(float(value)):
            v = self._round(float(value))
            tol = 1e-9 * max(abs(self.low), abs(self.high), 1.0)
            if self.low - tol <= v <= self.high + tol:
                return min(max(v, self.low), self.high)
        raise InvalidArchitectureError(f"dimension {self.name!r}: {value!r} not in "
                                       f"{self.describe()}")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.from_unit(float(rng.random()))

    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        u = self.to_unit(float(value))
        for _ in range(100):
            moved = self.from_unit(u + float(rng.normal(0.0, 0.1)))
            if moved != value:
                return moved
        return value

    def neighbours(self, value: Any) -> list[Any]:
        """The grid points just below and just above ``value`` (the discretisation's
        neighbours; see the class docstring)."""
        u = self.to_unit(float(value)) * (self.grid - 1)
        below, above = math.floor(u - 1e-9), math.ceil(u + 1e-9)
        out = [self.from_unit(i / (self.grid - 1)) for i in (below, above)
               if 0 <= i < self.grid]
        return [v for v in dict.fromkeys(out) if v != value]

    def encode(self, value: Any) -> list[float]:
        return [self.to_unit(float(value))]

    def encoding_size(self) -> int:
        return 1

    def size(self) -> float:  # type: ignore[override]
        """Infinitely many values."""
        return math.inf

    def describe(self) -> str:
        return (f"real numbers in [{self.low:g}, {self.high:g}]"
                + (" (log scale)" if self.log else ""))

    def spec(self) -> dict[str, Any]:
        return {"kind": "float", "name": self.name, "low": self.low, "high": self.high,
                "log": self.log, "grid": self.grid, "digits": self.digits}
