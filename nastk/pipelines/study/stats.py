"""The statistics of a study: cross-task ranks, normalised regret and paired tests.

Scores are oriented larger-is-better throughout (a minimised metric is negated before it gets
here). A *table* is ``{task: {strategy: [final value of each seed, in seed order]}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np

__all__ = ["average_ranks", "mean_normalised_regret", "normalised_regret", "ranks",
           "wilcoxon_pairs"]

Table = Mapping[str, Mapping[str, Sequence[float]]]


def ranks(values: Mapping[str, float]) -> dict[str, float]:
    """Rank of each strategy by its value, 1 = best (largest); tied values share the average of
    the ranks they span (``{a: 3, b: 3, c: 1}`` -> ``{a: 1.5, b: 1.5, c: 3}``)."""
    items = sorted(values.items(), key=lambda kv: -kv[1])
    out: dict[str, float] = {}
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1][1] == items[i][1]:
            j += 1
        for k in range(i, j + 1):
            out[items[k][0]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _strategies(table: Table) -> list[str]:
    tasks = list(table)
    if not tasks:
        raise ValueError("the study table is empty")
    names = list(table[tasks[0]])
    for t in tasks[1:]:
        if set(table[t]) != set(names):
            raise ValueError(f"task {t!r} has strategies {sorted(table[t])}, task "
                             f"{tasks[0]!r} has {sorted(names)}: every task needs every "
                             "strategy to rank them across tasks")
    return names


def average_ranks(table: Table) -> dict[str, float]:
    """Each strategy's rank on every task (by its mean over seeds), averaged over tasks."""
    names = _strategies(table)
    per_task = [ranks({s: float(np.mean(table[t][s])) for s in names}) for t in table]
    return {s: float(np.mean([r[s] for r in per_task])) for s in names}


def normalised_regret(value: float, optimum: float, worst: float) -> float:
    """``(optimum - value) / (optimum - worst)``: 0 at the optimum, 1 at the worst value, so
    tasks with different scales can be averaged."""
    span = optimum - worst
    if not span > 0:
        raise ValueError(f"normalising regret needs optimum > worst, got {optimum} and {worst}")
    return (optimum - value) / span


def mean_normalised_regret(table: Table, optimum: Mapping[str, float | None] | None = None,
                           worst: Mapping[str, float | None] | None = None) -> dict[str, float]:
    """Each strategy's normalised regret (:func:`normalised_regret` of its mean over seeds),
    averaged over tasks. A task's ``optimum`` and ``worst`` are the true ones where given (a
    tabular benchmark's best and worst architecture), else the best and worst value any seed
    of any strategy reached; a task on which those are equal adds 0 for every strategy."""
    names = _strategies(table)
    optimum, worst = optimum or {}, worst or {}
    out = {s: 0.0 for s in names}
    for t, row in table.items():
        seen = [v for s in names for v in row[s]]
        hi = optimum.get(t)
        lo = worst.get(t)
        hi = max(seen) if hi is None else hi
        lo = min(seen) if lo is None else lo
        if not hi > lo:  # every run reached the same value (e.g. one seed of one strategy)
            continue  # and no true range is given: no regret tells them apart
        for s in names:
            out[s] += normalised_regret(float(np.mean(row[s])), hi, lo) / len(table)
    return out


def wilcoxon_pairs(row: Mapping[str, Sequence[float]]) -> dict[tuple[str, str], dict[str, float]]:
    """Paired two-sided Wilcoxon signed-rank test for each pair of strategies on one task, the
    pairs being the seeds (seed i of one strategy against seed i of the other). Per pair:
    ``statistic`` (the smaller of the positive- and negative-rank sums), ``p`` (exact for up to
    25 pairs without ties or zero differences, else the normal approximation, as
    ``scipy.stats.wilcoxon`` decides; 1.0 when every difference is zero), ``n`` and the mean
    difference ``mean_diff`` (first minus second)."""
    from scipy.stats import wilcoxon

    out: dict[tuple[str, str], dict[str, float]] = {}
    for a, b in combinations(row, 2):
        x, y = np.asarray(row[a], dtype=float), np.asarray(row[b], dtype=float)
        if x.shape != y.shape:
            raise ValueError(f"strategies {a!r} and {b!r} have {len(x)} and {len(y)} seeds; "
                             "a paired test needs the same seeds")
        d = x - y
        if not np.any(d != 0):
            stat, p = 0.0, 1.0
        else:
            res = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
            stat, p = float(res.statistic), float(res.pvalue)
        out[(a, b)] = {"statistic": stat, "p": p if not math.isnan(p) else 1.0,
                       "n": float(len(d)), "mean_diff": float(d.mean())}
    return out
