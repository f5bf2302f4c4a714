"""The resource an evaluator declares (epochs, steps, a table's fidelities), and the evaluator
interface a scheduler drives: evaluate an architecture up to a resource, continuing from its
own partial training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from nastk.core.result import Result
from nastk.space.architecture import Architecture

__all__ = ["Fidelity", "MultiFidelityEvaluator", "fidelity_of"]


@dataclass(frozen=True)
class Fidelity:
    """What an evaluator can spend on a candidate.

    ``name`` is the unit (``epochs``, ``steps``); ``max`` the full budget (the resource
    :meth:`Evaluator.evaluate` spends); ``min`` the least that makes sense. ``levels``, when
    set, are the only resources the evaluator accepts (a table's fidelities: NAS-Bench-201's 12
    and 200 epochs), ascending, the last one ``max``. ``resumable``: the evaluator continues a
    candidate from the partial training it saved at a lower resource (a train evaluator); a
    candidate promoted to a higher resource is charged only the difference either way.
    """

    name: str
    max: float
    min: float = 1.0
    levels: tuple[float, ...] | None = None
    resumable: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max) and self.max > 0):
            raise ValueError(f"fidelity {self.name!r}: max must be positive, got {self.max}")
        if not (0 < self.min <= self.max):
            raise ValueError(f"fidelity {self.name!r}: need 0 < min <= max, got min "
                             f"{self.min}, max {self.max}")
        if self.levels is not None:
            lv = tuple(float(v) for v in self.levels)
            if not lv or list(lv) != sorted(set(lv)) or lv[-1] != float(self.max) or lv[0] <= 0:
                raise ValueError(f"fidelity {self.name!r}: levels must be positive, ascending, "
                                 f"distinct and end at max ({self.max}); got {self.levels}")
            object.__setattr__(self, "levels", lv)

    def check(self, resource: float) -> float:
        """``resource`` if the evaluator accepts it, else a ``ValueError`` naming what it
        accepts."""
        r = float(resource)
        if self.levels is not None:
            if r not in self.levels:
                raise ValueError(f"resource {resource:g} {self.name}: this evaluator answers at "
                                 f"{', '.join(f'{v:g}' for v in self.levels)} {self.name} only")
        elif not (self.min <= r <= self.max):
            raise ValueError(f"resource {resource:g} {self.name} outside [{self.min:g}, "
                             f"{self.max:g}]")
        return r


@runtime_checkable
class MultiFidelityEvaluator(Protocol):
    """An evaluator a scheduler can drive: it declares its :class:`Fidelity` and evaluates an
    architecture up to a given resource.

    ``evaluate_at(arch, resource, checkpoint=..., state=...)`` spends ``resource`` units in all
    on ``arch`` and returns the metrics reached there (``info["resource"]`` set). When
    ``state`` names a file that exists (written by an earlier call at a lower resource), the
    evaluation continues from it rather than starting over; when ``state_out`` is given and the
    evaluator is resumable, the partial training reached is written there (atomically), for a
    later, higher rung. At ``fidelity.max`` the result equals :meth:`evaluate`'s.
    """

    @property
    def fidelity(self) -> Fidelity: ...

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result: ...

    def evaluate_at(self, arch: Architecture, resource: float, *,
                    checkpoint: Path | None = None, state: Path | None = None,
                    state_out: Path | None = None) -> Result: ...


def fidelity_of(evaluator: object) -> Fidelity | None:
    """The evaluator's declared :class:`Fidelity`, or ``None`` when it cannot be driven by a
    scheduler (no ``evaluate_at``)."""
    if not callable(getattr(evaluator, "evaluate_at", None)):
        return None
    fid = getattr(evaluator, "fidelity", None)
    return fid if isinstance(fid, Fidelity) else None
