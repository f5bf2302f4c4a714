"""Contract tests over the predictor registry (in the style of Optuna's sampler tests): every
registered performance predictor goes through the interface the strategies rely on.

Each case is parametrized over ``registry.PREDICTORS.names()``, so a newly registered predictor
is covered without editing this file; PREDICTOR_OPTIONS only holds small options that keep each
case fast (a predictor missing from it is tested with its defaults). A predictor fits on a small
space whose score is known, predicts held-out architectures, and must rank them (Kendall tau,
computed with scipy) well above what a constant or random predictor reaches. Predictors whose
options name a task (the zero-cost proxies build each architecture's network and score it on a
batch of the task's data) get a space that builds networks and a tiny task; the score to learn
there is the network's log parameter count, counted with torch.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
from conftest import all_architectures
from scipy.stats import kendalltau
from test_contracts import ContractSpace, synthetic_result

from nastk.core import registry
from nastk.prediction.base import NotFittedError, Predictor, PredictorError
from nastk.space import Architecture, SearchSpace

#: small options per predictor (each fits in about a second on a busy 2-core machine)
PREDICTOR_OPTIONS: dict[str, dict[str, Any]] = {
    "gbdt": {"n_estimators": 60},
    "random_forest": {"n_estimators": 30},
    "mlp": {"hidden": [32], "min_steps": 150},
    "ensemble": {"n_members": 2, "member_options": {"hidden": [32], "min_steps": 150}},
    "path_filter": {"n_buckets": 2, "steps": 300, "hidden": [32], "cost": "cost"},
    "zero_cost": {"proxy": "params", "batch_size": 8},
    "with_proxies": {"proxies": ["params"], "inner": "ridge", "batch_size": 8},
}
#: the task given to predictors whose options have a ``task`` (tiny generated images)
NETWORK_TASK = {"name": "classification",
                "options": {"dataset": "synthetic", "n_samples": 40, "image_size": 8}}
#: a space of 256 small networks with distinct shapes (the task's head on a small_cnn body)
NETWORK_SPACE = ("small_cnn", {"stages": 2, "depths": [1, 2], "widths": [8, 16],
                               "kernels": [3, 5], "expansions": [1, 2], "stem_width": 8})
#: held-out Kendall tau every predictor must beat: a random ranking of the held-out sets here
#: has a standard deviation of 0.06-0.09, a constant one no tau at all
TAU_FLOOR = 0.5
SEED = 7


@dataclass(frozen=True)
class Problem:
    """Architectures to fit on and to predict, with their true score and cost."""

    space: SearchSpace
    train: list[Architecture]
    test: list[Architecture]
    score: Callable[[Architecture], float]
    cost: Callable[[Architecture], float]

    def scores(self, archs: list[Architecture]) -> np.ndarray:
        return np.array([self.score(a) for a in archs])

    def costs(self, archs: list[Architecture]) -> np.ndarray:
        return np.array([self.cost(a) for a in archs])


def split(space: SearchSpace, archs: list[Architecture], n_train: int, n_test: int,
          score: Callable[[Architecture], float], cost: Callable[[Architecture], float]
          ) -> Problem:
    order = np.random.default_rng(0).permutation(len(archs))
    return Problem(space, [archs[i] for i in order[:n_train]],
                   [archs[i] for i in order[n_train:n_train + n_test]], score, cost)


@cache
def encoding_problem() -> Problem:
    """The strategy contract's 384-architecture space: its synthetic score (without the failing
    corner) and its ``cost``, which grows with the score (so cost buckets matter)."""
    space = ContractSpace()
    archs = [a for a in all_architectures(space) if synthetic_result(space, a).ok]
    return split(space, archs, 100, 150,
                 lambda a: synthetic_result(space, a).metrics["score"],
                 lambda a: space.arch_costs(a)["cost"])


@cache
def network_problem() -> Problem:
    """NETWORK_SPACE with NETWORK_TASK's head: the score is the log of the network's parameter
    count (what the ``params`` proxy ranks by), counted on the built network with torch."""
    space = registry.instantiate(registry.SEARCH_SPACES, *NETWORK_SPACE)
    task = registry.instantiate(registry.TASKS, NETWORK_TASK["name"], NETWORK_TASK["options"])
    problem = split(space, all_architectures(space), 40, 60, lambda a: 0.0, lambda a: 0.0)
    n_params = {a.key: sum(p.numel() for p in task.build_model(space, a).parameters())
                for a in [*problem.train, *problem.test]}
    return Problem(space, problem.train, problem.test, lambda a: math.log(n_params[a.key]),
                   lambda a: float(n_params[a.key]))


def needs_task(name: str) -> bool:
    return "task" in registry.PREDICTORS.get(name).Options.model_fields


def problem_for(name: str) -> Problem:
    return network_problem() if needs_task(name) else encoding_problem()


def make(name: str, seed: int = SEED) -> Predictor:
    options = dict(PREDICTOR_OPTIONS.get(name, {}))
    if needs_task(name):
        options["task"] = NETWORK_TASK
        # the proxies are cached per process by architecture: forget them, so that every
        # predictor computes its own (and determinism is not the cache's)
        from nastk.predictors.zero_cost.scorer import ZeroCostScorer
        ZeroCostScorer._cache.clear()
    return registry.instantiate(registry.PREDICTORS, name, options, problem_for(name).space,
                                seed=seed)


def with_costs(predictor: Predictor, problem: Problem, archs: list[Architecture]
               ) -> dict[str, Any]:
    """The ``costs`` argument of a predictor that ranks within cost buckets (``uses_costs``)."""
    return {"costs": problem.costs(archs)} if predictor.uses_costs else {}


def fit(predictor: Predictor, problem: Problem) -> Predictor:
    return predictor.fit(problem.train, problem.scores(problem.train),
                         **with_costs(predictor, problem, problem.train))


def predict(predictor: Predictor, problem: Problem) -> np.ndarray:
    return predictor.predict(problem.test, **with_costs(predictor, problem, problem.test))


@dataclass
class Case:
    name: str
    problem: Problem
    predictor: Predictor  # fitted
    predicted: np.ndarray  # its predictions of problem.test


@pytest.fixture(scope="module", params=registry.PREDICTORS.names())
def case(request: pytest.FixtureRequest) -> Case:
    """Each registered predictor, fitted once for the tests of this module."""
    name = request.param
    problem = problem_for(name)
    predictor = fit(make(name), problem)
    return Case(name, problem, predictor, predict(predictor, problem))


def test_predictor_refuses_to_predict_before_fit(case):
    fresh = make(case.name)
    assert not fresh.is_fitted
    with pytest.raises(NotFittedError, match="fit"):
        predict(fresh, case.problem)
    if fresh.has_uncertainty:
        with pytest.raises(NotFittedError, match="fit"):
            fresh.predict_with_std(case.problem.test)
    assert not fresh.is_fitted


def test_predictor_ranks_held_out_architectures_deterministically(case):
    problem, p = case.problem, case.predicted
    assert case.predictor.is_fitted
    assert p.shape == (len(problem.test),) and p.dtype == np.float64, (p.shape, p.dtype)
    assert np.all(np.isfinite(p)), p
    tau = kendalltau(problem.scores(problem.test), p).statistic
    assert tau > TAU_FLOOR, f"{case.name}: held-out Kendall tau {tau:.3f}"
    twin = make(case.name)
    assert fit(twin, problem) is twin and twin.is_fitted
    np.testing.assert_array_equal(predict(twin, problem), p)


def test_predictor_uncertainty_is_a_std_or_refused(case):
    """``predict_with_std`` where ``has_uncertainty``: the mean is ``predict``'s, the std
    non-negative, finite and not all zero; elsewhere the documented error."""
    test = case.problem.test
    if not case.predictor.has_uncertainty:
        with pytest.raises(PredictorError, match="no uncertainty"):
            case.predictor.predict_with_std(test)
        return
    mean, std = case.predictor.predict_with_std(test)
    assert mean.shape == std.shape == (len(test),)
    np.testing.assert_allclose(mean, case.predicted, rtol=1e-9, atol=1e-9)
    assert np.all(np.isfinite(std)) and np.all(std >= 0) and std.max() > 0, std


def through_torch(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict as a checkpoint file holds it: ``torch.save``, read back weights-only."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def test_predictor_persists_through_every_way_it_offers(case, tmp_path):
    """Pickling (every predictor here: scikit-learn models, torch networks and the proxies'
    task all pickle), plus ``state_dict``/``load_state_dict`` (weights-only) and ``save``/
    ``load`` where a predictor has them; each gives back the same predictions."""
    restored: dict[str, Predictor] = {}
    try:
        restored["pickle"] = pickle.loads(pickle.dumps(case.predictor))
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        pytest.fail(f"{case.name} cannot be pickled ({err}): give it a state_dict or save/load "
                    "and test that here, or record here that it has no persistence")
    if callable(getattr(case.predictor, "state_dict", None)):
        fresh = make(case.name)
        fresh.load_state_dict(through_torch(case.predictor.state_dict()))
        restored["state_dict"] = fresh
    if callable(getattr(case.predictor, "save", None)):
        path = case.predictor.save(tmp_path / f"{case.name}.pt")
        restored["save/load"] = type(case.predictor).load(path, case.problem.space)
    for way, predictor in restored.items():
        assert predictor.is_fitted, way
        np.testing.assert_array_equal(predict(predictor, case.problem), case.predicted,
                                      err_msg=way)


COST_PREDICTORS = [n for n in registry.PREDICTORS.names()
                   if getattr(registry.PREDICTORS.get(n), "uses_costs", False)]


@pytest.mark.parametrize("name", COST_PREDICTORS)
def test_cost_predictor_ranks_within_its_cost_buckets_and_needs_costs(name):
    """A predictor with ``uses_costs`` (the path filter) ranks architectures of similar cost:
    its raw ``score`` orders the held-out architectures of each of its cost buckets like the
    truth (scipy's tau per bucket, weighted by the bucket's size), and it asks for the costs
    it is not given."""
    problem = problem_for(name)
    predictor = fit(make(name), problem)
    costs = problem.costs(problem.test)
    raw = predictor.score(problem.test, costs)
    truth = problem.scores(problem.test)
    buckets = predictor.bucket_of(costs)
    taus, sizes = [], []
    for b in np.unique(buckets):
        inside = buckets == b
        if inside.sum() >= 2:
            taus.append(kendalltau(truth[inside], raw[inside]).statistic)
            sizes.append(inside.sum())
    assert len(taus) >= 2, f"the held-out architectures fill {len(taus)} cost bucket(s)"
    tau = float(np.average(taus, weights=sizes))
    assert tau > TAU_FLOOR, f"{name}: within-bucket tau {taus} (mean {tau:.3f})"
    unfitted = make(name)
    with pytest.raises(PredictorError, match="costs"):
        unfitted.fit(problem.train, problem.scores(problem.train))
    with pytest.raises(PredictorError, match="costs"):
        predictor.predict(problem.test)


def test_the_tau_floor_is_out_of_reach_of_trivial_predictors():
    """The floor means something: a constant prediction has no tau, and 200 random rankings
    of either held-out set stay far below it."""
    rng = np.random.default_rng(0)
    for problem in (encoding_problem(), network_problem()):
        truth = problem.scores(problem.test)
        assert math.isnan(kendalltau(truth, np.zeros_like(truth)).statistic)
        best = max(kendalltau(truth, rng.permutation(len(truth))).statistic
                   for _ in range(200))
        assert best < TAU_FLOOR - 0.15, best


def test_predictor_options_name_registered_predictors_only():
    assert set(PREDICTOR_OPTIONS) <= set(registry.PREDICTORS.names())
