"""Results of a finished or running search as tables (terminal, markdown) and plots (PNG).

Every function takes the run's trials (any order; they are sorted by id, which is the
evaluation order) and the search's :class:`~nastk.core.objective.Objective`. Values are always in
the metric's own units: a metric minimised (``direction="min"``) is reported as is, never negated.

Plots are drawn on standalone :class:`matplotlib.figure.Figure` objects with the Agg canvas, so
nothing touches pyplot's global figure registry or needs a display.

Modules: :mod:`~nastk.report.formatting` (numbers and architectures as text),
:mod:`~nastk.report.results` (best so far, leaderboard, Pareto front, a scheduled run's
rungs),
:mod:`~nastk.report.plots` (PNG figures, and the figures themselves for tests),
:mod:`~nastk.report.markdown` (``report.md``).
"""

from nastk.report.formatting import (
    COST_HEADERS,
    COST_LABELS,
    STANDARD_COSTS,
    Render,
    arch_text,
    format_cost,
    format_count,
    format_duration,
    format_metric,
)
from nastk.report.markdown import write_report
from nastk.report.plots import (
    compare_figure,
    learning_curves_figure,
    pareto_figure,
    plot_best_so_far,
    plot_compare,
    plot_learning_curves,
    plot_pareto,
    plot_strategy_curves,
    plot_supernet_history,
    supernet_history_figure,
)
from nastk.report.results import (
    ParetoPoints,
    RungRow,
    best_so_far,
    early_stop,
    format_resource,
    leaderboard,
    leaderboard_table,
    pareto_points,
    rung_table,
    scheduled_best,
)

__all__ = [
    "COST_HEADERS",
    "COST_LABELS",
    "STANDARD_COSTS",
    "ParetoPoints",
    "Render",
    "RungRow",
    "arch_text",
    "best_so_far",
    "compare_figure",
    "early_stop",
    "format_cost",
    "format_count",
    "format_duration",
    "format_metric",
    "format_resource",
    "leaderboard",
    "leaderboard_table",
    "learning_curves_figure",
    "pareto_figure",
    "pareto_points",
    "plot_best_so_far",
    "plot_compare",
    "plot_learning_curves",
    "plot_pareto",
    "plot_strategy_curves",
    "plot_supernet_history",
    "rung_table",
    "scheduled_best",
    "supernet_history_figure",
    "write_report",
]
