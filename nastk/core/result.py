"""The outcome of evaluating one architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    """Trial status as stored: ``running`` rows that never finished were lost to a crash;
    ``paused``: a scheduler's candidate between rungs (see :mod:`nastk.scheduling`)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"


@dataclass(frozen=True)
class Result:
    """Metrics, costs and status of one evaluation.

    ``metrics`` hold the task's scores (e.g. ``accuracy``); ``costs`` hold what the architecture
    costs (``params``, ``flops``, ``latency_ms``); a failed result carries ``error``.
    """

    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def complete(cls, metrics: dict[str, float], costs: dict[str, float] | None = None,
                 duration_s: float = 0.0, info: dict[str, Any] | None = None) -> Result:
        return cls(Status.COMPLETE, {k: float(v) for k, v in metrics.items()},
                   {k: float(v) for k, v in (costs or {}).items()}, None, duration_s, info or {})

    @classmethod
    def failed(cls, error: str, costs: dict[str, float] | None = None,
               duration_s: float = 0.0, metrics: dict[str, float] | None = None) -> Result:
        return cls(Status.FAILED, {k: float(v) for k, v in (metrics or {}).items()},
                   {k: float(v) for k, v in (costs or {}).items()}, error, duration_s, {})

    @property
    def ok(self) -> bool:
        return self.status is Status.COMPLETE

    @property
    def cut_short(self) -> bool:
        """Whether a scheduler (ASHA, median stopping) stopped the training before its budget:
        ``info.early_stopped`` with the epochs run (``info.epochs``), so its metrics are those
        of a shorter training. An early-stopping callback's stop (``info.stopped_epoch``) is
        not cut short: the training ended by its own rule and its metrics are final."""
        return bool(self.info.get("early_stopped")) and self.info.get("stopped_epoch") is None

    def value(self, name: str) -> float | None:
        """A metric or cost by name (metrics first); ``None`` if absent or not finite."""
        v = self.metrics.get(name, self.costs.get(name))
        if v is None or not math.isfinite(v):
            return None
        return float(v)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "metrics": self.metrics, "costs": self.costs,
                "error": self.error, "duration_s": self.duration_s, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(Status(d["status"]), dict(d.get("metrics") or {}), dict(d.get("costs") or {}),
                   d.get("error"), float(d.get("duration_s") or 0.0), dict(d.get("info") or {}))
