"""The engine's path-filter package (:mod:`nastk.prediction.path_filter`): the training set read
from results, the cost functions of paths, the check that a cost function agrees with evaluated
costs, loading a fitted filter, pruning a search space, fitting on a run's results; against
values computed by hand (the costs of tiny linear models) or by the plugin used directly."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from torch import nn

from nastk import Architecture, IntRange, Objective, SearchSpace
from nastk.core.errors import ConfigError, NastkError
from nastk.core.result import Result
from nastk.prediction.path_filter import (
    PathFilterUse,
    check_cost_fn_agrees,
    check_model_cost,
    filter_options,
    fit_on_results,
    load_path_filter,
    make_path_filter,
    path_cost_fn,
    pruned_search_space,
    training_set,
)

SPACE = SearchSpace([IntRange("x", 1, 8), IntRange("y", 0, 3)], name="grid")
OBJ = Objective(metric="score")


def arch(x: int, y: int = 0) -> Architecture:
    return Architecture({"x": x, "y": y})


class LinearTask:
    """A task stand-in whose model of an architecture is ``Linear(3, x)``: ``4x`` parameters and
    ``3x`` FLOPs (one multiply-add a weight) at input shape ``(3,)``."""

    input_shape = (3,)

    def __init__(self):
        self.built = []

    def build_model(self, space, a):
        self.built.append(a.key)
        return nn.Linear(3, a["x"])


class LinearSupernet:
    """A supernet stand-in whose sub-network of an architecture is ``Linear(2, x)``: ``3x``
    parameters and ``2x`` FLOPs at the task's input shape ``(2,)``."""

    task = SimpleNamespace(input_shape=(2,))

    def extract(self, a):
        return nn.Linear(2, a["x"])


def test_training_set_keeps_results_with_a_score_and_the_cost():
    results = [
        (arch(1), Result.complete({"score": 1.0}, {"flops": 10.0})),
        (arch(2), None),                                            # not evaluated
        (arch(3), Result.failed("oom", {"flops": 30.0})),           # no score
        (arch(4), Result.complete({"score": 2.0}, {"params": 5.0})),  # no flops
        (arch(5), Result.complete({"score": -1.0}, {"flops": 50.0, "params": 1.0})),
    ]
    data = training_set(results, OBJ, "flops")
    assert [a["x"] for a in data.archs] == [1, 5]
    assert data.scores == [1.0, -1.0] and data.costs == [10.0, 50.0]
    low = training_set(results, Objective(metric="score", direction="min"), "params")
    assert [a["x"] for a in low.archs] == [4, 5] and low.scores == [-2.0, 1.0]
    assert filter_options({"steps": 5, "cost": "x"}, "flops", 3) == {"steps": 5, "cost": "flops",
                                                                      "n_buckets": 3}


def test_path_cost_fn_counts_the_task_model_or_the_supernet_path_once_each():
    task = LinearTask()
    params = path_cost_fn("params", SPACE, task=task)
    flops = path_cost_fn("flops", SPACE, task=task)
    assert [params(arch(x)) for x in (1, 5, 8, 5)] == [4.0, 20.0, 32.0, 20.0]
    assert [flops(arch(x)) for x in (1, 5)] == [3.0, 15.0]
    assert task.built == [arch(x).key for x in (1, 5, 8, 1, 5)]  # the repeated 5: cached
    on_supernet = path_cost_fn("params", SPACE, supernet=LinearSupernet(), task=task)
    assert on_supernet(arch(4)) == 12.0
    assert path_cost_fn("flops", SPACE, supernet=LinearSupernet())(arch(4)) == 8.0
    with pytest.raises(ConfigError, match="needs a model to cost paths"):
        path_cost_fn("flops", SPACE)
    with pytest.raises(ConfigError, match=r"buckets by 'latency_ms'.*\['params', 'flops'\]"):
        path_cost_fn("latency_ms", SPACE, task=task)
    check_model_cost("flops")


def test_a_cost_fn_within_five_percent_of_the_evaluated_costs_passes():
    filt = make_path_filter({"cost": "flops"}, SPACE)
    archs = [arch(1), arch(2, 3)]
    check_cost_fn_agrees(filt, archs, [10.0, 20.0],
                         lambda a: {"flops": 10.4 if a["x"] == 1 else 19.2}, SPACE, "cost_fn")
    with pytest.raises(ConfigError, match=r"evaluator reported flops = 20 but the cost function "
                                          r"says 21\.2;.* set my\.cost_fn"):
        check_cost_fn_agrees(filt, archs, [10.0, 20.0],
                             lambda a: {"flops": 10.4 if a["x"] == 1 else 21.2}, SPACE,
                             "my.cost_fn")


