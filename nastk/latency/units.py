"""How a space describes its networks for a latency table: as units, the pieces whose
latencies add up to a network's (a stem, one block with one kernel and expand ratio at one
input size, a final conv).

A space that supports latency tables has ``latency_units(input_shape)`` returning a
:class:`LatencyUnits`: every unit any of its architectures can use at that input shape (with
a stable key and a way to build it alone), and, for an architecture, the keys of the units it
runs, in order. Units with equal shapes share a key, so a table measures each once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from nastk.core.errors import NastkError

__all__ = ["LatencyUnit", "LatencyUnits", "latency_units"]


@dataclass(frozen=True)
class LatencyUnit:
    """One piece of a network: ``key`` names it (what it is and the input size it runs at),
    ``input_shape`` is its input without the batch (``(C, H, W)``), ``build()`` makes it as a
    plain module (any weights: latency does not depend on them)."""

    key: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module]


@runtime_checkable
class LatencyUnits(Protocol):
    """A space's networks as units, at one input shape."""

    def units(self) -> list[LatencyUnit]:
        """Every unit an architecture can use, each key once."""
        ...

    def keys(self, arch: Any) -> list[str]:
        """The keys of the units ``arch``'s network runs, in order (a key may repeat)."""
        ...


def latency_units(space: Any, input_shape: Sequence[int]) -> LatencyUnits:
    """``space``'s units at ``input_shape``; a :class:`NastkError` naming the spaces that have
    them when ``space`` has none."""
    make = getattr(space, "latency_units", None)
    units = make(tuple(int(s) for s in input_shape)) if callable(make) else None
    if units is None:
        raise NastkError(f"search space {getattr(space, 'name', space)!r} cannot be profiled "
                         "into a latency table: it does not describe its networks as units "
                         "(ofa_mbv3 and ofa_mbv3_full do); measure latency_ms on the host "
                         "instead (evaluator latency: true)")
    return units
