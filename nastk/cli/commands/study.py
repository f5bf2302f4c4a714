"""`nastk study CONFIG`: run (or continue) a study, every (task, strategy, seed) search, then
write its report and print the cross-task leaderboard; the study itself is
:mod:`nastk.pipelines.study`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from nastk.cli.console import results_console
from nastk.config.schema import load_config
from nastk.pipelines.study.config import StudyConfig
from nastk.pipelines.study.report import write_study_report
from nastk.pipelines.study.runner import run_study
from nastk.run.signals import exit_status, interrupt_name


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the study's searches (none with ``--report-only``), write the report and print the
    leaderboard; on Ctrl-C, say how to continue (exit status 130)."""
    config = load_config(args.config, StudyConfig)
    if not args.report_only:
        try:
            outcome = run_study(config, console=console, progress=not args.no_progress,
                                executor=args.executor, source=args.config)
        except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGHUP
            console.print(f"interrupted ({interrupt_name(err)}): finished searches are kept "
                          f"under "
                          f"{config.resolved_run_dir()}; continue with `nastk study "
                          f"{args.config}` (finished searches are skipped, interrupted ones "
                          "resumed)", highlight=False, soft_wrap=True)
            return exit_status(err)
        console.print(f"{outcome.started} searches run, {outcome.skipped} already finished",
                      highlight=False)
    path, summary = write_study_report(config)
    table = Table(title=f"study {config.name}: cross-task leaderboard")
    for col in ("#", "strategy", "average rank", "mean normalised regret"):
        table.add_column(col)
    for i, row in enumerate(summary["leaderboard"], start=1):
        table.add_row(str(i), row["strategy"], f"{row['average_rank']:.2f}",
                      f"{row['mean_normalised_regret']:.4f}")
    out = results_console()
    out.print(table)
    out.print(f"report: {path}")
    return 0
