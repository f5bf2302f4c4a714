"""The multi-fidelity strategy ``bohb``: without rungs it is ``bo`` proposal for proposal; it keeps
every rung once, resumes exactly from its state, and on NAS-Bench-201 its 12-epoch rungs make it
propose architectures that are better at 200 epochs than ``bo`` fed the 200-epoch results only."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch

from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space import Architecture, Categorical, SearchSpace
from nastk.strategies.bayesian import BayesianOptimisation
from nastk.strategies.bohb import MultiFidelityBO

OBJECTIVE = Objective(metric="score")
SPACE = SearchSpace([Categorical(f"d{i}", ["a", "b", "c", "d"]) for i in range(5)],
                    name="toy")  # 1,024 architectures, enumerated
_PREFS = np.random.default_rng(5).random((5, 4))
_INTER = np.random.default_rng(6).random((4, 4))


def score(arch: Architecture, resource: float) -> float:
    """A per-decision preference plus an interaction; a lower resource sees a noisier, scaled
    version of it (as fewer epochs do)."""
    d = SPACE.to_decisions(arch)
    full = float(sum(_PREFS[i, a] for i, a in enumerate(d)) + _INTER[d[0], d[3]])
    noise = math.sin(7.0 * sum((i + 1) * a for i, a in enumerate(d)))
    return full * resource / 9.0 + 0.3 * noise * (1.0 - resource / 9.0)


def result(arch: Architecture, resource: float) -> Result:
    if SPACE.to_decisions(arch)[1] == 3 and SPACE.to_decisions(arch)[2] == 0:
        return Result.failed("synthetic failure")
    return Result.complete({"score": score(arch, resource)}, info={"resource": resource})


def through_store(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def plain_drive(strategy: BayesianOptimisation, steps: int) -> list[str]:
    keys = []
    for _ in range(steps):
        archs = strategy.ask(2)
        keys.extend(a.key for a in archs)
        for a in archs:
            strategy.tell(a, result(a, 9))
    return keys


def test_without_rungs_it_is_bo_proposal_for_proposal():
    for seed in (0, 1):
        bo = BayesianOptimisation(SPACE, OBJECTIVE, seed=seed, warmup=6)
        bohb = MultiFidelityBO(SPACE, OBJECTIVE, seed=seed, warmup=6)
        assert plain_drive(bohb, 30) == plain_drive(bo, 30)
        assert bohb._history == bo._history and bohb.levels() == {}
        np.testing.assert_array_equal(bohb.gp.params, bo.gp.params)
    # the sampled-pool path of a larger space too
    bo = BayesianOptimisation(SPACE, OBJECTIVE, seed=2, warmup=6, pool_limit=100, pool_size=50)
    bohb = MultiFidelityBO(SPACE, OBJECTIVE, seed=2, warmup=6, pool_limit=100, pool_size=50)
    assert plain_drive(bohb, 15) == plain_drive(bo, 15)


def scheduler_round(strategy: MultiFidelityBO, n: int = 6) -> list[str]:
    """One successive-halving bracket: ``n`` candidates at 1 epoch, the best third promoted to
    3, the best of those to 9; every rung reported, then each candidate's final result."""
    archs = strategy.ask(n)
    reached = {a.key: 1.0 for a in archs}
    alive = list(archs)
    for resource in (1.0, 3.0, 9.0):
        scored = []
        for a in alive:
            r = result(a, resource)
            strategy.tell_fidelity(a, resource, r)
            reached[a.key] = resource
            scored.append((r.metrics.get("score", -math.inf) if r.ok else -math.inf, a))
        scored.sort(key=lambda t: -t[0])
        alive = [a for _, a in scored[:max(1, len(scored) // 3)]]
    for a in reversed(archs):
        strategy.tell(a, result(a, reached[a.key]))
    return [a.key for a in archs]


def test_rungs_are_kept_once_and_failures_teach_nothing():
    s = MultiFidelityBO(SPACE, OBJECTIVE, seed=0)
    a, b, bad = (SPACE.from_decisions(d) for d in ([0, 0, 0, 0, 0], [1, 2, 3, 0, 1],
                                                   [0, 3, 0, 0, 0]))
    s.tell_fidelity(a, 1, result(a, 1))
    s.tell_fidelity(a, 3, result(a, 3))
    s.tell(a, result(a, 3))  # the final result of the last rung: not counted again
    s.tell_fidelity(bad, 1, result(bad, 1))
    s.tell(bad, result(bad, 1))
    s.tell(b, result(b, 9))  # a final result no rung reported (a cached one): joins level 9
    s.tell(b, result(b, 9))
    assert s.levels() == {1.0: [([0, 0, 0, 0, 0], score(a, 1))],
                          3.0: [([0, 0, 0, 0, 0], score(a, 3))],
                          9.0: [([1, 2, 3, 0, 1], score(b, 9))]}
    assert len(s._history) == 2  # bo's history of final results: a and b
    assert {a.key, b.key, bad.key} <= s._seen


@pytest.mark.parametrize("pool_limit", [50_000, 100], ids=["enumerated", "sampled"])
def test_resumes_exactly_with_rungs(pool_limit):
    options = {"warmup": 8, "min_points": 12, "fit_limit": 20, "pool_limit": pool_limit,
               "pool_size": 60}  # fits on a subset of the training points
    reference = MultiFidelityBO(SPACE, OBJECTIVE, seed=3, **options)
    killed = MultiFidelityBO(SPACE, OBJECTIVE, seed=3, **options)
    expected = [scheduler_round(reference) for _ in range(10)]
    before = [scheduler_round(killed) for _ in range(5)]
    assert before == expected[:5]
    assert killed._mf_target == 1.0  # the model is in use before the save...
    state = through_store(killed.state_dict())
    killed.ask(3)  # in flight when the process dies
    resumed = MultiFidelityBO(SPACE, OBJECTIVE, seed=99, **options)  # the seed must not matter
    resumed.load_state_dict(state)
    assert resumed.levels() == MultiFidelityBO.levels(killed)
    after = [scheduler_round(resumed) for _ in range(5)]
    assert after == expected[5:]
    assert reference._mf_target == 3.0  # ...and the target level rose after it
    assert len({k for keys in expected for k in keys}) == 60  # never proposed twice


def test_options_are_validated_and_registered():
    cls = registry.STRATEGIES.get("bohb")
    assert cls is MultiFidelityBO
    assert issubclass(MultiFidelityBO.Options, BayesianOptimisation.Options)
    for bad, name in [({"min_points": 1}, "min_points"), ({"fit_limit": 2}, "fit_limit"),
                      ({"no_such": 1}, "no_such"), ({"warmup": 1}, "warmup")]:
        with pytest.raises(ConfigError, match=f"MultiFidelityBO:\n  {name}: "):
            MultiFidelityBO(SPACE, OBJECTIVE, **bad)
    assert MultiFidelityBO(SPACE, OBJECTIVE).min_points == 6  # decisions + 1
    assert MultiFidelityBO(SPACE, OBJECTIVE, min_points=4).min_points == 4


def test_the_toy_space_is_searched_to_its_optimum_with_rungs():
    every = list(itertools.product(range(4), repeat=5))
    best = max(score(SPACE.from_decisions(list(d)), 9) for d in every)
    s = MultiFidelityBO(SPACE, OBJECTIVE, seed=0, warmup=8)
    for _ in range(12):
        scheduler_round(s)
    reached = max(v for _, v in s.levels()[9.0])
    assert reached >= best - 0.15, (reached, best)


# -- NAS-Bench-201 --------------------------------------------------------------------------------
def _nb201():
    from nastk.search_spaces.nb201 import NB201Bench, nb201_data_missing

    missing = nb201_data_missing()
    if missing:
        pytest.skip(missing)
    return NB201Bench.load()


@pytest.mark.slow
def test_nb201_twelve_epoch_rungs_lead_to_better_200_epoch_architectures():
    """100 random architectures at 12 epochs, 10 of them also at 200 (validation accuracy):
    the next 20 proposals of ``bohb`` are better at 200 epochs than those of ``bo`` told the 10
    200-epoch results, and than ``bohb`` ignoring the lower level (BOHB's own choice of data)."""
    bench = _nb201()
    space, obj = bench.space, Objective(metric="acc")

    def at(arch: Architecture, kind: str) -> Result:
        return Result.complete({"acc": bench.accuracy(arch, kind=kind)},
                               info={"resource": 12 if kind == "val12" else 200})

    means: dict[str, list[float]] = {"bohb": [], "target_only": [], "bo": []}
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        archs: dict[str, Architecture] = {}
        while len(archs) < 100:
            arch = space.sample(rng)
            archs.setdefault(arch.key, arch)
        sample = list(archs.values())
        for name in means:
            if name == "bo":
                s = BayesianOptimisation(space, obj, seed=seed, warmup=10)
                for arch in sample[:10]:
                    s.tell(arch, at(arch, "val200"))
            else:
                s = MultiFidelityBO(space, obj, seed=seed, min_points=8,
                                    lower_levels=name == "bohb")
                for arch in sample:
                    s.tell_fidelity(arch, 12, at(arch, "val12"))
                for arch in sample[:10]:
                    s.tell_fidelity(arch, 200, at(arch, "val200"))
                    s.tell(arch, at(arch, "val200"))
                for arch in sample[10:]:
                    s.tell(arch, at(arch, "val12"))
                assert s._target() == 200.0
            proposals = s.ask(20)
            told = set(archs) if name != "bo" else {a.key for a in sample[:10]}
            assert not {a.key for a in proposals} & told
            means[name].append(float(np.mean([bench.accuracy(a, kind="val200")
                                               for a in proposals])))
    bohb, target_only, bo = (float(np.mean(v)) for v in means.values())
    assert bohb > bo + 0.5, means  # about 91.0 against 89.4 (the optimum is 91.6)
    assert bohb > target_only + 0.5, means
