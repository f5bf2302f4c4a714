"""`nastk latency profile CONFIG --out FILE`: this device's latency table for a config's space
at its task's input shape. The work is :mod:`nastk.latency.profile`; this module reads the
arguments, builds the space and task and prints what the table holds."""

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
from nastk.latency.table import LatencyTable

__all__ = ["profile_config", "run"]


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



def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk latency profile CONFIG --out FILE`: profile, write the table, print what it
    holds."""
    out = results_console()
    table = profile_config(args.config, args.out, backend=args.backend,
                           networks=args.networks, repeats=args.repeats, warmup=args.warmup,
                           rounds=args.rounds, threads=_threads(args.threads),
                           level=args.level, seed=args.seed, console=console,
                           progress=not args.no_progress)
    c = table.correction
    device = table.device
    out.print(f"{len(table.units)} units and {len(table.networks)} whole networks timed on "
              f"{device.get('backend')} ({device.get('gpu') or device.get('cpu')}, "
              f"{device.get('threads')} threads)", highlight=False)
    out.print(f"correction: measured = {c.intercept_ms:.3f} ms + {c.slope:.3f} x table sum; "
              f"leave-one-out error {c.loo_mape:.1f} %; {c.level * 100:.0f} % interval: "
              f"x[{c.ratio_low:.3f}, {c.ratio_high:.3f}]", highlight=False)
    whole = sorted(n.measured_ms for n in table.networks)
    out.print(f"whole networks measured {whole[0]:.2f} to {whole[-1]:.2f} ms: a "
              "`constraints: {latency_ms: {max: X}}` bound between the two keeps part of the "
              "space", highlight=False)
    busy = sum(1 for u in table.units.values() if u.busy)
    if busy:
        out.print(f"note: {busy} units were timed while other work shared the device (their "
                  "spread stayed high); profile again on an idle machine for a better table")
    out.print(f"table: {args.out}  (use it with `latency: {{table: {args.out}}}` in a search "
              "config)", highlight=False)
    return 0
