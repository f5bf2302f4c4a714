"""Text for reports: numbers (counts, metrics, durations, costs), architectures, labels."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from nastk.core.objective import Objective
from nastk.space.architecture import Architecture

#: costs reported in this order (others follow alphabetically)
STANDARD_COSTS: tuple[str, ...] = ("params", "flops", "latency_ms")
#: axis / column labels of well-known costs, with units
COST_LABELS: dict[str, str] = {
    "params": "parameters",
    "flops": "FLOPs",
    "latency_ms": "latency (ms)",
}
#: short column headers of well-known costs
COST_HEADERS: dict[str, str] = {"params": "params", "flops": "FLOPs", "latency_ms": "latency ms"}


def format_count(x: float | None) -> str:
    """A count with an SI suffix: ``12.3K``, ``1.2M``, ``3.4G``; ``-`` for ``None``."""
    if x is None or not math.isfinite(x):
        return "-"
    sign = "-" if x < 0 else ""
    v = abs(float(x))
    if v < 1000:
        return f"{sign}{v:.0f}" if v == int(v) else f"{sign}{v:.3g}"
    for unit in ("K", "M", "G", "T", "P"):
        v /= 1000.0
        text = f"{v:.1f}"
        if float(text) < 1000 or unit == "P":
            return f"{sign}{text}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_metric(x: float | None) -> str:
    """A metric value with 4 decimals (``0.9312``); large values get fewer."""
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 1e5:
        return f"{x:.4g}"
    return f"{x:.4f}"


def format_duration(seconds: float | None) -> str:
    """Seconds as ``0.42s``, ``12.3s``, ``2m03s`` or ``1h02m``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.2f}s"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_cost(name: str, x: float | None) -> str:
    """A cost formatted by kind: counts with SI suffixes, latency with 2 decimals."""
    if x is None or not math.isfinite(x):
        return "-"
    if name in ("params", "flops", "macs"):
        return format_count(x)
    if name.endswith("_ms") or name.endswith("_s"):
        return f"{x:.2f}"
    return f"{x:.4g}"


def _value_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


Render = Callable[[Architecture], "str | None"]


def arch_text(arch: Architecture, max_len: int | None = None,
              render: Render | None = None) -> str:
    """The architecture as compact one-line text: ``render(arch)`` (a space's
    :meth:`~nastk.space.search_space.SearchSpace.render`) when given and not None, else e.g.
    ``depth=3 op=conv3x3 width=[16,32]``."""
    text = render(arch) if render is not None else None
    if text is None:
        text = " ".join(f"{k}={_value_text(v)}" for k, v in arch.items())
    if max_len is not None and len(text) > max_len:
        text = text[: max(0, max_len - 1)] + "…"
    return text


def _metric_label(objective: Objective) -> str:
    better = "higher" if objective.direction == "max" else "lower"
    return f"{objective.metric} ({better} is better)"


def _cost_label(cost: str) -> str:
    return COST_LABELS.get(cost, cost)


def _ordered_costs(names: Iterable[str]) -> list[str]:
    present = set(names)
    return [c for c in STANDARD_COSTS if c in present] + sorted(present - set(STANDARD_COSTS))