def grid_results(n_y: int = 4) -> list[tuple[Architecture, Result]]:
    """Every architecture of SPACE with score ``y - x / 4`` and ``4x`` parameters (the
    LinearTask's)."""
    return [(arch(x, y), Result.complete({"score": y - x / 4}, {"params": 4.0 * x}))
            for x in range(1, 9) for y in range(n_y)]


def test_fit_on_results_saves_the_filter_a_direct_fit_gives(tmp_path):
    results = grid_results()
    summary = fit_on_results(results, OBJ, SPACE, tmp_path / "f.pt", cost="params",
                             n_buckets=2, holdout=0.25, seed=1, options={"steps": 40},
                             source="run")
    assert (summary.n_train, summary.n_holdout, summary.cost, summary.n_buckets) == \
        (32, 8, "params", 2)
    assert -1.0 <= summary.bucket_tau <= 1.0
    direct = make_path_filter({"steps": 40, "cost": "params", "n_buckets": 2}, SPACE, seed=1)
    direct.fit([a for a, _ in results], [r.value("score") for _, r in results],
               [r.value("params") for _, r in results])
    loaded = load_path_filter(summary.file, SPACE, task=LinearTask())
    every = [a for a, _ in results]
    costs = [4.0 * a["x"] for a in every]
    np.testing.assert_array_equal(loaded.score(every), direct.score(every, costs))
    assert loaded.prune(every, 0.5) == direct.prune(every, 0.5, costs)
    assert math.isnan(fit_on_results(results, OBJ, SPACE, tmp_path / "g.pt", cost="params",
                                     holdout=0.0, options={"steps": 5}).bucket_tau)
    with pytest.raises(NastkError, match=r"^run: 8 successful trials with a 'params' cost; a "
                                         r"path filter needs at least 10 \(costs recorded: "
                                         r"\['params'\]\)"):
        fit_on_results(results[:8], OBJ, SPACE, tmp_path / "h.pt", cost="params",
                       source="run")
    with pytest.raises(ConfigError, match=r"holdout must be in \[0, 1\)"):
        fit_on_results(results, OBJ, SPACE, tmp_path / "h.pt", cost="params", holdout=1.0)


def test_load_path_filter_costs_paths_on_the_task_and_refuses_what_it_cannot_cost(tmp_path):
    results = grid_results(2)
    fit_on_results(results, OBJ, SPACE, tmp_path / "p.pt", cost="params", n_buckets=2,
                   holdout=0.0, options={"steps": 5})
    filt = load_path_filter(tmp_path / "p.pt", SPACE, task=LinearTask())
    assert filt.cost == "params" and filt.cost_fn(arch(7)) == 28.0
    with pytest.raises(ConfigError, match=r"path_filter.file: .*none.pt not found; fit one with "
                                          r"`nastk path-filter fit"):
        load_path_filter(tmp_path / "none.pt", SPACE, task=LinearTask())
    timed = [(a, Result.complete({"score": 1.0 * a["y"]}, {"latency_ms": 1.0 * a["x"]}))
             for a, _ in results]
    fit_on_results(timed, OBJ, SPACE, tmp_path / "t.pt", cost="latency_ms", n_buckets=2,
                   holdout=0.0, options={"steps": 5})
    with pytest.raises(ConfigError, match=r"t\.pt buckets by 'latency_ms'"):
        load_path_filter(tmp_path / "t.pt", SPACE, task=LinearTask())


def test_pruned_search_space_keeps_what_the_filter_keeps_at_the_task_costs(tmp_path):
    """The pruned space of a ``path_filter:`` use equals the plugin's own pruning of the space
    with the same seed and the hand-computed costs ``4x``."""
    results = grid_results()
    fit_on_results(results, OBJ, SPACE, tmp_path / "p.pt", cost="params", n_buckets=2,
                   holdout=0.0, options={"steps": 40})
    use = PathFilterUse(file=tmp_path / "p.pt", keep_ratio=0.25, n_samples=40)
    pruned = pruned_search_space(use, SPACE, seed=3, task=LinearTask())
    filt = load_path_filter(tmp_path / "p.pt", SPACE, task=LinearTask())
    reference = filt.prune(SPACE, 0.25, cost_fn=lambda a: 4.0 * a["x"], n_samples=40, seed=3)
    every = [a for a, _ in results]
    kept = [a for a in every if pruned.is_kept(a)]
    assert kept == [a for a in every if reference.is_kept(a)]
    assert 0 < len(kept) < len(every)
    assert pruned.thresholds.tolist() == reference.thresholds.tolist()
