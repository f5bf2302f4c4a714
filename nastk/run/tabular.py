"""Searches over tabular benchmarks, in memory: strategy comparisons over many seeds.

A tabular benchmark answers a query in microseconds, so comparing strategies over dozens of
seeds needs no record on disk: :func:`run_tabular` runs the engine's own loop
(:class:`nastk.run.loop.Search`) over a :class:`~nastk.run.memory_store.MemoryStorage` that
keeps no strategy state. Its semantics are the engine's: proposals are validated, a repeated
proposal is answered from the results so far (telling the strategy again) and does not count
against the budget, the budget is a number of distinct architectures evaluated, and a result
without the objective's metric is recorded as failed. Also the helpers of the figures drawn
from such searches: queries to reach a target, and random search's exact expected incumbent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nastk.core.objective import Objective
from nastk.core.trial import Trial
from nastk.evaluation.base import Evaluator
from nastk.run.loop import Budget, Search
from nastk.run.memory_store import MemoryStorage
from nastk.space.architecture import Architecture
from nastk.strategies.base import Strategy


@dataclass
class Trajectory:
    """One search's history: the incumbent (best by the search metric) after every query."""

    archs: list[Architecture] = field(default_factory=list)
    incumbent_report: list[float] = field(default_factory=list)  # report metric of incumbent
    duplicates: int = 0
    #: why the search stopped (:attr:`nastk.run.loop.Search.stop_reason`)
    stop_reason: str = ""

    @property
    def queries(self) -> int:
        return len(self.archs)

    @property
    def final_report(self) -> float:
        return self.incumbent_report[-1] if self.incumbent_report else math.nan

    def queries_to_reach(self, target: float) -> int | None:
        """First query after which the incumbent's report metric is at least ``target``."""
        return first_reach(self.incumbent_report, target)


def first_reach(curve: Sequence[float], target: float) -> int | None:
    """1-based position of the first value of ``curve`` that is at least ``target``."""
    for i, v in enumerate(curve):
        if v >= target:
            return i + 1
    return None


def expected_random_incumbent(search: Sequence[float], report: Sequence[float],
                              n: int) -> float:
    """The exact expected ``report`` value of random search's incumbent after ``n`` distinct
    queries drawn uniformly without replacement from a table of ``len(search)`` architectures.

    The incumbent is the best by ``search`` (larger is better); among architectures tied on
    ``search`` the first one seen wins, which makes each of them equally likely, so a tie
    group contributes its mean ``report``. With the table sorted by ``search`` (best first),
    the chance that no query hits the first ``k`` rows is ``C(M - k, n) / C(M, n)``; the
    incumbent lies in the tie group spanning rows ``a .. b - 1`` with probability
    ``P(none in the first a) - P(none in the first b)``.
    """
    s = np.asarray(search, dtype=float)
    r = np.asarray(report, dtype=float)
    if s.shape != r.shape or s.ndim != 1 or not len(s):
        raise ValueError(f"search and report must be equal-length 1-d tables, got {s.shape} "
                         f"and {r.shape}")
    if np.isnan(s).any() or np.isnan(r).any():
        raise ValueError("the tables hold NaN; drop those architectures first")
    m = len(s)
    if not 1 <= n <= m:
        raise ValueError(f"n must be in 1..{m} (the table's size), got {n}")
    order = np.argsort(-s, kind="stable")
    s, r = s[order], r[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], m]
    group_mean = np.add.reduceat(r, starts) / (ends - starts)
    j = np.arange(m)
    ratio = np.where(j < m - n, (m - n - j) / np.maximum(m - j, 1), 0.0)
    p_none = np.r_[1.0, np.cumprod(ratio)]  # p_none[k]: no query among the first k rows
    return float(((p_none[starts] - p_none[ends]) * group_mean).sum())


def calibrated_budget(search: Sequence[float], report: Sequence[float], target: float,
                      max_n: int | None = None) -> int | None:
    """The smallest number of random queries whose expected incumbent ``report`` value
    (:func:`expected_random_incumbent`) reaches ``target``: the query budget at which a
    published random-search figure is matched; ``None`` if no ``n <= max_n`` reaches it."""
    top = len(search) if max_n is None else min(max_n, len(search))
    for n in range(1, top + 1):  # a scan, not a bisection: the report metric need not grow
        if expected_random_incumbent(search, report, n) >= target:  # with n everywhere
            return n
    return None


def run_tabular(strategy: Strategy, evaluator: Evaluator, objective: Objective, budget: int,
                report_metric: str | None = None, max_duplicate_streak: int = 1000,
                on_query: Callable[[int, Trajectory], None] | None = None) -> Trajectory:
    """Search with ``strategy`` until ``budget`` distinct architectures were evaluated (or
    ``max_duplicate_streak`` proposals in a row were repeats).

    The incumbent is the architecture with the best ``objective`` score so far; the trajectory
    records its ``report_metric`` (e.g. the 200-epoch test accuracy when the search metric is
    the 12-epoch validation accuracy; default: the objective's metric). ``on_query(n, traj)``
    is called after each of the ``n`` evaluations.
    """
    report_metric = report_metric or objective.metric
    traj = Trajectory()
    if budget < 1:
        return traj

    def on_trial(trial: Trial, n_done: int, best: Trial | None) -> None:
        traj.archs.append(trial.arch)
        report = math.nan
        if best is not None and best.result is not None:
            report = float(best.result.value(report_metric) or math.nan)
        traj.incumbent_report.append(report)
        traj.duplicates = search.duplicates
        if on_query is not None:
            on_query(traj.queries, traj)

    search = Search(strategy.space, strategy, evaluator, objective,
                    MemoryStorage(keep_strategy_state=False),
                    Budget(trials=budget, max_duplicate_streak=max_duplicate_streak),
                    on_trial=on_trial)
    search.run()
    traj.duplicates = search.duplicates
    traj.stop_reason = search.stop_reason
    return traj


def _one_thread() -> None:
    """Torch and the BLAS behind numpy/scipy on one thread, so CPU seconds are one core's: the
    environment for libraries loaded later in the worker, threadpoolctl for those loaded."""
    import os

    import torch
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

    torch.set_num_threads(1)
    global _BLAS_LIMIT
    _BLAS_LIMIT = threadpool_limits(1)  # kept alive for the worker's life


_BLAS_LIMIT: Any = None


def run_jobs(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int
             ) -> list[Any]:
    """``fn(*job)`` for every job on ``workers`` processes (one thread each), in
    completion order, printing about 20 progress lines with the elapsed time to stderr."""
    import sys
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    t0 = time.time()
    out: list[Any] = []
    with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        for i, fut in enumerate(as_completed(futures), start=1):
            out.append(fut.result())
            if i % max(1, len(jobs) // 20) == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} searches done ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    return out
