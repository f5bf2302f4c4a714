"""A run's results as data: the best-so-far curve, the leaderboard (and its terminal table),
the Pareto front. Values are always in the metric's own units."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from rich.table import Table

from nastk.core.objective import Objective
from nastk.core.pareto import pareto_mask
from nastk.core.result import Result
from nastk.core.trial import Trial
from nastk.report.formatting import (
    COST_HEADERS,
    Render,
    _ordered_costs,
    arch_text,
    format_cost,
    format_duration,
    format_metric,
)
from nastk.run.storage import RungRecord


def _by_id(trials: Iterable[Trial]) -> list[Trial]:
    return sorted(trials, key=lambda t: t.id)


def _is_evaluation(trial: Trial) -> bool:
    """A trial counts as an evaluation once it has a result or a final status."""
    return trial.result is not None or trial.done


def _successes(trials: Iterable[Trial], objective: Objective) -> list[tuple[Trial, Result]]:
    """Trials (sorted by id) whose result is complete and carries the objective's metric."""
    out = []
    for t in _by_id(trials):
        if t.result is not None and objective.score(t.result) is not None:
            out.append((t, t.result))
    return out


def best_so_far(trials: Iterable[Trial], objective: Objective) -> list[tuple[int, float]]:
    """(evaluation number from 1, best metric so far) for each evaluation in id order.

    Failed evaluations count but never improve the curve; evaluations before the first
    success are omitted; trials still running (no result) are not evaluations. Values are in
    the metric's own units (not negated for ``direction="min"``).
    """
    curve: list[tuple[int, float]] = []
    best: float | None = None
    n = 0
    for t in _by_id(trials):
        if not _is_evaluation(t):
            continue
        n += 1
        value = objective.value(t.result) if t.result is not None else None
        if objective.better(value, best):
            best = value
        if best is not None:
            curve.append((n, best))
    return curve


def _failed_evaluations(trials: Iterable[Trial], objective: Objective) -> list[int]:
    """Evaluation numbers (as in :func:`best_so_far`) of evaluations without a usable score."""
    out: list[int] = []
    n = 0
    for t in _by_id(trials):
        if not _is_evaluation(t):
            continue
        n += 1
        if t.result is None or objective.score(t.result) is None:
            out.append(n)
    return out


def early_stop(result: Result | None) -> str | None:
    """``stopped at epoch k`` (or ``stopped at resource r``, ``stopped early``) when the trial's
    training ended before its budget: ``info.early_stopped`` (a scheduler, with
    ``info.resource``; Ray Tune's ASHA of older runs, with ``info.epochs``) or
    ``info.stopped_epoch`` (an early-stopping callback); None otherwise. ``info.epochs`` alone
    is a full training."""
    if result is None:
        return None
    info = result.info or {}
    epoch = info.get("stopped_epoch")
    if not info.get("early_stopped") and epoch is None:
        return None
    if epoch is None:
        epoch = info.get("epochs")
    if epoch is None and info.get("resource") is not None:
        unit = info.get("resource_unit")
        return (f"stopped at {float(info['resource']):g} {unit}" if unit
                else f"stopped at resource {float(info['resource']):g}")
    return f"stopped at epoch {epoch}" if epoch is not None else "stopped early"


#: the note under a leaderboard that has early-stopped trials
EARLY_STOP_NOTE = ("stopped at epoch k: training ended early (an early-stopping callback or "
                   "the ASHA scheduler); the metric is that of the last epoch trained.")


