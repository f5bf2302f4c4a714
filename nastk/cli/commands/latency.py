"""`nastk latency profile CONFIG --out FILE`: this device's latency table for a config's space
at its task's input shape; `nastk latency check RUN_DIR`: a run's predicted-latency front timed
on this device, into its report. The work is :mod:`nastk.latency`; this module reads the
arguments, builds the space and task and prints what was found."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from nastk.cli.console import results_console
from nastk.config.compose import build_space_and_task
from nastk.config.schema import load_config
from nastk.core.errors import ConfigError
from nastk.latency.backends import make_backend
from nastk.latency.table import LatencyTable, read_table

__all__ = ["check_run", "profile_config", "run"]


def _threads(text: str) -> Any:
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--threads {text!r}: give a positive number or auto")
    return n


def profile_config(config_path: str | Path, out: str | Path, *, backend: str = "cpu",
                   networks: int = 20, repeats: int = 20, warmup: int = 5, rounds: int = 20,
                   threads: Any = "auto", level: float = 0.9, seed: int = 0,
                   console: Console | None = None, progress: bool = True) -> LatencyTable:
    """Profile the space of the search config in ``config_path`` at its task's input shape on
    this device (``backend``) and write the table to ``out``."""
    from nastk.latency.profile import profile_table
    from nastk.report.progress import ProgressView

    config = load_config(config_path)
    if config.task is None:
        raise ConfigError(f"{config_path}: profiling needs a task (its input shape and model); "
                          "add `task:`")
    if not 0 < level < 1:
        raise ConfigError(f"--level must be between 0 and 1, got {level}")
    timer = make_backend(backend, threads, repeats, warmup, rounds)
    space, task = build_space_and_task(config)
    assert task is not None
    console = console or Console(stderr=True)
    with ProgressView(console, enabled=progress) as view:
        job = view.add(f"latency profile {space.name} on {backend}", None, unit="timings")

        def advance(done: int, total: int, what: str) -> None:
            view.update(job, completed=done, total=total, info=what)

        table = profile_table(space, tuple(task.input_shape),
                              lambda arch: task.build_model(space, arch), timer,
                              networks=networks, seed=seed, level=level,
                              task=config.task.model_dump(mode="json"), progress=advance)
    table.save(out)
    return table


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
    """`nastk latency profile|check`."""
    from nastk.latency.front_check import describe_check

    out = results_console()
    if args.latency_command == "check":
        doc = check_run(args.run_dir, args.table, console)
        out.print(describe_check(doc), highlight=False)
        out.print(f"report: {Path(args.run_dir) / 'report.md'}")
        return 0 if doc.get("measured") else 1
    table = profile_config(args.config, args.out, backend=args.backend,
                           networks=args.networks, repeats=args.repeats, warmup=args.warmup,
                           rounds=args.rounds,
                           threads=_threads(args.threads), level=args.level, seed=args.seed,
                           console=console, progress=not args.no_progress)
    c = table.correction
    out.print(f"{len(table.units)} units and {len(table.networks)} whole networks timed on "
              f"{table.device.get('backend')} ({table.device.get('gpu') or table.device.get('cpu')}"
              f", {table.device.get('threads')} threads)", highlight=False)
    out.print(f"correction: measured = {c.intercept_ms:.3f} ms + {c.slope:.3f} x table sum; "
              f"leave-one-out error {c.loo_mape:.1f} %; {c.level * 100:.0f} % interval: "
              f"x[{c.ratio_low:.3f}, {c.ratio_high:.3f}]", highlight=False)
    busy = sum(1 for u in table.units.values() if u.busy)
    if busy:
        out.print(f"note: {busy} units were timed while other work shared the device (their "
                  "spread stayed high); profile again on an idle machine for a better table")
    out.print(f"table: {args.out}  (use it with `latency: {{table: {args.out}}}` in a search "
              "config)", highlight=False)
    return 0
