"""`nastk path-filter fit RUN_DIR`: fit a DetOFA-style path filter on a run's results and save
it (for ``path_filter:`` in a supernet or search config). The fitting is
:func:`nastk.prediction.path_filter.fit_on_results`; this module only opens the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