def leaderboard(trials: Iterable[Trial], objective: Objective, top: int = 10,
                render: Render | None = None) -> list[dict]:
    """The ``top`` successful trials, best first by the objective (ties: lower id first).

    Each row holds ``rank`` (from 1), ``trial`` (id), ``arch_id`` (short id), ``metric`` (the
    objective's metric value), ``metrics`` (the other metrics), ``costs`` (params, flops,
    latency_ms, ... where present, in that order), ``duration_s``, ``arch`` (compact text)
    ``stopped`` (:func:`early_stop`: ``stopped at epoch k``, or None) and ``resource`` (how
    far a scheduler trained it, ``info.resource``; None for a trial run without one).
    """
    # the input is in id order and ranked() keeps the order of ties: the earlier trial first
    ranked = objective.ranked(_successes(trials, objective), key=lambda tr: objective.value(tr[1]))
    rows: list[dict] = []
    for rank, (t, r) in enumerate(ranked[: max(0, top)], start=1):
        rows.append({
            "rank": rank,
            "trial": t.id,
            "arch_id": t.arch.short_id,
            "metric": r.value(objective.metric),
            "metrics": {k: v for k, v in r.metrics.items() if k != objective.metric},
            "costs": {c: r.costs[c] for c in _ordered_costs(r.costs)},
            "duration_s": r.duration_s,
            "arch": arch_text(t.arch, render=render),
            "stopped": early_stop(r),
            "resource": _scheduled_resource(r),
        })
    return rows


def format_resource(x: float | None) -> str:
    """A resource level as text (``27``, ``0.5``); ``-`` for None."""
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _scheduled_resource(result: Result) -> float | None:
    """How far a scheduler trained the trial (``info.resource`` of a result a scheduler
    finished, i.e. with ``info.scheduler``); None for a trial run without one."""
    info = result.info or {}
    if "scheduler" not in info or info.get("resource") is None:
        return None
    return float(info["resource"])


def scheduled_best(trials: Iterable[Trial], objective: Objective) -> Trial | None:
    """The incumbent as a scheduled search chooses it: among the successful trials trained
    furthest (``info.resource``; a trial without one counts as fully trained), the best by
    the objective (the first one on ties)."""
    ok = [t for t, _ in _successes(trials, objective)]
    if not ok:
        return None

    def resource(t: Trial) -> float:
        assert t.result is not None
        r = t.result.info.get("resource")
        return float("inf") if r is None else float(r)

    top = max(resource(t) for t in ok)
    return objective.best([t for t in ok if resource(t) == top],
                          key=lambda t: objective.value(t.result))  # type: ignore[arg-type]


class RungRow(NamedTuple):
    """One rung of a scheduled run, summed over its candidates (see :func:`rung_table`)."""

    rung: int
    resource: float
    #: candidates with a rung row here
    reached: int
    #: candidates with a row at the next rung too (None at the last rung)
    promoted: int | None
    #: candidates a rung decision stopped here (their final result's ``info.scheduler`` is
    #: ``stopped`` and ``info.rung`` is this rung)
    stopped: int
    #: rung rows here whose result failed
    failed: int
    #: candidates that ended here otherwise: the run ended while they waited or were queued
    #: (``info.scheduler`` ``budget``), or they have no final result yet
    unfinished: int
    #: the best value of the objective's metric among the rung's successful rows
    best: float | None
    #: the resource spent by the rung's rows (each row's own cost)
    spent: float


def rung_table(rungs: Iterable[RungRecord], trials: Iterable[Trial],
               objective: Objective) -> list[RungRow]:
    """Per rung index (ascending), what the run's rung rows record: candidates that reached
    it, were promoted from it, stopped, failed or were left there, the best metric value and
    the resource spent there. A candidate that completed the last rung counts as reached
    only."""
    by_rung: dict[int, list[RungRecord]] = {}
    for r in rungs:
        by_rung.setdefault(r.rung, []).append(r)
    if not by_rung:
        return []
    last = max(by_rung)
    finals = {t.id: t.result for t in trials if t.result is not None}
    rows: list[RungRow] = []
    for k in sorted(by_rung):
        here = by_rung[k]
        ids = {r.trial_id for r in here}
        nxt = {r.trial_id for r in by_rung.get(k + 1, [])}
        failed = {r.trial_id for r in here if not r.result.ok}
        stopped = {tid for tid in ids - failed - nxt
                   if (f := finals.get(tid)) is not None
                   and f.info.get("scheduler") == "stopped" and f.info.get("rung") == k}
        promoted = len(ids & nxt) if k < last else None
        completed = {tid for tid in ids - failed if k == last} if promoted is None else set()
        unfinished = len(ids - failed - nxt - stopped - completed)
        best = objective.best([objective.value(r.result) for r in here if r.result.ok])
        rows.append(RungRow(k, max(r.resource for r in here), len(ids), promoted, len(stopped),
                            len(failed), unfinished, best, float(sum(r.cost for r in here))))
    return rows


