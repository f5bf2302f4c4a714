"""What a search optimises: one primary metric with a direction, plus optional costs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.result import Result


class Objective(BaseModel):
    """The primary ``metric`` (maximised or minimised) and ``costs`` to minimise alongside it
    (multi-objective strategies use them; single-objective ones ignore them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="name of the metric in Result.metrics")
    direction: Literal["max", "min"] = "max"
    costs: tuple[str, ...] = Field(default=(), description="costs to minimise, e.g. ['flops']")

    def score(self, result: Result) -> float | None:
        """The metric oriented so that larger is better; ``None`` for a failed result."""
        if not result.ok:
            return None
        v = result.value(self.metric)
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
