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
    """``stopped at epoch k`` (or ``stopped early``) when the trial's training ended before its
    budget: ``info.early_stopped`` (ASHA, with ``info.epochs``) or ``info.stopped_epoch`` (an
    early-stopping callback); None otherwise. ``info.epochs`` alone is a full training."""
    if result is None:
        return None
    info = result.info or {}
    epoch = info.get("stopped_epoch")
    if not info.get("early_stopped") and epoch is None:
        return None
    if epoch is None:
        epoch = info.get("epochs")
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
    and ``stopped`` (:func:`early_stop`: ``stopped at epoch k``, or None).
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
        })
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
    stops = any(row["stopped"] for row in rows)
    if stops:
        table.add_column("stopped", style="yellow", no_wrap=True)
    table.add_column("architecture", overflow="fold", min_width=24)
    for row in rows:
        table.add_row(
            str(row["rank"]), str(row["trial"]), row["arch_id"], format_metric(row["metric"]),
            *(format_metric(row["metrics"].get(m)) for m in metric_cols),
            *(format_cost(c, row["costs"].get(c)) for c in cost_cols),
            format_duration(row["duration_s"]), *([row["stopped"] or ""] if stops else []),
            row["arch"],
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
