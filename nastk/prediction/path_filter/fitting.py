"""Fitting a path filter on evaluated architectures: on a finished run's results (measure the
held-out within-bucket tau, refit on everything, save: `nastk path-filter fit` and the recipe's
``path_filter_fit`` stage), or on a search's warm-up results to prune the space it goes on
searching (the ``path_filter_search`` strategy)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nastk.core.errors import ConfigError, NastkError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.prediction.path_filter.contract import CostFn, PathFilter, make_path_filter
from nastk.prediction.path_filter.costs import check_cost_fn_agrees
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

#: evaluated architectures with their results (``None``: not evaluated)
Results = Iterable[tuple[Architecture, Result | None]]

#: the fewest architectures `fit_on_results` fits a filter on
MIN_RUN_RESULTS = 10


@dataclass(frozen=True)
class TrainingSet:
    """What a path filter is fitted on: architectures, their scores (larger is better) and
    their costs, in the order of the results they come from."""

    archs: list[Architecture]
    scores: list[float]
    costs: list[float]


def training_set(results: Results, objective: Objective, cost: str) -> TrainingSet:
    """The results with both a score under ``objective`` and a recorded ``cost``."""
    archs, scores, costs = [], [], []
    for arch, result in results:
        if result is None:
            continue
        score, value = objective.score(result), result.value(cost)
        if score is not None and value is not None:
            archs.append(arch)
            scores.append(score)
            costs.append(value)
    return TrainingSet(archs, scores, costs)


def filter_options(options: Mapping[str, Any] | None, cost: str,
                   n_buckets: int) -> dict[str, Any]:
    """The path filter's options: ``options`` with the cost its buckets are cut on and their
    number."""
    return {**(options or {}), "cost": cost, "n_buckets": n_buckets}


@dataclass
class FitSummary:
    """What fitting a path filter on a run did."""

    file: Path
    n_train: int
    n_holdout: int
    cost: str
    n_buckets: int
    bucket_tau: float  # held-out Kendall tau within cost buckets (weighted by bucket size)


def fit_on_results(results: Results, objective: Objective, space: SearchSpace,
                   out: str | Path, *, cost: str = "flops", n_buckets: int = 5,
                   holdout: float = 0.2, seed: int = 0,
                   options: Mapping[str, Any] | None = None,
                   source: str | Path = "results") -> FitSummary:
    """Fit a path filter on ``results`` (``objective``'s score, the recorded ``cost`` for the
    buckets), measure its within-bucket Kendall tau on a random ``holdout`` share (fitted on
    the rest), refit on everything and save it to ``out``. ``source`` (the run folder) starts
    the error messages."""
    results = list(results)
    data = training_set(results, objective, cost)
    if len(data.archs) < MIN_RUN_RESULTS:
        seen = sorted({c for _, r in results if r is not None for c in r.costs})
        raise NastkError(f"{source}: {len(data.archs)} successful trials with a {cost!r} cost; "
                         f"a path filter needs at least {MIN_RUN_RESULTS} (costs recorded: "
                         f"{seen}). Search longer, or pick --cost from those")
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout must be in [0, 1), got {holdout}")
    opts = filter_options(options, cost, n_buckets)

    def make() -> PathFilter:
        return make_path_filter(opts, space, seed=seed, where="path filter options")

    archs = data.archs
    scores = np.array(data.scores, dtype=float)
    costs = np.array(data.costs, dtype=float)
    tau, n_hold = math.nan, 0
    if holdout > 0:
        order = np.random.default_rng(seed).permutation(len(archs))
        n_hold = max(3, round(holdout * len(archs)))
        hold, train = order[:n_hold], order[n_hold:]
        filt = make().fit([archs[i] for i in train], scores[train], costs[train])
        tau = filt.within_bucket_tau([archs[i] for i in hold], scores[hold], costs[hold])
    final = make().fit(archs, scores, costs)
    path = final.save(out)
    return FitSummary(path, len(archs), n_hold, cost, n_buckets, tau)


def prune_after_warmup(space: SearchSpace, results: Sequence[tuple[Architecture, Result]],
                       objective: Objective, *, cost: str, n_buckets: int,
                       options: Mapping[str, Any] | None, cost_fn: CostFn, keep_ratio: float,
                       n_samples: int, seed: int, where: str = "strategy.options"
                       ) -> tuple[PathFilter, SearchSpace]:
    """Fit a path filter on a search's warm-up ``results`` and prune ``space`` with it: the
    predicted top ``keep_ratio`` of every cost bucket, thresholds from ``n_samples`` draws of
    ``space`` with ``seed``, architectures costed by ``cost_fn`` (which must agree with the
    evaluated costs). ``where`` is the options' config path, for the error messages."""
    data = training_set(results, objective, cost)
    if len(data.archs) < 2:
        raise ConfigError(f"path-filter search: the warm-up results carry no {cost!r} cost "
                          f"(costs seen: {sorted(results[-1][1].costs)}); set {where}.cost to "
                          "one the evaluator reports")
    filt = make_path_filter(filter_options(options, cost, n_buckets), space, seed=seed,
                            cost_fn=cost_fn, where=f"{where}.filter_options")
    check_cost_fn_agrees(filt, data.archs, data.costs, cost_fn, space, f"{where}.cost_fn")
    filt.fit(data.archs, data.scores, data.costs)
    pruned = filt.prune(space, keep_ratio, cost_fn=cost_fn, n_samples=n_samples, seed=seed)
    assert isinstance(pruned, SearchSpace)
    return filt, pruned
