"""What a search optimises: one primary metric with a direction, plus optional costs; and what
"better" and "best" mean under it, in one place for every part of nastk that picks a winner
(reports, comparisons, Self-KD's teacher epochs, a supernet training's best epoch)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.result import Result

T = TypeVar("T")


class HasPrimaryMetric(Protocol):
    """Anything that names a primary metric and its direction (a task)."""

    primary_metric: str
    direction: Literal["max", "min"]


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


class Objective(BaseModel):
    """The primary ``metric`` (maximised or minimised) and ``costs`` to minimise alongside it
    (multi-objective strategies use them; single-objective ones ignore them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="name of the metric in Result.metrics")
    direction: Literal["max", "min"] = "max"
    costs: tuple[str, ...] = Field(default=(), description="costs to minimise, e.g. ['flops']")
    cut_short_on_front: bool = Field(
        False, description="let trials a scheduler stopped early (ASHA) onto Pareto fronts; by "
        "default they are ranked and marked in tables but kept off fronts, their metrics being "
        "those of a shorter training")

    @classmethod
    def of_task(cls, task: HasPrimaryMetric) -> Objective:
        """The objective a task implies: its primary metric in its direction."""
        return cls(metric=task.primary_metric, direction=task.direction)

    def value(self, result: Result) -> float | None:
        """The metric in its own units; ``None`` for a failed result or a missing or
        non-finite value."""
        if not result.ok:
            return None
        return result.value(self.metric)

    def score(self, result: Result) -> float | None:
        """The metric oriented so that larger is better; ``None`` for a failed result."""
        v = self.value(result)
        if v is None:
            return None
        return v if self.direction == "max" else -v

    def vector(self, result: Result) -> tuple[float, ...] | None:
        """(score, -cost1, -cost2, ...): every entry larger-is-better; ``None`` if unusable."""
        s = self.score(result)
        if s is None:
            return None
        out = [s]
        for c in self.costs:
            v = result.value(c)
            if v is None:
                return None
            out.append(-v)
        return tuple(out)

    def on_front(self, result: Result) -> bool:
        """Whether ``result`` may stand on a Pareto front: not cut short by a scheduler
        (:attr:`Result.cut_short`), unless :attr:`cut_short_on_front` lets it."""
        return self.cut_short_on_front or not result.cut_short

    def better(self, a: float | None, b: float | None) -> bool:
        """Whether metric value ``a`` is strictly better than ``b`` (both in the metric's own
        units): larger under ``direction="max"``, smaller under ``"min"``. A missing value
        (``None``) or NaN is worse than any number: ``better(x, None)`` is true for every
        number ``x``, ``better(None, x)`` and ``better(nan, x)`` are false, and so are ties."""
        if a is None or math.isnan(a):
            return False
        if b is None or math.isnan(b):
            return True
        return a > b if self.direction == "max" else a < b

    @overload
    def best(self, items: Iterable[float | None], key: None = None) -> float | None: ...

    @overload
    def best(self, items: Iterable[T], key: Callable[[T], float | None]) -> T | None: ...

    def best(self, items: Iterable[T], key: Callable[[T], float | None] | None = None
             ) -> T | None:
        """The best of ``items`` by :meth:`better` on ``key(item)`` (default: the items are
        the values themselves); the first of equally good items; ``None`` when no item has a
        usable value (missing and NaN values never win)."""
        chosen: T | None = None
        chosen_value: float | None = None
        for item in items:
            v = item if key is None else key(item)
            if self.better(v, chosen_value):  # type: ignore[arg-type]
                chosen, chosen_value = item, v  # type: ignore[assignment]
        return chosen

    def ranked(self, items: Iterable[T], key: Callable[[T], float | None]) -> list[T]:
        """``items`` with a usable value (not missing, not NaN), best first by ``key(item)``;
        equally good items keep their order."""
        kept = [(v, item) for item in items if _usable(v := key(item))]
        kept.sort(key=lambda vi: float(vi[0]),  # type: ignore[arg-type]
                  reverse=self.direction == "max")
        return [item for _, item in kept]
