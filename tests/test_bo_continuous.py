"""``bo`` on continuous (:class:`~nastk.space.continuous.Float`) and conditional dimensions:
real values proposed off the decision grid, a smooth function of a learning rate optimised
better than by random search, a positive semi-definite kernel with the analytic gradient, and
an exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space import Architecture, Categorical, Float, IntRange, SearchSpace
from nastk.space.conditions import when
from nastk.strategies.bayesian import BayesianOptimisation
from nastk.strategies.hamming_gp import UNIT, HammingGP, Posterior
from nastk.strategies.random_search import RandomSearch

OBJECTIVE = Objective(metric="score")
OPS = {"a": 0.0, "b": 0.3, "c": -0.2}
OPTIMUM = 0.3  # lr = 10**-2.5, op = b, wd = 0.3


def lr_space() -> SearchSpace:
    return SearchSpace([Float("lr", 1e-5, 1e-1, log=True), Categorical("op", list(OPS)),
                        Float("wd", 0.0, 1.0)], name="lr_space")


def smooth(arch: Architecture) -> float:
    """Best at lr = 10**-2.5 (0.625 of the log range: between two of the 16 grid points)."""
    return (-(math.log10(arch["lr"]) + 2.5) ** 2 + OPS[arch["op"]]
            - 0.5 * (arch["wd"] - 0.3) ** 2)


def conditional_space() -> SearchSpace:
    return SearchSpace([
        IntRange("depth", 1, 3), Categorical("op", ["x", "y"]),
        Float("lr", 1e-4, 1e-1, log=True),
        Float("drop", 0.0, 0.5).only_if(when("depth", ">=", 2)),
        Categorical("op_3", ["x", "y", "z"]).only_if(when("depth", ">=", 3)),
    ], name="conditional_floats")


def conditional_score(arch: Architecture) -> float:
    return (-(math.log10(arch["lr"]) + 2.0) ** 2 + 0.2 * arch["depth"]
            - (arch.get("drop", 0.2) - 0.2) ** 2 + (0.1 if arch.get("op_3") == "z" else 0.0))


def drive(strategy, score, steps: int) -> list[Architecture]:
    out = []
    for _ in range(steps):
        (arch,) = strategy.ask(1)
        assert strategy.space.is_valid(arch)
        out.append(arch)
        strategy.tell(arch, Result.complete({"score": score(arch)}))
    return out


def test_a_float_is_a_continuous_decision_and_never_enumerated():
    bo = BayesianOptimisation(conditional_space(), OBJECTIVE, seed=0)
    assert bo.counts == [3, 2, 0, 0, 4]  # depth, op, lr, drop (continuous), op_3 + absent
    assert not bo._enumerate
    rng = np.random.default_rng(0)
    for _ in range(30):
        arch = bo.space.sample(rng)
        code = bo._encode(arch)
        assert code[3] == (-1 if "drop" not in arch else code[3]) and code[3] >= -1
        assert bo._decode(code) == arch  # the real values come back, not grid points


def test_proposals_after_warmup_are_mostly_off_the_grid():
    space = lr_space()
    grid = space["lr"].grid
    bo = BayesianOptimisation(space, OBJECTIVE, seed=1, warmup=8, pool_size=300)
    proposed = drive(bo, smooth, 30)[8:]
    off = [abs(u - round(u)) > 1e-3
           for u in (space["lr"].to_unit(a["lr"]) * (grid - 1) for a in proposed)]
    assert sum(off) >= 0.8 * len(off), f"only {sum(off)} of {len(off)} proposals off the grid"


def regret(strategy, budget: int) -> float:
    return OPTIMUM - max(smooth(a) for a in drive(strategy, smooth, budget))


@pytest.mark.slow
def test_a_smooth_function_of_a_learning_rate_is_optimised_better_than_at_random():
    """40 evaluations, seeds 0..4. Measured regrets (bo, random): 0.0042 / 0.036,
    0.00001 / 0.43, 0.0030 / 0.23, 0.0008 / 0.0077, 0.0115 / 0.030; bo wins on every seed,
    its median regret a tenth of random search's. Asserted: bo no worse on any seed, its
    median under a third of random's, and every bo regret under 0.05 (an lr within a factor
    of 1.7 of the optimum with the best op)."""
    space = lr_space()
    bo = [regret(BayesianOptimisation(space, OBJECTIVE, seed=s, warmup=10, pool_size=500), 40)
          for s in range(5)]
    rnd = [regret(RandomSearch(space, OBJECTIVE, seed=s), 40) for s in range(5)]
    assert all(b <= r for b, r in zip(bo, rnd, strict=True)), (bo, rnd)
    assert np.median(bo) < np.median(rnd) / 3, (bo, rnd)
    assert max(bo) < 0.05, bo


def mixed_rows(gp: HammingGP, n: int, seed: int) -> np.ndarray:
    """Random decision rows for ``gp``: categorical options, continuous places, about a third
    of the continuous ones absent, and some repeated places."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, len(gp.counts)), dtype=np.int64)
    for j, c in enumerate(gp.counts):
        if c:
            rows[:, j] = rng.integers(c, size=n)
        else:
            u = rng.choice(rng.random(n // 2), size=n)
            rows[:, j] = np.where(rng.random(n) < 0.3, -1, np.round(u * UNIT))
    return rows


def test_the_kernel_is_psd_on_mixed_and_absent_inputs_and_its_gradient_is_exact():
    gp = HammingGP([3, 0, 4, 0])
    for seed in range(5):
        gp.params = np.random.default_rng(seed).normal(0.0, 1.5, len(gp.params))
        oh = gp.one_hot(mixed_rows(gp, 60, seed))
        k = gp.cross(oh, oh)
        np.testing.assert_allclose(k, k.T, atol=1e-12)
        assert np.linalg.eigvalsh(k).min() > -1e-9 * np.abs(k).max()
    # absent vs absent: distance 0; absent vs present: 1, as a categorical mismatch
    rows = np.array([[0, -1, 0, 0], [0, -1, 0, 0], [0, 5, 0, 0], [0, 0, 0, 0]])
    dist = gp.distances(rows)
    assert dist[1, 0, 1] == 0.0 and dist[1, 0, 2] == 1.0 and 0.0 < dist[1, 2, 3] < 1e-6
    # the likelihood gradient against finite differences, continuous decisions included
    rng = np.random.default_rng(2)
    x = mixed_rows(gp, 18, 7)
    y = rng.normal(size=18)
    dist = gp.distances(x)
    p = rng.normal(-0.5, 0.5, len(gp.params))
    _, grad = HammingGP._objective(p, dist, y)
    numeric = approx_fprime(p, lambda q: HammingGP._objective(q, dist, y)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)
    # the kernel the fit sees is the one the posterior uses
    gp.params = p
    d = len(gp.counts)
    theta, signal, additive = np.exp(p[:d]), np.exp(p[d + 1]), np.exp(p[d + 2])
    direct = (signal * np.exp(-np.tensordot(theta, dist, 1))
              + additive / d * (d - dist.sum(0)))
    oh = gp.one_hot(x)
    np.testing.assert_allclose(gp.cross(oh, oh), direct, atol=1e-12)
    before = HammingGP._objective(gp.params, dist, y)[0]
    gp.fit(x, y, max_iter=30)
    assert HammingGP._objective(gp.params, dist, y)[0] < before
    # rank-one updates give the batch posterior
    pool = gp.one_hot(mixed_rows(gp, 40, 8))
    grown = Posterior(gp, pool, oh[:4])
    for row in oh[4:]:
        grown.add(row)
    mean, std = grown.predict(y)
    batch = Posterior(gp, pool, oh)
    mean_b, std_b = batch.predict(y)
    np.testing.assert_allclose(mean, mean_b, atol=1e-8)
    np.testing.assert_allclose(std, std_b, atol=1e-7)


@pytest.mark.parametrize("acquisition", ["ei", "ucb"])
def test_resumes_exactly_mid_search_on_a_conditional_space_with_floats(acquisition):
    space = conditional_space()
    options = {"warmup": 6, "pool_size": 200, "acquisition": acquisition}
    reference = BayesianOptimisation(space, OBJECTIVE, seed=4, **options)
    expected = [a.key for a in drive(reference, conditional_score, 24)]
    assert len(set(expected)) == 24
    assert any("drop" in Architecture.from_json(k) for k in expected[6:])
    killed = BayesianOptimisation(space, OBJECTIVE, seed=4, **options)
    assert [a.key for a in drive(killed, conditional_score, 14)] == expected[:14]
    state = json.loads(json.dumps(killed.state_dict()))
    assert any(-1 in d for d, _ in state["history"])  # absent places are kept
    killed.ask(1)  # a proposal lost with the process
    resumed = BayesianOptimisation(space, OBJECTIVE, seed=4, **options)
    resumed.load_state_dict(state)
    assert [a.key for a in drive(resumed, conditional_score, 10)] == expected[14:]
