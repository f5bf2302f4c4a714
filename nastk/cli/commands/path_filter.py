"""`nastk path-filter fit RUN_DIR`: fit a DetOFA-style path filter on a run's results and save
it (for ``path_filter:`` in a supernet or search config). The fitting is
:func:`nastk.prediction.path_filter.fit_on_results`; this module only opens the run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from nastk.cli.console import results_console
from nastk.config.compose import build_space, import_plugins
from nastk.prediction.path_filter import FitSummary, fit_on_results
from nastk.run.record import open_run


def fit_from_run(run_dir: str | Path, out: str | Path, cost: str = "flops", n_buckets: int = 5,
                 holdout: float = 0.2, seed: int = 0,
                 options: dict[str, Any] | None = None) -> FitSummary:
    """Fit a path filter on a run's finished trials (the run's objective as the score, the
    recorded ``cost`` for the buckets) with the run's own space, report its within-bucket
    Kendall tau on a random ``holdout`` share, refit on everything and save it to ``out``."""
    record = open_run(run_dir)
    import_plugins(record.config.plugins)
    space = build_space(record.config.space)
    return fit_on_results([(t.arch, t.result) for t in record.finished], record.objective,
                          space, out, cost=cost, n_buckets=n_buckets, holdout=holdout,
                          seed=seed, options=options, source=record.run_dir)


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk path-filter fit RUN_DIR --out FILE`: fit, save and print the held-out ranking
    quality and the file written."""
    summary = fit_from_run(args.run_dir, args.out, cost=args.cost, n_buckets=args.buckets,
                           holdout=args.holdout, seed=args.seed)
    out = results_console()
    if summary.n_holdout:
        out.print(f"held out {summary.n_holdout} of {summary.n_train} trials: Kendall tau "
                  f"within {summary.cost} buckets {summary.bucket_tau:.3f} (1 = perfect "
                  "ranking, 0 = chance)")
    out.print(f"path filter fitted on {summary.n_train} trials, {summary.n_buckets} "
              f"{summary.cost} buckets: {summary.file}")
    return 0
