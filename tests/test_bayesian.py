"""The Gaussian-process strategy ``bo``: its posterior and likelihood are the textbook ones, it
finds the optimum of a small space enumerated whole, beats random search on a large one, and
never proposes an architecture twice or one the space rejects."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space import Architecture, Categorical, SearchSpace
from nastk.strategies.bayesian import BayesianOptimisation
from nastk.strategies.hamming_gp import HammingGP, Posterior
from nastk.strategies.random_search import RandomSearch

OBJECTIVE = Objective(metric="score")


def gp_with(counts: list[int], seed: int) -> HammingGP:
    gp = HammingGP(counts)
    gp.params = np.random.default_rng(seed).normal(-0.5, 0.5, len(gp.params))
    return gp


def test_rank_one_updates_give_the_batch_posterior():
    counts = [3, 4, 2, 5]
    rng = np.random.default_rng(0)
    gp = gp_with(counts, 1)
    pool = np.array(list(itertools.product(*[range(c) for c in counts])))
    train = pool[rng.choice(len(pool), 25, replace=False)]
    y = rng.normal(size=25)
    pool_oh, train_oh = gp.one_hot(pool), gp.one_hot(train)
    grown = Posterior(gp, pool_oh, train_oh[:3])
    for oh in train_oh[3:]:
        grown.add(oh)
    mean, std = grown.predict(y)
    # the textbook posterior, computed directly
    theta, noise = np.exp(gp.params[:4]), np.exp(gp.params[4])
    signal, additive = np.exp(gp.params[5]), np.exp(gp.params[6])

    def k(a, b):
        differ = a[:, None, :] != b[None, :, :]
        return (signal * np.exp(-(differ * theta).sum(-1))
                + additive * (1 - differ).sum(-1) / len(counts))

    kt = k(train, train) + (noise + 1e-6) * np.eye(25)
    ks = k(train, pool)
    np.testing.assert_allclose(mean, ks.T @ np.linalg.solve(kt, y), atol=1e-9)
    var = signal + additive - np.einsum("ij,ij->j", ks, np.linalg.solve(kt, ks))
    np.testing.assert_allclose(std, np.sqrt(np.maximum(var, 1e-12)), atol=1e-7)
    assert grown.n == 25 and len(grown.chol) >= 25  # the buffers grew past their first size


def test_the_likelihood_gradient_is_the_finite_difference_one():
    counts = [3, 3, 4]
    rng = np.random.default_rng(2)
    x = np.array([[rng.integers(c) for c in counts] for _ in range(15)])
    y = rng.normal(size=15)
    mismatch = (x[:, None, :] != x[None, :, :]).transpose(2, 0, 1).astype(float)
    p = rng.normal(-0.5, 0.3, 6)
    _, grad = HammingGP._objective(p, mismatch, y)
    numeric = approx_fprime(p, lambda q: HammingGP._objective(q, mismatch, y)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)
    gp = HammingGP(counts)
    before = HammingGP._objective(gp.params, mismatch, y)[0]
    gp.fit(x, y, max_iter=40)
    assert HammingGP._objective(gp.params, mismatch, y)[0] < before  # the fit improves it


def interacting_problem():
    """6 decisions x 4 options (4,096 architectures): a per-decision preference plus a strong
    pairwise interaction between decisions 0 and 3, so the best arch is not the per-decision
    best one; unique optimum."""
    dims = [Categorical(f"e{i}", ["a", "b", "c", "d"]) for i in range(6)]
    space = SearchSpace(dims, name="interacting")
    rng = np.random.default_rng(5)
    prefs = rng.random((6, 4))
    inter = rng.random((4, 4)) * 2.0

    def score(d):
        return float(sum(prefs[i, a] for i, a in enumerate(d)) + inter[d[0], d[3]])

    every = list(itertools.product(range(4), repeat=6))
    best = max(every, key=score)
    return space, score, score(best)


def run(strategy, space, score, budget):
    seen, best, curve = set(), -np.inf, []
    while len(seen) < budget:
        (arch,) = strategy.ask(1)
        assert arch.key not in seen, "proposed an evaluated architecture again"
        seen.add(arch.key)
        value = score(space.to_decisions(arch))
        strategy.tell(arch, Result.complete({"score": value}))
        best = max(best, value)
        curve.append(best)
    return curve


@pytest.mark.slow
def test_finds_the_optimum_of_a_small_space_before_random_search_does():
    space, score, optimum = interacting_problem()
    found, random_regret, bo_regret = [], [], []
    for seed in range(5):
        curve = run(BayesianOptimisation(space, OBJECTIVE, seed=seed, warmup=10), space, score,
                    80)
        found.append(curve.index(optimum) + 1 if optimum in curve else None)
        bo_regret.append(optimum - curve[39])
        rand = run(RandomSearch(space, OBJECTIVE, seed=seed), space, score, 40)
        random_regret.append(optimum - rand[-1])
    assert all(q is not None for q in found), found  # within 80 of 4,096 in every seed
    assert np.mean(bo_regret) < 0.25 * np.mean(random_regret)


@pytest.mark.slow
def test_a_large_space_uses_sampled_pools_and_beats_random():
    dims = [Categorical(f"c{i}", list(range(6))) for i in range(9)]  # 10M architectures
    space = SearchSpace(dims, name="large")
    rng = np.random.default_rng(3)
    prefs = rng.random((9, 6))

    def score(d):
        return float(sum(prefs[i, a] for i, a in enumerate(d)))

    optimum = float(prefs.max(1).sum())
    bo, rand = [], []
    for seed in range(3):
        s = BayesianOptimisation(space, OBJECTIVE, seed=seed, warmup=10, pool_size=300)
        assert not s._enumerate
        bo.append(optimum - run(s, space, score, 60)[-1])
        rand.append(optimum - run(RandomSearch(space, OBJECTIVE, seed=seed), space, score,
                                  60)[-1])
    assert np.mean(bo) < 0.5 * np.mean(rand)


def test_rules_of_the_space_are_kept_and_failures_skipped():
    class Ruled(SearchSpace):
        def check_constraints(self, arch: Architecture) -> None:
            if arch["a"] == arch["b"]:
                from nastk.core.errors import InvalidArchitectureError

                raise InvalidArchitectureError("a and b must differ")

    space = Ruled([Categorical("a", [0, 1, 2]), Categorical("b", [0, 1, 2]),
                   Categorical("c", [0, 1])], name="ruled")
    s = BayesianOptimisation(space, OBJECTIVE, seed=0, warmup=3)
    asked = []
    for _ in range(12):  # the 12 valid architectures, each once
        (arch,) = s.ask(1)
        assert space.is_valid(arch)
        asked.append(arch.key)
        s.tell(arch, Result.failed("boom") if arch["c"] == 1 and arch["a"] == 0
               else Result.complete({"score": float(arch["a"] + arch["c"])}))
    assert len(set(asked)) == 12
    assert len(s._history) == 10  # the two failures taught nothing


@pytest.mark.parametrize("bad", [{"warmup": 1}, {"refit_growth": 1.0}, {"acquisition": "pi"}])
def test_bad_options_are_named(bad):
    from nastk.core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"BayesianOptimisation:\n  {next(iter(bad))}: "):
        BayesianOptimisation(SearchSpace([Categorical("a", [0, 1])]), OBJECTIVE, **bad)
