"""The evaluator interface, and an evaluator for plain Python objective functions."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from nastk.evaluation.result import Result
from nastk.space.architecture import Architecture


@runtime_checkable
class Evaluator(Protocol):
    """Turns an architecture into a :class:`Result`. When ``checkpoint`` is given and the
    evaluator trains weights, it saves the model's ``state_dict`` there."""

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result: ...


def format_error(err: BaseException) -> str:
    """``Type: message`` plus the innermost frame, short enough for a table cell."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(err).__name__}: {err}{where}"


class FunctionEvaluator:
    """Evaluates with a function ``arch -> metrics`` (or ``-> (metrics, costs)``).

    For synthetic objectives, tabular benchmarks and tests. An exception or a non-finite
    metric becomes a failed Result carrying the error.
    """

    def __init__(self, fn: Callable[[Architecture], Mapping[str, float]
                                    | tuple[Mapping[str, float], Mapping[str, float]]]) -> None:
        self.fn = fn

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        t0 = time.perf_counter()
        try:
            out = self.fn(arch)
        except Exception as err:
            return Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
        metrics, costs = out if isinstance(out, tuple) else (out, {})
        bad = {k: v for k, v in metrics.items() if v != v or v in (float("inf"), float("-inf"))}
        if bad:
            return Result.failed(f"non-finite metrics {bad}", dict(costs),
                                 time.perf_counter() - t0)
        return Result.complete(dict(metrics), dict(costs), time.perf_counter() - t0)