def _columns(rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    names: list[str] = []
    for row in rows:
        names.extend(k for k in row[key] if k not in names)
    return _ordered_costs(names) if key == "costs" else names


def leaderboard_table(trials: Iterable[Trial], objective: Objective, top: int = 10,
                      title: str = "Leaderboard", other_metrics: bool | None = None,
                      render: Render | None = None) -> Table:
    """The leaderboard as a :class:`rich.table.Table` for the terminal (the objective's metric,
    costs and architecture; ``other_metrics`` adds a column per further metric; ``None``
    adds them when there are at most three, e.g. a tabular benchmark's test accuracy, but not
    a segmentation task's per-class IoUs)."""
    rows = leaderboard(trials, objective, top=top, render=render)
    metric_cols = _columns(rows, "metrics")
    if not (other_metrics or (other_metrics is None and len(metric_cols) <= 3)):
        metric_cols = []
    cost_cols = _columns(rows, "costs")
    arrow = "↑" if objective.direction == "max" else "↓"
    table = Table(title=title, show_lines=False)
    table.add_column("#", justify="right", style="bold")
    table.add_column("trial", justify="right")
    table.add_column("arch id", style="cyan", no_wrap=True)
    table.add_column(f"{objective.metric} {arrow}", justify="right", style="bold green",
                     no_wrap=True)
    for m in metric_cols:
        table.add_column(m, justify="right")
    for c in cost_cols:
        table.add_column(COST_HEADERS.get(c, c), justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    scheduled = any(row["resource"] is not None for row in rows)
    if scheduled:
        table.add_column("resource", justify="right", no_wrap=True)
    stops = any(row["stopped"] for row in rows)
    if stops:
        table.add_column("stopped", style="yellow", no_wrap=True)
    table.add_column("architecture", overflow="fold", min_width=24)
    for row in rows:
        table.add_row(
            str(row["rank"]), str(row["trial"]), row["arch_id"], format_metric(row["metric"]),
            *(format_metric(row["metrics"].get(m)) for m in metric_cols),
            *(format_cost(c, row["costs"].get(c)) for c in cost_cols),
            format_duration(row["duration_s"]),
            *([format_resource(row["resource"])] if scheduled else []),
            *([row["stopped"] or ""] if stops else []), row["arch"],
        )
    if not rows:
        table.caption = "no successful trials yet"
    elif stops:
        table.caption = EARLY_STOP_NOTE
    return table


class ParetoPoints(NamedTuple):
    """Successful trials that have the cost, their (cost, metric) and the front's mask."""

    trials: list[Trial]
    cost: np.ndarray
    metric: np.ndarray
    mask: np.ndarray


def pareto_points(trials: Iterable[Trial], objective: Objective,
                  cost: str = "flops") -> ParetoPoints:
    """(cost, metric) of the successful trials that have ``cost``, and the Pareto-front mask.

    The front minimises the cost and optimises the metric in the objective's direction; metric
    values are in the metric's own units. Trials a scheduler cut short are drawn but never on
    the front unless the objective lets them (:meth:`Objective.on_front`). Unpacks as
    ``trials, cost, metric, mask``.
    """
    kept: list[Trial] = []
    xs: list[float] = []
    ys: list[float] = []
    for t, r in _successes(trials, objective):
        c = r.value(cost)
        m = r.value(objective.metric)
        if c is None or m is None:
            continue
        kept.append(t)
        xs.append(c)
        ys.append(m)
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    score = y if objective.direction == "max" else -y
    mask = np.zeros(len(x), dtype=bool)
    eligible = np.array([objective.on_front(t.result) for t in kept], dtype=bool)
    if eligible.any():
        mask[eligible] = pareto_mask(np.column_stack([score, -x])[eligible])
    return ParetoPoints(kept, x, y, mask)
