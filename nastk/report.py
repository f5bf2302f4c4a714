"""Results of a finished or running search as tables (terminal, markdown) and plots (PNG).

Every function takes the run's trials (any order; they are sorted by id, which is the
evaluation order) and the search's :class:`~nastk.objective.Objective`. Values are always in the
metric's own units: a metric minimised (``direction="min"``) is reported as is, never negated.

Plots are drawn on standalone :class:`matplotlib.figure.Figure` objects with the Agg canvas, so
nothing touches pyplot's global figure registry or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from nastk.evaluation.result import Result, Status
from nastk.objective import Objective
from nastk.pareto import pareto_mask
from nastk.space.architecture import Architecture
from nastk.trial import Trial

__all__ = [
    "ParetoPoints",
    "arch_text",
    "best_so_far",
    "format_cost",
    "format_count",
    "format_duration",
    "format_metric",
    "leaderboard",
    "leaderboard_table",
    "pareto_points",
    "plot_best_so_far",
    "plot_compare",
    "plot_pareto",
    "plot_strategy_curves",
    "write_report",
]

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
#: how many characters of a failed trial's error the report keeps
ERROR_CHARS = 200


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

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
    best_score: float | None = None
    n = 0
    for t in _by_id(trials):
        if not _is_evaluation(t):
            continue
        n += 1
        score = objective.score(t.result) if t.result is not None else None
        if score is not None and (best_score is None or score > best_score):
            best_score = score
        if best_score is not None:
            curve.append((n, best_score if objective.direction == "max" else -best_score))
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


def leaderboard(trials: Iterable[Trial], objective: Objective, top: int = 10,
                render: Render | None = None) -> list[dict]:
    """The ``top`` successful trials, best first by the objective (ties: lower id first).

    Each row holds ``rank`` (from 1), ``trial`` (id), ``arch_id`` (short id), ``metric`` (the
    objective's metric value), ``metrics`` (the other metrics), ``costs`` (params, flops,
    latency_ms, ... where present, in that order), ``duration_s`` and ``arch`` (compact text).
    """
    scored = [(t, r, objective.score(r)) for t, r in _successes(trials, objective)]
    ranked = sorted(scored, key=lambda trs: -float(trs[2]))  # type: ignore[arg-type]
    # sorted() is stable and the input is in id order, so ties go to the earlier trial
    rows: list[dict] = []
    for rank, (t, r, _score) in enumerate(ranked[: max(0, top)], start=1):
        rows.append({
            "rank": rank,
            "trial": t.id,
            "arch_id": t.arch.short_id,
            "metric": r.value(objective.metric),
            "metrics": {k: v for k, v in r.metrics.items() if k != objective.metric},
            "costs": {c: r.costs[c] for c in _ordered_costs(r.costs)},
            "duration_s": r.duration_s,
            "arch": arch_text(t.arch, render=render),
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
    table.add_column("architecture", overflow="fold", min_width=24)
    for row in rows:
        table.add_row(
            str(row["rank"]), str(row["trial"]), row["arch_id"], format_metric(row["metric"]),
            *(format_metric(row["metrics"].get(m)) for m in metric_cols),
            *(format_cost(c, row["costs"].get(c)) for c in cost_cols),
            format_duration(row["duration_s"]), row["arch"],
        )
    if not rows:
        table.caption = "no successful trials yet"
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
    values are in the metric's own units. Unpacks as ``trials, cost, metric, mask``.
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
    mask = pareto_mask(np.column_stack([score, -x])) if len(x) else np.zeros(0, dtype=bool)
    return ParetoPoints(kept, x, y, mask)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# markdown report
# --------------------------------------------------------------------------------------------

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


def _strategy_section(curves: Mapping[str, Sequence[float]], run_dir: Path) -> list[str]:
    png = run_dir / "strategy.png"
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


def write_report(run_dir: Path, trials: Iterable[Trial], objective: Objective, *, title: str,
                 meta: Mapping[str, Any], top: int = 10, cost: str | None = None,
                 curves: Mapping[str, Sequence[float]] | None = None,
                 render: Render | None = None) -> Path:
    """Write ``run_dir/report.md`` with ``best_so_far.png`` and ``pareto.png`` beside it.

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
    best = leaderboard(trials, objective, top=1)

    lines: list[str] = [f"# {title}", "", "## Summary", ""]
    summary: list[tuple[str, str]] = [
        ("trials", str(len(trials))),
        ("complete", str(counts[Status.COMPLETE])),
        ("failed", str(counts[Status.FAILED])),
    ]
    if counts[Status.RUNNING]:
        summary.append(("running (no result yet)", str(counts[Status.RUNNING])))
    if counts[Status.INTERRUPTED]:
        summary.append(("interrupted", str(counts[Status.INTERRUPTED])))
    unusable = counts[Status.COMPLETE] - len(successes)
    if unusable > 0:
        summary.append((f"complete without {objective.metric}", str(unusable)))
    if best:
        b = best[0]
        summary.append((f"best {objective.metric} ({objective.direction})",
                        f"{format_metric(b['metric'])} (trial {b['trial']}, `{b['arch_id']}`)"))
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
    plot_best_so_far(trials, objective, run_dir / "best_so_far.png")
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
        header = ["#", "trial", "arch id", f"{objective.metric} {arrow}", *metric_cols,
                  *(COST_HEADERS.get(c, c) for c in cost_cols), "time", "architecture"]
        align = ["r", "r", "l", "r", *["r"] * (len(metric_cols) + len(cost_cols)), "r", "l"]
        body = [
            [r["rank"], r["trial"], f"`{r['arch_id']}`", format_metric(r["metric"]),
             *(format_metric(r["metrics"].get(m)) for m in metric_cols),
             *(format_cost(c, r["costs"].get(c)) for c in cost_cols),
             format_duration(r["duration_s"]), f"`{r['arch']}`"]
            for r in rows
        ]
        lines += _md_table(header, body, align)
    else:
        lines += ["No successful trials: nothing to rank."]

    # pareto front
    lines += ["", f"## Pareto front: {objective.metric} vs {_cost_label(cost)}", ""]
    pts = pareto_points(trials, objective, cost=cost)
    pareto_png = run_dir / "pareto.png"
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

    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
