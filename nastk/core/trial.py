"""A trial: one architecture's evaluation as recorded in a run's store."""

from __future__ import annotations

from dataclasses import dataclass

from nastk.core.result import Result, Status
from nastk.space.architecture import Architecture


@dataclass(frozen=True)
class Trial:
    """Row ``id`` of a run: the architecture, its status and (once finished) its result."""

    id: int
    arch: Architecture
    status: Status
    result: Result | None
    started: float
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.status in (Status.COMPLETE, Status.FAILED)
