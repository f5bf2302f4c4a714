"""`nastk report RUN_DIR`: (re)write a run's report.md and plots from its store.

The objective and the run's settings come from the store. The strategy's learning curves and
the space's rendering of architectures come from the live plugins when they still import, and
otherwise from what the run saved in its store when it ended; so a run stays reportable after
its plugins are gone. Neither datasets nor a supernet are built.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from nastk import report
from nastk.cli.console import results_console
from nastk.config.compose import build_space, build_strategy, import_plugins
from nastk.core.errors import NastkError
from nastk.report import Render
from nastk.run.record import RunRecord, open_run
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy

T = TypeVar("T")


@dataclass
class Reported:
    """What :func:`report_run` wrote, and what the leaderboard needs."""

    record: RunRecord
    path: Path
    render: Render
    #: where curves and rendering came from: ``"live"`` plugins or the ``"stored"`` copy
    source: str


def _live(build: Callable[[], T], stored: object | None) -> T | None:
    """``build()``, or ``None`` when the plugin no longer loads and a stored copy exists."""
    try:
        return build()
    except (NastkError, ImportError):
        if stored is None:
            raise  # nothing to fall back on (a store written before runs saved this)
        return None


def _stored_render(rendered: dict[str, str]) -> Render:
    def render(arch: Architecture) -> str | None:
        return rendered.get(arch.key)

    return render


def report_run(run_dir: str | Path) -> Reported:
    """Rewrite ``run_dir/report.md`` (with its plots) and return what was used."""
    record = open_run(run_dir)
    config = record.config
    if config is None:  # a search built in Python: its plugins are the user's code
        return Reported(record, record.write_report(), record.render, "stored")

    def make_space() -> SearchSpace:
        import_plugins(config.plugins)
        return build_space(config.space)

    space = _live(make_space, record.rendered)
    strategy = None
    if space is not None:
        def make_strategy() -> Strategy:
            made = build_strategy(config, space, record.objective)
            if record.strategy_state is not None:
                made.load_state_dict(record.strategy_state)
            return made

        strategy = _live(make_strategy, record.curves)
    render = space.render if space is not None else _stored_render(record.rendered or {})
    curves = strategy.curves() if strategy is not None else (record.curves or {})
    path = report.write_report(record.run_dir, record.trials, record.objective,
                               title=f"nastk run: {config.name}", meta=config.report_meta(),
                               curves=curves, render=render, rungs=record.rungs)
    source = "live" if space is not None and strategy is not None else "stored"
    return Reported(record, path, render, source)


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk report RUN_DIR`: rewrite the report, print the leaderboard and the report's path."""
    done = report_run(args.run_dir)
    record = done.record
    out = results_console()
    out.print(report.leaderboard_table(record.trials, record.objective, top=args.top,
                                       title=f"leaderboard: {record.name}",
                                       render=done.render))
    if done.source == "stored" and record.config is not None:
        console.print("note: the run's plugins did not load; its strategy curves and "
                      "architecture texts come from the store")
    out.print(f"report: {done.path}")
    return 0
