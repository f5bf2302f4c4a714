"""`nastk latency check RUN_DIR`: a run's predicted-latency front timed on this device, into
its report (:mod:`nastk.latency.front_check`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from nastk.cli.console import results_console
from nastk.config.compose import build_space_and_task
from nastk.core.errors import ConfigError
from nastk.latency.table import read_table

__all__ = ["check_run", "run"]


def check_run(run_dir: str | Path, table_path: str | Path | None = None,
              console: Console | None = None) -> dict[str, Any]:
    """Time the latency front of the run in ``run_dir`` on this device against its table
    (``table_path``, default the run's ``latency.table``), write ``latency_check.json`` and
    the run's report again."""
    from nastk.cli.commands.report import report_run
    from nastk.latency.front_check import check_front
    from nastk.latency.predictor import LatencyPredictor
    from nastk.run.record import open_run

    record = open_run(run_dir)
    config = record.config
    if config is None:
        raise ConfigError(f"{run_dir}: a search built in Python has no config to rebuild its "
                          "task from; call nastk.latency.front_check.check_front yourself")
    if table_path is None:
        if config.latency is None:
            raise ConfigError(f"{run_dir}: the run did not predict its latency (no `latency: "
                              "{table}` in its config); give --table FILE")
        table_path = config.latency.table
    space, task = build_space_and_task(config)
    if task is None:
        raise ConfigError(f"{run_dir}: the run has no task, so no model to time")
    table = read_table(table_path, "--table")
    LatencyPredictor(table, space, task.input_shape, source=str(table_path))  # same space
    doc = check_front(Path(run_dir), record.finished, record.objective, table,
                      str(table_path), task.input_shape,
                      lambda arch: task.build_model(space, arch))
    report_run(run_dir)
    return doc



def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk latency check RUN_DIR`: time the front here, rewrite the report, say how it
    went (exit 1 when this is not the table's device)."""
    from nastk.latency.front_check import describe_check

    out = results_console()
    doc = check_run(args.run_dir, args.table, console)
    out.print(describe_check(doc), highlight=False)
    out.print(f"report: {Path(args.run_dir) / 'report.md'}")
    return 0 if doc.get("measured") else 1
