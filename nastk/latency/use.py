"""``latency:`` in a search config: predict ``latency_ms`` from a device's latency table
instead of timing every candidate on the host."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LatencyUse"]


class LatencyUse(BaseModel):
    """``latency: {table: FILE}``: every candidate's ``latency_ms`` is the table's prediction
    (mean; the interval goes into ``info.latency``), so latency can be an objective cost and a
    constraint (``constraints: {latency_ms: {max: X}}``) without running anything."""

    model_config = ConfigDict(extra="forbid")

    table: Path = Field(description="a latency table written by `nastk latency profile` for "
                        "this space and the task's input shape")
    measure_front: bool = Field(
        True, description="when the search ends, time its latency front on this machine "
        "(when the table was profiled on it) and put predicted against measured in the "
        "report; elsewhere, run `nastk latency check RUN_DIR` on the device")
