"""The evaluator interface, and an evaluator for plain Python objective functions."""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nastk.core.errors import RunStoppingError
from nastk.core.result import Result
from nastk.scheduling.fidelity import Fidelity
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
        except RunStoppingError:  # a full disk, an unreadable data file: the run stops
            raise
        except Exception as err:
            return Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
        try:
            metrics, costs = _metrics_and_costs(out)
        except TypeError as err:
            return Result.failed(f"{_name(self.fn)}: {err}", duration_s=time.perf_counter() - t0)
        bad = {k: v for k, v in metrics.items() if v != v or v in (float("inf"), float("-inf"))}
        if bad:
            return Result.failed(f"non-finite metrics {bad}", dict(costs),
                                 time.perf_counter() - t0)
        return Result.complete(dict(metrics), dict(costs), time.perf_counter() - t0)


    def identity(self) -> dict[str, Any]:
        """What this evaluator is, for a run's identity: the function's ``module:name``."""
        return {"kind": "function", "function": _name(self.fn)}


class ResourceFunctionEvaluator(FunctionEvaluator):
    """Evaluates with a function ``(arch, resource) -> metrics`` (or ``(metrics, costs)``) at
    the resource a scheduler picks: a synthetic or tabular multi-fidelity objective. It keeps
    no partial state (``fidelity.resumable`` is false): a promoted candidate is evaluated
    afresh at the higher resource and charged the difference."""

    def __init__(self, fn: Callable[..., Any], fidelity: Fidelity) -> None:
        super().__init__(fn)
        self.fidelity = fidelity

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        return self.evaluate_at(arch, self.fidelity.max, checkpoint=checkpoint)

    def evaluate_at(self, arch: Architecture, resource: float, *,
                    checkpoint: Path | None = None, state: Path | None = None,
                    state_out: Path | None = None) -> Result:
        r = self.fidelity.check(resource)
        fn = self.fn
        result = FunctionEvaluator(lambda a: fn(a, r)).evaluate(arch)
        return Result(result.status, result.metrics, result.costs, result.error,
                      result.duration_s, {**result.info, "resource": r})

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "fidelity": {"name": self.fidelity.name,
                                                   "max": self.fidelity.max,
                                                   "min": self.fidelity.min,
                                                   "levels": self.fidelity.levels}}


#: what :func:`as_evaluator` accepts, in words (for error messages)
EVALUATOR_EXPECTED = ("an evaluator (an object with evaluate(arch, checkpoint=None) -> Result, "
                      "e.g. nastk.evaluation.train.TrainEvaluator) or a function arch -> "
                      "{metric: value} or ({metric: value}, {cost: value})")


def as_evaluator(obj: object, where: str = "evaluator") -> Evaluator:
    """``obj`` as an :class:`Evaluator`: an evaluator as it is, a plain function ``arch ->
    metrics`` (or ``(metrics, costs)``) wrapped in a :class:`FunctionEvaluator`. Anything else,
    or a function that cannot be called with one architecture, is refused with a
    :class:`TypeError` that says what was expected (``where`` names the argument)."""
    if isinstance(obj, Evaluator):
        return obj
    if callable(obj):
        try:
            inspect.signature(obj).bind(None)
        except TypeError:
            raise TypeError(f"{where}: {_name(obj)} cannot be called with one architecture; "
                            f"expected {EVALUATOR_EXPECTED}") from None
        except ValueError:  # a builtin without a signature: let it try
            pass
        return FunctionEvaluator(obj)  # type: ignore[arg-type]
    raise TypeError(f"{where}: got {type(obj).__name__} {obj!r:.60}; expected "
                    f"{EVALUATOR_EXPECTED}")


def evaluator_identity(evaluator: object) -> dict[str, Any]:
    """What an evaluator is, as JSON data for a run's identity: its own ``identity()`` when it
    has one, else its class."""
    own = getattr(evaluator, "identity", None)
    if callable(own):
        return dict(own())
    cls = type(evaluator)
    return {"kind": "object", "class": f"{cls.__module__}.{cls.__qualname__}"}


def _name(fn: Callable[..., object]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}:{name}" if module else name


def _numbers(what: str, value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping of names to numbers, got "
                        f"{type(value).__name__} {value!r:.60}")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise TypeError(f"{what}: keys must be names (str), got {k!r}")
        number = isinstance(v, (int, float)) or hasattr(v, "__float__")
        if isinstance(v, bool) or not number:
            raise TypeError(f"{what}: {k!r} must be a number, got {type(v).__name__} {v!r:.40}")
        out[k] = float(v)  # type: ignore[arg-type]
    return out


def _metrics_and_costs(out: object) -> tuple[dict[str, float], dict[str, float]]:
    """What an evaluator function returned, checked: ``metrics`` or ``(metrics, costs)``."""
    expected = "return {metric: value} or ({metric: value}, {cost: value})"
    if isinstance(out, tuple):
        if len(out) != 2:
            raise TypeError(f"returned a tuple of {len(out)} items; {expected}")
        return _numbers("metrics", out[0]), _numbers("costs", out[1])
    try:
        return _numbers("metrics", out), {}
    except TypeError as err:
        raise TypeError(f"{err}; {expected}") from None
