"""PNG plots of a run: best so far, Pareto front, strategies compared, strategy learning.

Plots are drawn on standalone :class:`matplotlib.figure.Figure` objects with the Agg canvas, so
nothing touches pyplot's global figure registry or needs a display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nastk.objective import Objective
from nastk.report.formatting import _cost_label, _metric_label, format_count
from nastk.report.results import (
    _by_id,
    _failed_evaluations,
    _is_evaluation,
    best_so_far,
    pareto_points,
)
from nastk.trial import Trial


def _new_figure(width: float = 7.0, height: float = 4.5) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3, linewidth=0.6)
    return fig, ax


def _save(fig: Figure, path: Path | str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    fig.clear()  # a standalone Figure is not registered with pyplot; this frees its artists
    return out


def _message(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            fontsize=11, color="0.4")


def plot_best_so_far(trials: Iterable[Trial], objective: Objective, path: Path | str,
                     label: str | None = None) -> Path:
    """Write a PNG of the best metric so far against the evaluation number.

    Each successful evaluation is a faded dot; failed evaluations are ``x`` markers along the
    bottom of the axes (the legend says so).
    """
    trials = _by_id(trials)
    curve = best_so_far(trials, objective)
    failed = _failed_evaluations(trials, objective)
    fig, ax = _new_figure()
    # every successful evaluation, in evaluation order
    xs: list[int] = []
    ys: list[float] = []
    n = 0
    for t in trials:
        if not _is_evaluation(t):
            continue
        n += 1
        if t.result is not None and objective.score(t.result) is not None:
            xs.append(n)
            ys.append(float(t.result.value(objective.metric)))  # type: ignore[arg-type]
    if xs:
        ax.scatter(xs, ys, s=14, color="tab:blue", alpha=0.25, linewidths=0,
                   label="evaluation", zorder=2)
    if curve:
        cx = [p[0] for p in curve] + [n]
        cy = [p[1] for p in curve] + [curve[-1][1]]
        ax.step(cx, cy, where="post", color="tab:blue", linewidth=2,
                label=label or "best so far", zorder=3)
    if failed:
        # x in data units, y in axes units: the markers sit on the bottom edge whatever the scale
        ax.plot(failed, [0.03] * len(failed), transform=ax.get_xaxis_transform(),
                linestyle="none", marker="x", markersize=6, markeredgewidth=1.4,
                color="tab:red", zorder=4, label=f"failed evaluation ({len(failed)})")
    if not xs:
        _message(ax, "no successful evaluations yet")
        ax.set_yticks([])
    if n:
        ax.set_xlim(0.5, n + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluation number")
    ax.set_ylabel(_metric_label(objective))
    ax.set_title(f"Best {objective.metric} so far ({n} evaluation{'s' if n != 1 else ''})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=9, framealpha=0.9)
    return _save(fig, path)


def plot_pareto(trials: Iterable[Trial], objective: Objective, path: Path | str,
                cost: str = "flops") -> Path:
    """Write a PNG of metric against ``cost`` with the Pareto front highlighted.

    Front points are drawn large and joined by a step line (the best metric reachable at each
    cost); other trials are faded. The x axis is logarithmic when costs span over a decade.
    """
    pts = pareto_points(trials, objective, cost=cost)
    fig, ax = _new_figure()
    x, y, mask = pts.cost, pts.metric, pts.mask
    if len(x):
        ax.scatter(x[~mask], y[~mask], s=18, color="0.55", alpha=0.35, linewidths=0,
                   label=f"other trials ({int((~mask).sum())})", zorder=2)
        order = np.argsort(x[mask], kind="stable")
        fx, fy = x[mask][order], y[mask][order]
        sx = np.append(fx, x.max()) if x.max() > fx[-1] else fx
        sy = np.append(fy, fy[-1]) if x.max() > fx[-1] else fy
        ax.step(sx, sy, where="post", color="tab:orange", linewidth=1.8, zorder=3)
        ax.scatter(fx, fy, s=46, color="tab:orange", edgecolors="black", linewidths=0.7,
                   label=f"Pareto front ({len(fx)})", zorder=4)
        positive = x[x > 0]
        if len(positive) == len(x) and positive.max() / positive.min() > 10:
            ax.set_xscale("log")
        ax.legend(loc="best", fontsize=9, framealpha=0.9)
    else:
        _message(ax, f"no successful trial reports {cost!r}")
    ax.set_xlabel(f"{_cost_label(cost)} (lower is better)")
    ax.set_ylabel(_metric_label(objective))
    ax.set_title(f"{objective.metric} vs {_cost_label(cost)}: Pareto front")
    if cost in ("params", "flops", "macs") and ax.get_xscale() == "linear":
        ax.xaxis.set_major_formatter(lambda v, _pos: format_count(v).replace(".0", ""))
    return _save(fig, path)


def _curve_on_grid(curve: Sequence[tuple[int, float]], grid: np.ndarray) -> np.ndarray:
    """A best-so-far curve as values at evaluation numbers ``grid`` (NaN outside its range)."""
    out = np.full(len(grid), np.nan)
    if not curve:
        return out
    xs = np.asarray([p[0] for p in curve], dtype=float)
    ys = np.asarray([p[1] for p in curve], dtype=float)
    idx = np.searchsorted(xs, grid, side="right") - 1
    inside = (idx >= 0) & (grid <= xs[-1])
    out[inside] = ys[idx[inside]]
    return out


def plot_compare(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
                 path: Path | str, objective: Objective) -> Path:
    """Write a PNG of several strategies' best-so-far curves: mean ± std over their seeds.

    ``curves`` maps a strategy's name to one :func:`best_so_far` curve per seed. At each
    evaluation number, the statistics are over the seeds that have a value there (a seed's
    curve starts at its first success and ends at its last evaluation).
    """
    fig, ax = _new_figure()
    n_max = max((p[0] for runs in curves.values() for c in runs for p in c), default=0)
    grid = np.arange(1, n_max + 1, dtype=float)
    drawn = False
    for i, (name, runs) in enumerate(curves.items()):
        if not runs or n_max == 0:
            continue
        vals = np.vstack([_curve_on_grid(c, grid) for c in runs])
        have = ~np.isnan(vals)
        count = have.sum(axis=0)
        ok = count > 0
        if not ok.any():
            continue
        filled = np.where(have, vals, 0.0)
        mean = np.full(len(grid), np.nan)
        std = np.full(len(grid), np.nan)
        mean[ok] = filled[:, ok].sum(axis=0) / count[ok]
        dev = np.where(have, vals - mean, 0.0)
        std[ok] = np.sqrt((dev[:, ok] ** 2).sum(axis=0) / count[ok])
        color = f"C{i % 10}"
        ax.step(grid, mean, where="post", color=color, linewidth=2,
                label=f"{name} ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        ax.fill_between(grid, mean - std, mean + std, step="post", color=color, alpha=0.18,
                        linewidth=0)
        drawn = True
    if not drawn:
        _message(ax, "no curves to compare")
    else:
        ax.set_xlim(0.5, n_max + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower right" if objective.direction == "max" else "upper right",
                  fontsize=9, framealpha=0.9, title="mean ± std over seeds", title_fontsize=9)
    ax.set_xlabel("evaluation number")
    ax.set_ylabel(f"best {_metric_label(objective)}")
    ax.set_title(f"Best {objective.metric} so far: strategies compared")
    return _save(fig, path)


def plot_strategy_curves(curves: Mapping[str, Sequence[float]], path: Path | str) -> Path:
    """Write a PNG with one line per strategy diagnostic curve (e.g. the RL controller's mean
    reward per policy update)."""
    fig, ax = _new_figure()
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("update")
    ax.set_title("strategy learning")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
