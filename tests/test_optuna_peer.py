"""Optuna's samplers as nastk strategies: ask/tell, exact resume, a clear message without optuna."""

import sys

import numpy as np
import pytest

from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace

optuna = pytest.importorskip("optuna")

from nastk.strategies.optuna_peer import OptunaStrategy  # noqa: E402

SPACE = SearchSpace([Categorical(f"x{i}", [0, 1, 2, 3, 4]) for i in range(4)], name="toy")
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0])


def value(arch) -> float:
    """Additive, maximal (0) at x = (4, 0, 4, 0)."""
    x = np.array([arch[f"x{i}"] for i in range(4)], dtype=float)
    return float(-(WEIGHTS * (x - np.array([4, 0, 4, 0])) ** 2).sum())


def step(strategy, n=1):
    archs = strategy.ask(n)
    for a in archs:
        strategy.tell(a, Result.complete({"score": value(a)}))
    return [a.key for a in archs]


@pytest.mark.parametrize("sampler", ["tpe", "tpe_multivariate", "gp"])
def test_resume_from_state_dict_is_exact(sampler):
    objective = Objective(metric="score")
    n_start = {"n_startup_trials": 5}
    whole = OptunaStrategy(SPACE, objective, seed=3, sampler=sampler, **n_start)
    keys = [step(whole) for _ in range(14)]
    first = OptunaStrategy(SPACE, objective, seed=3, sampler=sampler, **n_start)
    for _ in range(9):
        step(first)
    # a result the strategy did not ask for (a cached duplicate, a replay) is learnt too
    extra = SPACE.validate({"x0": 0, "x1": 0, "x2": 0, "x3": 0})
    first.tell(extra, Result.complete({"score": value(extra)}))
    whole_b = OptunaStrategy(SPACE, objective, seed=3, sampler=sampler, **n_start)
    for _ in range(9):
        step(whole_b)
    whole_b.tell(extra, Result.complete({"score": value(extra)}))
    resumed = OptunaStrategy(SPACE, objective, seed=3, sampler=sampler, **n_start)
    resumed.load_state_dict(first.state_dict())
    assert [step(resumed) for _ in range(5)] == [step(whole_b) for _ in range(5)]
    assert len({k for ks in keys for k in ks}) > 1


@pytest.mark.parametrize(("sampler", "best_at_least", "late_mean_above"),
                         [("tpe", -2.0, -40.0), ("tpe_multivariate", -2.0, -25.0),
                          ("gp", 0.0, -5.0)])
def test_samplers_learn_the_additive_space(sampler, best_at_least, late_mean_above):
    """60 queries of 625: uniform proposals average -60 (E[(x - t)^2] = 6 per weight); the
    samplers' last 20 proposals are far better and their best is at or next to the optimum."""
    strategy = OptunaStrategy(SPACE, Objective(metric="score"), seed=0, sampler=sampler)
    values = []
    for _ in range(60):
        a = strategy.ask(1)[0]
        values.append(value(a))
        strategy.tell(a, Result.complete({"score": value(a)}))
    assert max(values) >= best_at_least
    assert np.mean(values[-20:]) > late_mean_above


def test_failed_results_are_told_as_failed():
    strategy = OptunaStrategy(SPACE, Objective(metric="score"), seed=0)
    a = strategy.ask(1)[0]
    strategy.tell(a, Result.failed("boom"))
    assert strategy._study.trials[-1].state == optuna.trial.TrialState.FAIL


def test_missing_optuna_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[peers\]"'):
        OptunaStrategy(SPACE, Objective(metric="score"), seed=0)


def macro_value(space, arch) -> float:
    codes = space.codes(arch)
    return float(sum(codes)) + 0.1 * codes[0]


def test_a_constrained_space_is_searched_by_the_sampler_not_by_uniform_fallbacks(monkeypatch):
    """tnb101_macro rejects about half of the decision combinations. Rejected draws are told
    with the worst value so far, so TPE moves off them: in 100 asks none ends as a uniform
    draw (told as failed, 47 did), and the run resumes exactly."""
    from nastk.search_spaces.tnb101 import TNB101MacroSpace

    space = TNB101MacroSpace()
    uniform = []
    real_sample = space.sample
    monkeypatch.setattr(space, "sample", lambda rng: uniform.append(1) or real_sample(rng))
    objective = Objective(metric="s")

    def run(strategy, n):
        keys = []
        for _ in range(n):
            a = strategy.ask(1)[0]
            strategy.tell(a, Result.complete({"s": macro_value(space, a)}))
            keys.append(a.key)
        return keys

    whole = OptunaStrategy(space, objective, seed=0, sampler="tpe")
    keys = run(whole, 100)
    completed = sum(t.state == optuna.trial.TrialState.COMPLETE for t in whole._study.trials)
    assert completed > 100  # the 100 told results plus the penalised rejects
    assert uniform == []
    first = OptunaStrategy(space, objective, seed=0, sampler="tpe")
    assert run(first, 60) == keys[:60]
    resumed = OptunaStrategy(space, objective, seed=0, sampler="tpe")
    resumed.load_state_dict(first.state_dict())
    assert run(resumed, 40) == keys[60:]


def test_conditional_and_continuous_dimensions_are_asked_define_by_run():
    """On a space with conditional dimensions and real numbers Optuna is asked one parameter
    per active dimension, of its own kind: learning rates are real numbers, not the grid's 16
    points; a dimension whose condition fails is no parameter of the trial; a result Optuna
    did not ask for is added with the same parameters."""
    from nastk.space import Float, IntRange, when

    space = SearchSpace([
        IntRange("depth", 1, 3),
        Categorical("op_2", ["a", "b"]).only_if(when("depth", ">=", 2)),
        Float("lr", 1e-4, 1e-1, log=True),
        IntRange("batch", 16, 256, 16, log=True),
    ])
    s = OptunaStrategy(space, Objective(metric="acc"), seed=3, sampler="tpe_multivariate",
                       n_startup_trials=5)
    grid = {space["lr"].from_decisions([i]) for i in range(16)}
    for _ in range(20):
        (arch,) = s.ask(1)
        assert space.is_valid(arch)
        s.tell(arch, Result.complete({"acc": -abs(np.log10(arch["lr"]) + 2)}))
    trials = s._study.trials
    assert all(set(t.params) == {"depth", "lr", "batch"} | ({"op_2"} if t.params["depth"] >= 2
                                                             else set()) for t in trials)
    lrs = [t.params["lr"] for t in trials]
    assert not any(space["lr"].validate(v) in grid for v in lrs)
    outside = space.validate({"depth": 2, "op_2": "b", "lr": 0.02, "batch": 32})
    s.tell(outside, Result.complete({"acc": 1.0}))
    assert s._study.trials[-1].params == {"depth": 2, "op_2": "b", "lr": 0.02, "batch": 32}
