"""Predicted latency of any architecture of a profiled space: the table's sum of the units the
architecture runs, through the table's correction, as a mean and an interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.latency.table import LatencyTable, read_table
from nastk.latency.units import LatencyUnits, latency_units

__all__ = ["LatencyPredictor", "Prediction", "space_record"]


@dataclass(frozen=True)
class Prediction:
    """``ms`` (the mean) and the interval ``[low, high]`` at the table's ``level``, and the
    table's plain sum ``table_ms``."""

    ms: float
    low: float
    high: float
    table_ms: float
    level: float

    def info(self, table: str | None = None) -> dict[str, Any]:
        """The prediction for a result's ``info["latency"]``."""
        return {"predicted": True, "low": round(self.low, 4), "high": round(self.high, 4),
                "table_ms": round(self.table_ms, 4), "level": self.level,
                **({"table": table} if table else {})}


def space_record(space: Any) -> dict[str, Any]:
    """``{name, options}`` of a built space, every option at its value (what a table records
    and is checked against)."""
    base = getattr(space, "base", None)
    while base is not None:  # a constrained or pruned space: the space underneath
        space, base = base, getattr(base, "base", None)
    options = getattr(space, "options", None)
    dumped = options.model_dump(mode="json") if isinstance(options, BaseModel) else {}
    return {"name": getattr(space, "name", type(space).__name__), "options": dumped}


class LatencyPredictor:
    """Predicts ``latency_ms`` of ``space``'s architectures at ``input_shape`` from ``table``
    (checked to be a table of this space and input shape)."""

    def __init__(self, table: LatencyTable, space: Any, input_shape: Sequence[int], *,
                 source: str | None = None, where: str = "latency.table") -> None:
        shape = [int(s) for s in input_shape]
        record = space_record(space)
        label = f"{where} {source}" if source else where
        if table.space != record:
            raise ConfigError(
                f"{label} was profiled for space {table.space.get('name')!r} with options "
                f"{table.space.get('options')}, not this run's {record['name']!r} with "
                f"{record['options']}; profile this space: `nastk latency profile CONFIG`")
        if list(table.input_shape) != shape:
            raise ConfigError(f"{label} was profiled at input shape {table.input_shape}, this "
                              f"run's task has {shape}; profile it at the task's shape")
        self.table = table
        self.source = source
        self.units: LatencyUnits = latency_units(space, shape)
        self.space = space

    @classmethod
    def load(cls, path: str | Path, space: Any, input_shape: Sequence[int],
             where: str = "latency.table") -> LatencyPredictor:
        """The predictor of the table file ``path`` (validated: see :func:`read_table`)."""
        return cls(read_table(path, where), space, input_shape, source=str(path), where=where)

    def table_ms(self, arch: Any) -> float:
        """The table's plain sum for ``arch``."""
        keys = self.units.keys(arch)
        try:
            return self.table.table_ms(keys)
        except KeyError as err:
            raise InvalidArchitectureError(
                f"latency table {self.source or ''}: no timing for unit {err.args[0]!r} of "
                f"this architecture; the table is incomplete, profile it again") from None

    def predict(self, arch: Any) -> Prediction:
        """The predicted latency of ``arch``: mean and interval."""
        total = self.table_ms(arch)
        mean, low, high = self.table.correction.predict(total)
        return Prediction(mean, low, high, total, self.table.correction.level)

    def apply(self, arch: Any, costs: dict[str, float], info: dict[str, Any]) -> None:
        """Put ``arch``'s predicted ``latency_ms`` into ``costs`` and the prediction (interval,
        table sum, the table's file name) into ``info["latency"]`` (an evaluator's result)."""
        p = self.predict(arch)
        costs["latency_ms"] = p.ms
        info["latency"] = p.info(Path(self.source).name if self.source else None)

    def __call__(self, arch: Any) -> float:
        """The predicted mean latency (ms) of ``arch``."""
        return self.predict(arch).ms
