"""The markdown report of a run: ``report.md`` with its plots beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.core.trial import Trial
from nastk.report.formatting import (
    COST_HEADERS,
    Render,
    _cost_label,
    arch_text,
    format_cost,
    format_duration,
    format_metric,
)
from nastk.report.latency import latency_section
from nastk.report.plots import (
    plot_best_so_far,
    plot_learning_curves,
    plot_pareto,
    plot_strategy_curves,
)
from nastk.report.results import (
    EARLY_STOP_NOTE,
    _by_id,
    _columns,
    _successes,
    early_stop,
    format_resource,
    leaderboard,
    pareto_points,
    rung_table,
    scheduled_best,
)
from nastk.run import layout
from nastk.run.storage import RungRecord

#: how many characters of a failed trial's error the report keeps
ERROR_CHARS = 200


def _md_cell(value: Any) -> str:
    text = str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text.strip() or " "


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
              align: Sequence[str] | None = None) -> list[str]:
    aligns = list(align) if align is not None else ["l"] * len(header)
    rule = ["---:" if a == "r" else "---" for a in aligns]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "| " + " | ".join(rule) + " |"]
    lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    return lines


def _truncate(text: str, limit: int = ERROR_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fmt_meta(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _strategy_section(curves: Mapping[str, Sequence[float]], run_dir: Path) -> list[str]:
    png = run_dir / layout.STRATEGY_PNG
    curves = {k: list(v) for k, v in curves.items() if len(v)}
    if not curves:
        png.unlink(missing_ok=True)
        return []
    lines = ["", "## Strategy learning", ""]
    rows = []
    for name, v in curves.items():
        third = max(1, len(v) // 3)
        first, last = float(np.mean(v[:third])), float(np.mean(v[-third:]))
        rows.append((name, len(v), format_metric(v[0]), format_metric(v[-1]),
                     format_metric(first), format_metric(last),
                     f"{last - first:+.4g}"))
    lines += _md_table(["curve", "updates", "first", "last", "mean of first third",
                        "mean of last third", "change"], rows,
                       ["l", "r", "r", "r", "r", "r", "r"])
    plot_strategy_curves(curves, png)
    return [*lines, "", "![strategy learning](strategy.png)"]


#: what the *Rungs* table's columns count
RUNGS_NOTE = ("Each rung trains its candidates up to the rung's resource. *reached*: candidates "
              "evaluated at the rung; *promoted*: those evaluated at the next rung too; "
              "*stopped*: those a rung decision ended there; *failed*: evaluations that "
              "failed there; *left*: those that waited there when the run ended (or have no "
              "final result yet); *spent*: the resource the rung's evaluations cost (a "
              "promoted candidate pays only the difference to its previous rung). Candidates "
              "at the last rung completed their full budget.")

#: what the leaderboard's resource column means
RESOURCE_NOTE = ("resource: how far the scheduler trained the trial; a value below the last "
                 "rung is a result at lower fidelity.")


def _rungs_section(rungs: Sequence[RungRecord], trials: Sequence[Trial], objective: Objective,
                   run_dir: Path) -> list[str]:
    """The *Rungs* table and ``learning_curves.png`` of a scheduled run (nothing, and no stale
    plot, without rungs)."""
    png = run_dir / layout.LEARNING_CURVES_PNG
    table = rung_table(rungs, trials, objective)
    if not table:
        png.unlink(missing_ok=True)
        return []
    arrow = "↑" if objective.direction == "max" else "↓"
    lines = ["", "## Rungs", ""]
    lines += _md_table(
        ["rung", "resource", "reached", "promoted", "stopped", "failed", "left",
         f"best {objective.metric} {arrow}", "spent"],
        [(row.rung, format_resource(row.resource), row.reached,
          "-" if row.promoted is None else row.promoted, row.stopped, row.failed,
          row.unfinished, format_metric(row.best), format_resource(row.spent))
         for row in table],
        ["r", "r", "r", "r", "r", "r", "r", "r", "r"])
    total = sum(row.spent for row in table)
    lines += ["", f"{len(rungs)} rung evaluations spent {format_resource(total)} in all. "
              + RUNGS_NOTE, ""]
    plot_learning_curves(rungs, trials, objective, png)
    return [*lines, f"![learning curves]({layout.LEARNING_CURVES_PNG})"]


#: the task's drawing of the best trials' predictions, written beside the report

#: how the report's cost columns were measured
COSTS_NOTE = ("Costs (params, FLOPs, latency) are measured on the network alone: a task's "
              "post-processing (e.g. box decoding and non-maximum suppression) is not "
              "included. FLOPs count one fused multiply-add as one flop (fvcore). Latency is "
              "the median of batch-1 CPU forward passes with the candidate's torch threads; "
              "each trial's conditions (threads, spread, load) are in its result's "
              "`info.latency`.")


def _busy_latency(trials: Sequence[Trial]) -> list[Trial]:
    """Trials whose latency was measured while other work shared the cores."""
    return [t for t in trials if t.result is not None
            and (t.result.info.get("latency") or {}).get("busy")]


def write_report(run_dir: Path, trials: Iterable[Trial], objective: Objective, *, title: str,
                 meta: Mapping[str, Any], top: int = 10, cost: str | None = None,
                 curves: Mapping[str, Sequence[float]] | None = None,
                 render: Render | None = None,
                 interrupted: Mapping[str, Any] | None = None,
                 rungs: Sequence[RungRecord] | None = None) -> Path:
    """Write ``run_dir/report.md`` with ``best_so_far.png`` and ``pareto.png`` beside it.

    ``interrupted`` (``{"signal", "at", "finished"}``, the store's ``interrupted`` meta) marks
    the report of a session that a signal stopped: its first lines say so.

    ``rungs`` (the store's :meth:`~nastk.run.storage.Storage.rungs`, a scheduled run's) adds
    a *Rungs* section: per rung, the candidates that reached it, were promoted, stopped,
    failed or were left there, the best value and the resource spent, with
    ``learning_curves.png`` (each candidate's metric against resource). The leaderboard shows
    each trial's resource whenever a scheduler finished its trials. Without rungs the report
    is as before.

    The Pareto section uses ``cost`` (default: the objective's first cost, else ``flops``); when
    no successful trial reports it, the plot is skipped and the report says so. Trials without
    a result (running or interrupted) are counted but never ranked. Returns the report's path.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trials = _by_id(trials)
    cost = cost or (objective.costs[0] if objective.costs else "flops")
    counts = {s: sum(1 for t in trials if t.status is s) for s in Status}
    successes = _successes(trials, objective)
    durations = [t.result.duration_s for t in trials if t.result is not None]
    rows = leaderboard(trials, objective, top=top, render=render)
    best = objective.best(successes, key=lambda tr: objective.value(tr[1]))
    if rungs:  # a scheduled run's incumbent is among the candidates trained furthest
        incumbent = scheduled_best(trials, objective)
        best = None if incumbent is None else (incumbent, incumbent.result)

    lines: list[str] = [f"# {title}", ""]
    if interrupted:
        lines += [f"**Interrupted** by {interrupted.get('signal', 'a signal')} at "
                  f"{interrupted.get('at', '?')} with {interrupted.get('finished', '?')} "
                  "finished trials: this report covers only them. Trials that were running "
                  "are recorded as interrupted and run again when the search is resumed "
                  "(`--resume`).", ""]
    lines += ["## Summary", ""]
    summary: list[tuple[str, str]] = [
        ("trials", str(len(trials))),
        ("complete", str(counts[Status.COMPLETE])),
        ("failed", str(counts[Status.FAILED])),
    ]
    stopped = [early_stop(t.result) for t in trials if t.status is Status.COMPLETE]
    stopped = [x for x in stopped if x is not None]
    if stopped:
        by_epoch = Counter(stopped)
        summary.append(("complete, stopped early (scheduler)", f"{len(stopped)} ("
                        + ", ".join(f"{n} {k}" for k, n in sorted(by_epoch.items())) + ")"))
    busy = _busy_latency(trials)
    if busy:
        summary.append(("latency measured on a busy machine",
                        f"{len(busy)} trials (the timed passes' interquartile range exceeded "
                        "`info.latency.max_spread` of their median: their latency_ms is not "
                        "reliable; measure them again on an idle machine)"))
    if counts[Status.RUNNING]:
        summary.append(("running (no result yet)", str(counts[Status.RUNNING])))
    if counts[Status.INTERRUPTED]:
        summary.append(("interrupted", str(counts[Status.INTERRUPTED])))
    unusable = counts[Status.COMPLETE] - len(successes)
    if unusable > 0:
        summary.append((f"complete without {objective.metric}", str(unusable)))
    if best is not None:
        trial, result = best
        summary.append((f"best {objective.metric} ({objective.direction})",
                        f"{format_metric(result.value(objective.metric))} (trial {trial.id}, "
                        f"`{trial.arch.short_id}`)"))
    else:
        summary.append((f"best {objective.metric} ({objective.direction})",
                        "none: no successful trial"))
    summary.append(("total evaluation time", format_duration(sum(durations))))
    summary.append(("mean evaluation time",
                    format_duration(sum(durations) / len(durations)) if durations else "-"))
    lines += _md_table(["", "value"], summary, ["l", "r"])
    if meta:
        lines += ["", "### Run", ""]
        lines += _md_table(["setting", "value"], [(k, _fmt_meta(v)) for k, v in meta.items()])

    # best so far
    lines += ["", "## Best so far", ""]
    plot_best_so_far(trials, objective, run_dir / layout.BEST_SO_FAR_PNG)
    if not successes:
        lines += ["No trial has completed successfully yet, so there is no best-so-far curve.", ""]
    lines += ["![best so far](best_so_far.png)"]

    lines += _strategy_section(curves or {}, run_dir)

    # leaderboard
    lines += ["", f"## Leaderboard (top {top})" if len(successes) > top else "## Leaderboard", ""]
    if rows:
        metric_cols = _columns(rows, "metrics")
        cost_cols = _columns(rows, "costs")
        arrow = "↑" if objective.direction == "max" else "↓"
        stops = any(r["stopped"] for r in rows)
        scheduled = any(r["resource"] is not None for r in rows)
        header = ["#", "trial", "arch id", f"{objective.metric} {arrow}", *metric_cols,
                  *(COST_HEADERS.get(c, c) for c in cost_cols), "time",
                  *(["resource"] if scheduled else []),
                  *(["stopped early"] if stops else []), "architecture"]
        align = ["r", "r", "l", "r", *["r"] * (len(metric_cols) + len(cost_cols)), "r",
                 *(["r"] if scheduled else []), *(["l"] if stops else []), "l"]
        body = [
            [r["rank"], r["trial"], f"`{r['arch_id']}`", format_metric(r["metric"]),
             *(format_metric(r["metrics"].get(m)) for m in metric_cols),
             *(format_cost(c, r["costs"].get(c)) for c in cost_cols),
             format_duration(r["duration_s"]),
             *([format_resource(r["resource"])] if scheduled else []),
             *([r["stopped"] or ""] if stops else []), f"`{r['arch']}`"]
            for r in rows
        ]
        lines += _md_table(header, body, align)
        if scheduled:
            lines += ["", RESOURCE_NOTE]
        if stops:
            lines += ["", EARLY_STOP_NOTE]
        lines += ["", COSTS_NOTE]
        terms = [m for m in metric_cols if m.startswith("train_loss_")]
        if terms:
            lines += ["", "`train_loss` is the sum of the task's loss terms ("
                      + ", ".join(f"`{t}`" for t in terms) + "), each the mean over the last "
                      "epoch of training."]
    else:
        lines += ["No successful trials: nothing to rank."]

    lines += _rungs_section(rungs or [], trials, objective, run_dir)

    # pareto front
    lines += ["", f"## Pareto front: {objective.metric} vs {_cost_label(cost)}", ""]
    pts = pareto_points(trials, objective, cost=cost)
    pareto_png = run_dir / layout.PARETO_PNG
    if len(pts.trials):
        plot_pareto(trials, objective, pareto_png, cost=cost)
        front = sorted((i for i in range(len(pts.trials)) if pts.mask[i]),
                       key=lambda i: (pts.cost[i], pts.trials[i].id))
        lines += [f"{len(front)} of {len(pts.trials)} successful trials are on the front "
                  f"(lower {_cost_label(cost)}, "
                  f"{'higher' if objective.direction == 'max' else 'lower'} "
                  f"{objective.metric}).", ""]
        lines += _md_table(
            ["trial", "arch id", _cost_label(cost), objective.metric, "architecture"],
            [(pts.trials[i].id, f"`{pts.trials[i].arch.short_id}`",
              format_cost(cost, float(pts.cost[i])), format_metric(float(pts.metric[i])),
              f"`{arch_text(pts.trials[i].arch, render=render)}`") for i in front],
            ["r", "l", "r", "r", "l"])
        lines += ["", "![pareto front](pareto.png)"]
    else:
        pareto_png.unlink(missing_ok=True)  # never leave a stale plot from an earlier report
        why = "no successful trials" if not successes else f"no successful trial reports {cost!r}"
        lines += [f"Skipped: {why}, so there is no Pareto plot."]

    lines += latency_section(run_dir, _md_table, trials)

    # predictions drawn by the task (dense tasks: image, ground truth, the best subnets)
    if (run_dir / layout.PREDICTIONS_PNG).is_file():
        lines += ["", "## Predictions of the best trials", "",
                  "Validation images, their ground truth, and the predictions of the best "
                  "trials (columns, best first).", "", f"![predictions]({layout.PREDICTIONS_PNG})"]

    # failed trials
    failed = [t for t in trials if t.status is Status.FAILED
              or (t.result is not None and t.result.status is Status.FAILED)]
    lines += ["", f"## Failed trials ({len(failed)})", ""]
    if failed:
        lines += _md_table(
            ["trial", "arch id", "time", "error"],
            [(t.id, f"`{t.arch.short_id}`",
              format_duration(t.result.duration_s) if t.result is not None else "-",
              _truncate((t.result.error if t.result is not None else None) or "(no error text)"))
             for t in failed],
            ["r", "l", "r", "l"])
    else:
        lines += ["None."]

    # unfinished trials
    failed_ids = {t.id for t in failed}
    unfinished = [t for t in trials if t.result is None and t.id not in failed_ids]
    if unfinished:
        lines += ["", f"## Unfinished trials ({len(unfinished)})", ""]
        lines += _md_table(["trial", "arch id", "status", "architecture"],
                           [(t.id, f"`{t.arch.short_id}`", t.status.value,
                             f"`{arch_text(t.arch, render=render)}`") for t in unfinished],
                           ["r", "l", "l", "l"])

    path = run_dir / layout.REPORT_MD
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
