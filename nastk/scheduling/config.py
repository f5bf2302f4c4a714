"""``scheduler:`` in a search config (and ``scheduler=`` of :func:`nastk.create_search`): which
scheduler, its reduction factor and its rungs, resolved against the resource the evaluator
declares."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nastk.core.objective import Objective
from nastk.scheduling.fidelity import Fidelity
from nastk.scheduling.scheduler import Scheduler

__all__ = ["SchedulerConfig", "build_scheduler", "resolve_rungs"]


class SchedulerConfig(BaseModel):
    """How far each candidate trains, and which continue. ``kind``: ``none`` (every candidate
    gets the evaluator's full budget), ``sh`` (synchronous successive halving), ``asha``
    (asynchronous successive halving), ``hyperband`` (brackets of either, ``brackets``).
    ``scheduler: asha`` is short for ``scheduler: {kind: asha}``.

    The rungs are ``rungs`` when given; else the evaluator's levels (a table's fidelities) from
    ``min_resource`` up; else ``min_resource`` times powers of ``reduction_factor`` below the
    full budget, then the full budget (1, 3, 9, 27 epochs for 27 epochs and the defaults).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["none", "sh", "asha", "hyperband"] = Field(
        "none", description="none | sh (synchronous successive halving) | asha (asynchronous) "
        "| hyperband")
    reduction_factor: float = Field(3.0, gt=1.0, description="eta: keep the best 1/eta of "
                                                             "each rung")
    min_resource: float | None = Field(
        None, gt=0.0, description="the first rung (default: the evaluator's least, e.g. 1 "
        "epoch, or its first level)")
    max_resource: float | None = Field(
        None, gt=0.0, description="the full budget, for a function evaluator f(arch, resource) "
        "that declares none (a train evaluator's is its epochs or steps)")
    rungs: list[float] | None = Field(
        None, min_length=2, description="explicit resource levels, ascending, the last one "
        "the full budget")
    brackets: Literal["sync", "async"] = Field(
        "sync", description="hyperband: run each bracket as synchronous successive halving "
        "(sync) or as ASHA (async)")
    initial: int | None = Field(
        None, ge=1, description="sh: candidates per bracket (default eta ** (rungs - 1))")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _consistent(self) -> SchedulerConfig:
        if self.rungs is not None:
            if any(b <= a for a, b in pairwise(self.rungs)):
                raise ValueError(f"rungs must be ascending and distinct, got {self.rungs}")
            if self.rungs[0] <= 0:
                raise ValueError(f"rungs must be positive, got {self.rungs}")
        if self.initial is not None and self.kind != "sh":
            raise ValueError(f"initial is an option of kind 'sh', not {self.kind!r}")
        if self.brackets == "async" and self.kind != "hyperband":
            raise ValueError(f"brackets is an option of kind 'hyperband', not {self.kind!r}")
        return self

    @property
    def active(self) -> bool:
        return self.kind != "none"


def resolve_rungs(config: SchedulerConfig, fidelity: Fidelity) -> list[float]:
    """The rungs ``config`` asks for over ``fidelity``; a ``ValueError`` naming the field when
    the evaluator cannot answer at one of them."""
    if config.rungs is not None:
        rungs = [float(r) for r in config.rungs]
        if rungs[-1] != fidelity.max:
            raise ValueError(f"scheduler.rungs: the last rung must be the evaluator's full "
                             f"budget, {fidelity.max:g} {fidelity.name} (got {rungs[-1]:g})")
        for r in rungs:
            try:
                fidelity.check(r)
            except ValueError as err:
                raise ValueError(f"scheduler.rungs: {err}") from None
        return rungs
    low = config.min_resource if config.min_resource is not None else (
        fidelity.levels[0] if fidelity.levels is not None else fidelity.min)
    if fidelity.levels is not None:
        rungs = [v for v in fidelity.levels if v >= low]
        if len(rungs) < 2:
            raise ValueError(f"scheduler.min_resource {low:g}: the evaluator answers at "
                             f"{', '.join(f'{v:g}' for v in fidelity.levels)} {fidelity.name}; "
                             "a scheduler needs at least two of them")
        return rungs
    if not fidelity.min <= low < fidelity.max:
        raise ValueError(f"scheduler.min_resource {low:g} must lie in [{fidelity.min:g}, "
                         f"{fidelity.max:g}) {fidelity.name}, below the full budget")
    integral = float(low).is_integer() and float(fidelity.max).is_integer()
    rungs, r = [], float(low)
    while r < fidelity.max - 1e-9:
        v = float(round(r)) if integral else r
        if not rungs or v > rungs[-1]:
            rungs.append(v)
        r *= config.reduction_factor
    if rungs[-1] >= fidelity.max:
        rungs.pop()
    rungs.append(float(fidelity.max))
    if len(rungs) < 2:
        raise ValueError(f"scheduler: only one rung fits between min_resource {low:g} and the "
                         f"full budget {fidelity.max:g} {fidelity.name}; lower min_resource "
                         "or the reduction_factor")
    if math.isclose(rungs[0], rungs[-1]):
        raise ValueError("scheduler: the first rung is the full budget")
    return rungs


def build_scheduler(config: SchedulerConfig | None, fidelity: Fidelity | None,
                    objective: Objective) -> Scheduler | None:
    """The scheduler ``config`` asks for, or ``None`` for ``kind: none``; a ``ValueError``
    (naming the field) when the evaluator declares no resource to schedule."""
    if config is None or not config.active:
        return None
    if fidelity is None:
        raise ValueError(f"scheduler.kind {config.kind!r} needs an evaluator that declares a "
                         "resource (the train evaluator's epochs or steps, a multi-fidelity "
                         "table, or a function f(arch, resource) with scheduler.max_resource); "
                         "this one evaluates at one fidelity only; set scheduler: none")
    return Scheduler(config.kind, resolve_rungs(config, fidelity), objective,  # type: ignore[arg-type]
                     reduction_factor=config.reduction_factor, brackets=config.brackets,
                     initial=config.initial)
