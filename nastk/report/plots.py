"""PNG plots of a run: best so far, Pareto front, runs compared, strategy learning, a
scheduled run's learning curves over its rungs, supernet training history.

Plots are drawn on standalone :class:`matplotlib.figure.Figure` objects with the Agg canvas, so
nothing touches pyplot's global figure registry or needs a display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, MaxNLocator

from nastk.core.objective import Objective
from nastk.core.trial import Trial
from nastk.report.formatting import _cost_label, _metric_label
from nastk.report.results import (
    _by_id,
    _failed_evaluations,
    _is_evaluation,
    best_so_far,
    pareto_points,
    scheduled_best,
)
from nastk.run.storage import RungRecord


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


class CountFormatter(Formatter):
    """Tick labels of counts with one SI suffix for the axis (``1.5M``) and as few decimals as
    keep adjacent labels distinct: costs 0.1 % apart get ``1.001G``, ``1.002G``, not ``1.0G``
    twice. Trailing zeros are dropped only when every label can drop them."""

    _UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
    max_decimals = 9

    def __init__(self) -> None:
        self.scale, self.suffix, self.decimals = 1.0, "", 0

    def set_locs(self, locs: Sequence[float]) -> None:
        super().set_locs(locs)
        values = [float(v) for v in locs if np.isfinite(v)]
        top = max((abs(v) for v in values), default=0.0)
        self.scale, self.suffix = next(((s, u) for s, u in self._UNITS if top >= s), (1.0, ""))
        for d in range(self.max_decimals + 1):
            self.decimals = d
            labels = [self._text(v) for v in values]
            if all(a != b for a, b in pairwise(labels)):
                break

    def _text(self, value: float) -> str:
        text = f"{value / self.scale:.{self.decimals}f}"
        if text.startswith("-") and float(text) == 0:
            text = text[1:]
        return f"{text}{self.suffix}" if float(text) != 0 else "0"

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self._text(float(x))


def pareto_figure(trials: Iterable[Trial], objective: Objective, cost: str = "flops") -> Figure:
    """The figure of :func:`plot_pareto` (for tests and callers that save it themselves)."""
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
        ax.xaxis.set_major_formatter(CountFormatter())
    return fig


def plot_pareto(trials: Iterable[Trial], objective: Objective, path: Path | str,
                cost: str = "flops") -> Path:
    """Write a PNG of metric against ``cost`` with the Pareto front highlighted.

    Front points are drawn large and joined by a step line (the best metric reachable at each
    cost); other trials are faded. The x axis is logarithmic when costs span over a decade;
    count costs (params, FLOPs) are labelled with SI suffixes and enough digits to tell
    adjacent ticks apart.
    """
    return _save(pareto_figure(trials, objective, cost=cost), path)


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


#: how the comparison plot words each grouping of runs
GROUPINGS: dict[str, str] = {"strategy": "strategy", "name": "run name"}


def runs_text(n_runs: int, seeds: Sequence[int | None] | None = None) -> str:
    """``3 seeds`` when ``n_runs`` runs have distinct known seeds, else ``3 runs, 2 seeds``
    (runs repeating a seed are not independent); ``3 runs`` when the seeds are not given."""
    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'s' if n != 1 else ''}"

    if seeds is None:
        return plural(n_runs, "run")
    distinct = len({s for s in seeds if s is not None})
    unknown = sum(1 for s in seeds if s is None)
    if distinct == n_runs:
        return plural(n_runs, "seed")
    text = f"{plural(n_runs, 'run')}, {plural(distinct, 'seed')}"
    return text + (f" ({unknown} unknown)" if unknown else "")


def compare_figure(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
                   objective: Objective, *, group_by: str = "strategy",
                   seeds: Mapping[str, Sequence[int | None]] | None = None) -> Figure:
    """The figure of :func:`plot_compare` (for tests and callers that save it themselves).

    Artists carry gids: ``NAME:mean`` (solid mean), ``NAME:fewer runs`` (dotted
    continuation), ``NAME:run ends`` (ticks where runs end).
    """
    fig, ax = _new_figure()
    n_max = max((p[0] for runs in curves.values() for c in runs for p in c), default=0)
    grid = np.arange(1, n_max + 1, dtype=float)
    drawn = continued = False
    for i, (name, runs) in enumerate(curves.items()):
        runs = [c for c in runs if c]
        if not runs or n_max == 0:
            continue
        ends = sorted({int(c[-1][0]) for c in runs})
        common, last = ends[0], ends[-1]
        vals = np.vstack([_curve_on_grid(c, grid) for c in runs])
        have = ~np.isnan(vals)
        count = have.sum(axis=0)
        ok = count > 0
        filled = np.where(have, vals, 0.0)
        mean = np.full(len(grid), np.nan)
        std = np.full(len(grid), np.nan)
        mean[ok] = filled[:, ok].sum(axis=0) / count[ok]
        dev = np.where(have, vals - mean, 0.0)
        two = count > 1  # the sample std needs two runs
        std[two] = np.sqrt((dev[:, two] ** 2).sum(axis=0) / (count[two] - 1))
        color = f"C{i % 10}"
        full = grid <= common  # every run goes this far
        group_seeds = None if seeds is None else seeds.get(name)
        label = f"{name} ({runs_text(len(runs), group_seeds)})"
        (line,) = ax.step(grid[full], mean[full], where="post", color=color, linewidth=2,
                          label=label)
        line.set_gid(f"{name}:mean")
        ax.fill_between(grid[full], (mean - std)[full], (mean + std)[full], step="post",
                        color=color, alpha=0.18, linewidth=0)
        if last > common:  # runs drop out: a dotted mean over the runs still going
            later = (grid >= common) & (grid <= last)
            (dots,) = ax.step(grid[later], mean[later], where="post", color=color,
                              linewidth=1.4, linestyle=":")
            dots.set_gid(f"{name}:fewer runs")
            drop = np.asarray(ends[:-1], dtype=float)
            (ticks,) = ax.plot(drop, mean[drop.astype(int) - 1], linestyle="none", marker="|",
                               markersize=12, markeredgewidth=1.6, color=color)
            ticks.set_gid(f"{name}:run ends")
            continued = True
        drawn = True
    if not drawn:
        _message(ax, "no curves to compare")
    else:
        if continued:
            ax.plot([], [], color="0.35", linestyle=":", marker="|", markersize=10,
                    label="after a run ends (| ): mean of the rest")
        ax.set_xlim(0.5, n_max + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower right" if objective.direction == "max" else "upper right",
                  fontsize=9, framealpha=0.9, title="mean ± std over runs", title_fontsize=9)
    ax.set_xlabel("evaluation number")
    ax.set_ylabel(f"best {_metric_label(objective)}")
    grouping = GROUPINGS.get(group_by, group_by)
    ax.set_title(f"Best {objective.metric} so far, runs grouped by {grouping}")
    return fig


def plot_compare(curves: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
                 path: Path | str, objective: Objective, *, group_by: str = "strategy",
                 seeds: Mapping[str, Sequence[int | None]] | None = None) -> Path:
    """Write a PNG of groups of runs' best-so-far curves: mean ± std (sample std) over runs.

    ``curves`` maps a group's name (a strategy, or a run name under ``group_by="name"``) to
    one :func:`best_so_far` curve per run; ``seeds`` (optional) the runs' seeds, so the legend
    counts distinct seeds. The solid mean and its band go only as far as every run of the group
    goes (a curve starts at its run's first success and ends at its last evaluation); beyond,
    a dotted line is the mean of the runs still going, with a tick where each run ends.
    """
    return _save(compare_figure(curves, objective, group_by=group_by, seeds=seeds), path)


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


def geometric(levels: Sequence[float], tolerance: float = 0.1) -> bool:
    """Whether the distinct positive ``levels`` (ascending) grow by a constant factor of at
    least 2 (within ``tolerance`` of it, relatively), so a log axis spaces them evenly."""
    xs = sorted({float(x) for x in levels})
    if len(xs) < 2 or xs[0] <= 0:
        return False
    ratios = [b / a for a, b in pairwise(xs)]
    return ratios[0] >= 2 and all(abs(r / ratios[0] - 1) <= tolerance for r in ratios)


def learning_curves_figure(rungs: Iterable[RungRecord], trials: Iterable[Trial],
                           objective: Objective, unit: str = "resource") -> Figure:
    """The figure of :func:`plot_learning_curves`."""
    trials = _by_id(trials)
    by_trial: dict[int, list[RungRecord]] = {}
    for r in sorted(rungs, key=lambda r: (r.trial_id, r.rung)):
        by_trial.setdefault(r.trial_id, []).append(r)
    finals = {t.id: t.result for t in trials if t.result is not None}
    best = scheduled_best(trials, objective)
    fig, ax = _new_figure()
    levels = sorted({r.resource for rs in by_trial.values() for r in rs})
    go_x: list[float] = []
    go_y: list[float] = []
    stop_x: list[float] = []
    stop_y: list[float] = []
    drawn = False
    for tid, rs in by_trial.items():
        points = [(r.resource, objective.value(r.result)) for r in rs if r.result.ok]
        points = [(x, y) for x, y in points if y is not None]
        if not points:
            continue
        drawn = True
        if best is not None and tid == best.id:
            continue  # drawn last, on top
        ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:blue",
                alpha=0.35, linewidth=0.8, zorder=2)
        for r, nxt in pairwise(rs):
            y = objective.value(r.result) if r.result.ok else None
            if y is not None and nxt.rung > r.rung:
                go_x.append(r.resource)
                go_y.append(y)
        final = finals.get(tid)
        if final is not None and final.info.get("scheduler") == "stopped":
            stop_x.append(points[-1][0])
            stop_y.append(points[-1][1])
    if best is not None and best.id in by_trial:
        rs = by_trial[best.id]
        points = [(r.resource, objective.value(r.result)) for r in rs if r.result.ok]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            for r, nxt in pairwise(rs):
                y = objective.value(r.result) if r.result.ok else None
                if y is not None and nxt.rung > r.rung:
                    go_x.append(r.resource)
                    go_y.append(y)
            ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:orange",
                    linewidth=2.2, marker="*", markersize=9, zorder=5,
                    label=f"incumbent (trial {best.id})")
    if go_x:
        ax.scatter(go_x, go_y, s=18, color="tab:green", zorder=4, linewidths=0,
                   label="promoted (continued from this rung)")
    if stop_x:
        ax.scatter(stop_x, stop_y, s=22, color="tab:red", marker="x", zorder=4,
                   label="stopped by the scheduler")
    if not drawn:
        _message(ax, "no successful rung yet")
    if geometric(levels):
        ax.set_xscale("log")
        ax.set_xticks(levels)
        ax.set_xticklabels([f"{x:g}" for x in levels])
        ax.minorticks_off()
    elif levels:
        ax.set_xticks(levels)
    ax.set_xlabel(unit)
    ax.set_ylabel(_metric_label(objective))
    ax.set_title(f"learning curves: {len(by_trial)} candidates over {len(levels)} rungs")
    if go_x or stop_x or best is not None:
        ax.legend(loc="best", fontsize=8)
    return fig


def plot_learning_curves(rungs: Iterable[RungRecord], trials: Iterable[Trial],
                         objective: Objective, path: Path | str,
                         unit: str = "resource") -> Path:
    """Write a PNG of a scheduled run's learning curves: each candidate's metric against the
    resource (x axis named ``unit``; logarithmic when the rungs grow geometrically), one line
    through its successful rungs; a green dot at each rung it was promoted from, a red ``x``
    where the scheduler stopped it, the incumbent (:func:`~nastk.report.results.scheduled_best`)
    in orange on top."""
    return _save(learning_curves_figure(rungs, trials, objective, unit=unit), path)


def _phase_boundaries(history: Sequence[Mapping[str, Any]]) -> list[tuple[float, Any]]:
    """(x between the two epochs, the new phase) wherever ``phase`` changes."""
    out = []
    for prev, rec in pairwise(history):
        if "phase" in rec and rec.get("phase") != prev.get("phase"):
            out.append(((float(prev["epoch"]) + float(rec["epoch"])) / 2, rec["phase"]))
    return out


def supernet_history_figure(history: Sequence[Mapping[str, Any]], metric: str) -> Figure:
    """The figure of :func:`plot_supernet_history`: training losses (left) and the largest and
    smallest subnets' validation ``metric`` (right) per epoch, phase changes as dashed lines
    (gid ``phase boundary``)."""
    fig = Figure(figsize=(11.0, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, val_ax = fig.subplots(1, 2)
    for ax in (loss_ax, val_ax):
        ax.grid(True, alpha=0.3, linewidth=0.6)
    epochs = [rec.get("epoch", i + 1) for i, rec in enumerate(history)]
    loss_keys: list[str] = []
    for rec in history:
        loss_keys.extend(k for k in rec if k.startswith("train_loss_") and k not in loss_keys)
    for key in loss_keys:
        xs = [e for e, rec in zip(epochs, history, strict=True) if rec.get(key) is not None]
        ys = [float(rec[key]) for rec in history if rec.get(key) is not None]
        loss_ax.plot(xs, ys, marker="o", markersize=3, label=key)
    for kind, color in (("largest", "tab:blue"), ("smallest", "tab:orange")):
        key = f"val_{metric}_{kind}"
        xs = [e for e, rec in zip(epochs, history, strict=True) if rec.get(key) is not None]
        ys = [float(rec[key]) for rec in history if rec.get(key) is not None]
        if xs:
            val_ax.plot(xs, ys, marker="o", markersize=3, color=color, label=f"{kind} subnet")
    for ax in (loss_ax, val_ax):
        for x, phase in _phase_boundaries(history):
            line = ax.axvline(x, color="0.4", linestyle="--", linewidth=1)
            line.set_gid("phase boundary")
            ax.text(x, 0.98, f" phase {phase}", transform=ax.get_xaxis_transform(),
                    ha="left", va="top", fontsize=8, color="0.3")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8, framealpha=0.9)
    if not loss_keys:
        _message(loss_ax, "no training losses recorded")
    if not val_ax.get_lines():
        _message(val_ax, f"no validation {metric} recorded")
    loss_ax.set_ylabel("training loss (epoch mean)")
    loss_ax.set_title("supernet training losses")
    val_ax.set_ylabel(f"validation {metric}")
    val_ax.set_title(f"validation {metric}: largest and smallest subnet")
    return fig


def plot_supernet_history(history: Sequence[Mapping[str, Any]], path: Path | str,
                          metric: str) -> Path:
    """Write a PNG of a supernet's training history (``SupernetTrainer.history``, as in
    ``history.json``): per epoch every ``train_loss_*`` term, and ``val_<metric>_largest`` /
    ``val_<metric>_smallest``, with dashed lines where the progressive-shrinking ``phase``
    changes."""
    return _save(supernet_history_figure(history, metric), path)
