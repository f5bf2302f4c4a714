"""Predicted against measured: the trials on a run's latency front, timed on the device the
table was profiled on, with the error and the coverage of the predicted intervals.

The front is the run's Pareto front of its objective's metric against ``latency_ms`` (the
objective's own costs when it has ``latency_ms`` among them). Each trial's task model is built
from its architecture (latency does not depend on the weights) and timed with the table's back
end, threads, repeats and warm-up. The result goes into ``RUN_DIR/latency_check.json``, which
the report shows (:mod:`nastk.report.latency`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nastk.core.objective import Objective
from nastk.core.pareto import pareto_front
from nastk.core.trial import Trial
from nastk.core.weights import write_atomic
from nastk.latency.backends import make_backend
from nastk.latency.table import LatencyTable
from nastk.run import layout

__all__ = ["CHECK_FORMAT", "check_front", "describe_check", "latency_front", "summarize"]

CHECK_FORMAT = "nastk.latency_check/1"


def latency_front(trials: Sequence[Trial], objective: Objective) -> list[Trial]:
    """The run's front of its metric against ``latency_ms`` (the trials with a predicted
    ``latency_ms``)."""
    costs = objective.costs if "latency_ms" in objective.costs else ("latency_ms",)
    front_objective = objective.model_copy(update={"costs": tuple(costs)})
    return [t for t in pareto_front(list(trials), front_objective)
            if t.result is not None and "latency_ms" in t.result.costs]


def summarize(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Error and coverage over the measured points: MAPE, largest error, the share of measured
    latencies inside their predicted intervals, and Spearman's rho (3 points or more)."""
    pred = np.array([p["predicted_ms"] for p in points], dtype=float)
    meas = np.array([p["measured_ms"] for p in points], dtype=float)
    if not len(pred):
        return {"n": 0}
    err = np.abs(pred - meas) / meas * 100.0
    inside = [p["inside"] for p in points if p["inside"] is not None]
    out: dict[str, Any] = {"n": len(points), "mape": float(err.mean()),
                           "max_error": float(err.max()),
                           "coverage": (sum(inside) / len(inside)) if inside else None,
                           "spearman": None}
    if len(points) >= 3 and np.ptp(meas) > 0 and np.ptp(pred) > 0:
        from scipy.stats import spearmanr

        rho = float(spearmanr(pred, meas).statistic)
        out["spearman"] = rho if math.isfinite(rho) else None
    return out


def check_front(run_dir: Path, trials: Sequence[Trial], objective: Objective,
                table: LatencyTable, table_path: str, input_shape: Sequence[int],
                build_model: Callable[[Any], nn.Module], *,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Time the run's latency front on this device and write ``latency_check.json``; when this
    is not the table's device (another CPU, thread count or back end), write why instead, and
    the command to run on the device. Returns what was written."""
    front = latency_front(trials, objective)
    device = table.device
    doc: dict[str, Any] = {"format": CHECK_FORMAT, "table": table_path,
                           "metric": objective.metric,
                           "table_device": device, "level": table.correction.level,
                           "checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "front": len(front), "points": []}
    backend = None
    try:
        backend = make_backend(str(device.get("backend", "cpu")), int(device["threads"]),
                               table.repeats, table.warmup, table.rounds)
        differs = backend.same_device(device)
    except Exception as err:  # no CUDA here, no onnxruntime here, a table without threads
        differs = str(err)
    if differs is not None or backend is None:
        doc.update({"measured": False,
                    "reason": f"this is not the table's device ({differs})",
                    "command": f"nastk latency check {run_dir}"})
    else:
        doc["measured"] = True
        doc["device"] = backend.device()
        shape = tuple(int(s) for s in input_shape)
        timed = backend.measure_all([(build_model(t.arch), shape) for t in front],
                                    progress)
        for t, m in zip(front, timed, strict=True):
            assert t.result is not None
            lat = t.result.info.get("latency") or {}
            low, high = lat.get("low"), lat.get("high")
            predicted = float(t.result.costs["latency_ms"])
            doc["points"].append({
                "trial": t.id, "arch_id": t.arch.short_id,
                "metric": t.result.value(objective.metric), "predicted_ms": predicted,
                "low": low, "high": high, "measured_ms": m.ms, "spread": round(m.spread, 4),
                "busy": m.busy, "error": (predicted - m.ms) / m.ms * 100.0,
                "inside": None if low is None or high is None else bool(low <= m.ms <= high)})
        doc["summary"] = summarize(doc["points"])
    write_atomic(Path(run_dir) / layout.LATENCY_CHECK_JSON,
                 (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def describe_check(doc: dict[str, Any]) -> str:
    """One line on a check: its error and coverage, or why the front was not timed here."""
    if not doc.get("measured"):
        return (f"latency front not timed: {doc.get('reason')}; on the device run "
                f"`{doc.get('command')}`")
    summary = doc.get("summary") or {}
    if not summary.get("n"):
        return "latency front: no trial with a predicted latency_ms to time"
    cov = summary.get("coverage")
    return (f"latency front timed on this device: {summary['n']} trials, predicted vs "
            f"measured MAPE {summary['mape']:.1f} % (largest {summary['max_error']:.1f} %)"
            + (f", {cov * 100:.0f} % inside the {doc['level'] * 100:.0f} % intervals"
               if cov is not None else ""))
