"""The report's *Predicted latency against measured* section, from ``latency_check.json``
(:mod:`nastk.latency.front_check`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nastk.core.trial import Trial
from nastk.report.formatting import format_metric
from nastk.run import layout

__all__ = ["latency_section"]


def _ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def latency_section(run_dir: Path, md_table: Any, trials: Sequence[Trial] = ()) -> list[str]:
    """The section's lines (none when the run has no check and no predicted latency);
    ``md_table(header, rows, align)`` renders a markdown table."""
    path = Path(run_dir) / layout.LATENCY_CHECK_JSON
    if not path.is_file():
        tables = sorted({str((t.result.info.get("latency") or {}).get("table"))
                         for t in trials if t.result is not None
                         and (t.result.info.get("latency") or {}).get("predicted")})
        if not tables:
            return []
        return ["", "## Predicted latency against measured", "",
                f"`latency_ms` was predicted from the latency table {', '.join(tables)}; the "
                "run's front has not been timed on the device. Run `nastk latency check "
                f"{run_dir}` there to add predicted against measured here."]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return ["", "## Predicted latency against measured", "",
                f"`{layout.LATENCY_CHECK_JSON}` could not be read ({err})."]
    device = doc.get("table_device") or {}
    where = ", ".join(f"{k} {device[k]}" for k in ("backend", "cpu", "gpu", "threads")
                      if device.get(k) is not None)
    lines = ["", "## Predicted latency against measured", "",
             f"`latency_ms` was predicted from the latency table `{doc.get('table')}` "
             f"({where}): the table's sum of the network's units through a correction fitted "
             f"on whole networks, with a {float(doc.get('level', 0.9)) * 100:.0f} % interval."]
    if not doc.get("measured"):
        command = doc.get("command", "nastk latency check RUN_DIR")
        return [*lines, "", f"The front was not timed: {doc.get('reason')}. Run `{command}` "
                "on that device to fill this section."]
    points = doc.get("points") or []
    if not points:
        return [*lines, "", "No trial on the front has a predicted latency."]
    summary = doc.get("summary") or {}
    cov = summary.get("coverage")
    rho = summary.get("spearman")
    lines += ["", f"The {len(points)} trials of the front (metric against latency) timed on "
              f"the device when the search ended ({doc.get('checked', '?')}): mean absolute "
              f"error {summary.get('mape', float('nan')):.1f} % (largest "
              f"{summary.get('max_error', float('nan')):.1f} %)"
              + (f", {cov * 100:.0f} % of the measured latencies inside their intervals"
                 if cov is not None else "")
              + (f", Spearman's rho {rho:.3f}" if rho is not None else "") + ".", ""]
    rows = [(p["trial"], f"`{p['arch_id']}`", format_metric(p.get("metric")),
             _ms(p["predicted_ms"]), f"[{_ms(p.get('low'))}, {_ms(p.get('high'))}]",
             _ms(p["measured_ms"]) + (" (busy)" if p.get("busy") else ""),
             f"{p['error']:+.1f} %", {True: "yes", False: "no", None: "-"}[p.get("inside")])
            for p in points]
    lines += md_table(["trial", "arch id", str(doc.get("metric", "metric")), "predicted ms",
                       "interval", "measured ms", "error", "inside"], rows,
                      ["r", "l", "r", "r", "l", "r", "r", "l"])
    if any(p.get("busy") for p in points):
        lines += ["", "(busy): other work shared the cores while it was timed; its measured "
                  "latency is less reliable."]
    return lines
