"""`nastk path-filter fit RUN_DIR`: fit a DetOFA-style path filter on a run's results and save
it (for ``path_filter:`` in a supernet config, see :mod:`nastk.prediction.pruning`).

The path filter is the ``path_filter`` predictor plugin, reached through the registry and
checked against :class:`nastk.prediction.path_filter.PathFilter`; the engine imports no plugin
folder.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from nastk.cli.console import results_console
from nastk.config.compose import build_space, import_plugins
from nastk.core.errors import ConfigError, NastkError
from nastk.prediction.path_filter import PathFilter, make_path_filter
from nastk.run.record import open_run


@dataclass
class FitSummary:
    """What `nastk path-filter fit` did."""

    file: Path
    n_train: int
    n_holdout: int
    cost: str
    n_buckets: int
    bucket_tau: float  # held-out Kendall tau within cost buckets (weighted by bucket size)


def fit_from_run(run_dir: str | Path, out: str | Path, cost: str = "flops", n_buckets: int = 5,
                 holdout: float = 0.2, seed: int = 0,
                 options: dict[str, Any] | None = None) -> FitSummary:
    """Fit a path filter on a run's successful trials (the run's objective as the score, the
    recorded ``cost`` for the buckets), report its within-bucket Kendall tau on a random
    ``holdout`` share, refit on everything and save it to ``out``."""
    record = open_run(run_dir)
    run_dir = record.run_dir
    trials = record.finished
    import_plugins(record.config.plugins)
    space = build_space(record.config.space)
    rows = [(t.arch, record.objective.score(t.result), t.result.value(cost))
            for t in trials if t.result is not None]
    rows = [r for r in rows if r[1] is not None and r[2] is not None]
    if len(rows) < 10:
        seen = sorted({c for t in trials if t.result for c in t.result.costs})
        raise NastkError(f"{run_dir}: {len(rows)} successful trials with a {cost!r} cost; a path "
                         f"filter needs at least 10 (costs recorded: {seen}). Search longer, or "
                         "pick --cost from those")
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout must be in [0, 1), got {holdout}")
    opts = {**(options or {}), "cost": cost, "n_buckets": n_buckets}

    def make() -> PathFilter:
        return make_path_filter(opts, space, seed=seed, where="path filter options")

    archs = [r[0] for r in rows]
    scores = np.array([r[1] for r in rows], dtype=float)
    costs = np.array([r[2] for r in rows], dtype=float)
    tau, n_hold = math.nan, 0
    if holdout > 0:
        order = np.random.default_rng(seed).permutation(len(rows))
        n_hold = max(3, round(holdout * len(rows)))
        hold, train = order[:n_hold], order[n_hold:]
        filt = make().fit([archs[i] for i in train], scores[train], costs[train])
        tau = filt.within_bucket_tau([archs[i] for i in hold], scores[hold], costs[hold])
    final = make().fit(archs, scores, costs)
    path = final.save(out)
    return FitSummary(path, len(rows), n_hold, cost, n_buckets, tau)


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
