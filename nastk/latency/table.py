"""A latency table file: a device's measured unit latencies for one space at one input shape,
the whole networks measured to fit its correction, and the correction itself.

Written by ``nastk latency profile`` (:func:`nastk.latency.profile.profile_table`) as JSON::

    {"format": "nastk.latency_table/1", "space": {"name", "options"},
     "input_shape": [C, H, W], "task": {...} | null, "device": {"backend", "cpu", ...},
     "repeats", "warmup", "rounds", "created",
     "units": {key: {"ms", "spread", "busy"}},
     "networks": [{"arch", "table_ms", "measured_ms", "spread"}],
     "correction": {"intercept_ms", "slope", "ratio_low", "ratio_high", "level", "n", ...}}

:func:`read_table` validates a file once and says what is wrong with it and how to make a good
one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nastk.core.errors import ConfigError
from nastk.core.options import format_validation_error
from nastk.core.weights import write_atomic
from nastk.latency.correction import LatencyCorrection

__all__ = ["TABLE_FORMAT", "LatencyTable", "NetworkTiming", "UnitTiming", "read_table"]

TABLE_FORMAT = "nastk.latency_table/1"


class UnitTiming(BaseModel):
    """One unit's latency on the device."""

    model_config = ConfigDict(extra="forbid")

    ms: float = Field(gt=0)
    spread: float = Field(ge=0, description="interquartile range of the timed passes over "
                          "their median")
    busy: bool = Field(False, description="even the best attempt's spread said other work "
                       "shared the device")


class NetworkTiming(BaseModel):
    """A whole network measured on the device, with its table sum."""

    model_config = ConfigDict(extra="forbid")

    arch: dict[str, Any]
    table_ms: float = Field(gt=0)
    measured_ms: float = Field(gt=0)
    spread: float = Field(ge=0)


class LatencyTable(BaseModel):
    """A latency table (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["nastk.latency_table/1"] = TABLE_FORMAT
    space: dict[str, Any] = Field(description="{name, options}: the space profiled, every "
                                  "option at its value")
    input_shape: list[int] = Field(min_length=1)
    task: dict[str, Any] | None = Field(None, description="the task whose model the whole "
                                        "networks were (its head is in them)")
    device: dict[str, Any]
    repeats: int = Field(ge=1)
    warmup: int = Field(ge=0)
    rounds: int = Field(20, ge=1, description="interleaved rounds the repeats were spread over")
    created: str
    units: dict[str, UnitTiming] = Field(min_length=1)
    networks: list[NetworkTiming] = Field(min_length=3)
    correction: LatencyCorrection

    def table_ms(self, keys: list[str]) -> float:
        """The sum of the units ``keys`` (a :class:`KeyError` names the first one missing)."""
        units = self.units
        return float(sum(units[k].ms for k in keys))

    def save(self, path: str | Path) -> Path:
        """Write the table to ``path`` (atomically)."""
        return write_atomic(path, (json.dumps(self.model_dump(mode="json"), indent=1)
                                   + "\n").encode())


def read_table(path: str | Path, where: str = "latency.table") -> LatencyTable:
    """The table in ``path``; a :class:`ConfigError` naming ``where``, the file and the fix
    when it is missing, not JSON or not a latency table."""
    path = Path(path)
    fix = "profile one with `nastk latency profile CONFIG --out FILE`"
    if not path.is_file():
        raise ConfigError(f"{where}: {path} does not exist; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{where}: {path} is not a JSON latency table ({err}); {fix}") \
            from None
    if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{where}: {path} is not a nastk latency table (format {got!r}, "
                          f"expected {TABLE_FORMAT!r}); {fix}")
    try:
        return LatencyTable.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"{where} {path}", schema=LatencyTable)
                          + f"; {fix}") from None
