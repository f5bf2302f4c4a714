"""The search loop and its store: de-duplication, failures, resume after a kill."""

import os
import signal
import subprocess
import sys

import pytest
import torch
import toy_plugin
import yaml
from conftest import wait_for_complete

from nastk import Objective, Result, Status
from nastk.evaluation.base import FunctionEvaluator
from nastk.run.loop import Budget, Search
from nastk.run.sqlite_store import RunStore
from nastk.run.storage import DuplicateResultError
from nastk.strategies.evolution import RegularizedEvolution
from nastk.strategies.random_search import RandomSearch

OBJ = Objective(metric="score", direction="max")


def make_search(tmp_path, budget=30, strategy_cls=RegularizedEvolution, fn=toy_plugin.objective,
                seed=0, **opts):
    space = toy_plugin.ToyGrid()
    strategy = strategy_cls(space, OBJ, seed=seed, **opts)
    store = RunStore.in_dir(tmp_path)
    return Search(space, strategy, FunctionEvaluator(fn), OBJ, store, Budget(trials=budget))


def finished_keys(store):
    return [t.arch.key for t in store.finished()]


def replay_duplicates(budget, seed=0, **opts):
    """The same strategy driven by a plain in-memory loop (ask 1, answer a repeat from the
    cache, tell): how many proposals were repeats, and the distinct keys in order."""
    strategy = RegularizedEvolution(toy_plugin.ToyGrid(), OBJ, seed=seed, **opts)
    cache = {}
    repeats = 0
    while len(cache) < budget:
        arch = strategy.ask(1)[0]
        if arch.key in cache:
            repeats += 1
        else:
            cache[arch.key] = Result.complete(toy_plugin.objective(arch))
        strategy.tell(arch, cache[arch.key])
    return repeats, list(cache)


def test_search_records_every_trial_once(tmp_path):
    s = make_search(tmp_path, budget=40, population=8, sample_size=3)
    asks = []
    ask = s.strategy.ask
    s.strategy.ask = lambda n=1: asks.append(n) or ask(n)
    trials = s.run()
    keys = finished_keys(s.store)
    assert len(keys) == 40 == len(set(keys)) == len(trials)
    # evolution re-proposes known archs; they are answered from the store, not re-evaluated:
    # every proposal beyond the 40 evaluated ones is a counted duplicate, and the loop's count
    # is the one an in-memory replay of the same strategy gets (6 for this seed; measured)
    expected, replay_keys = replay_duplicates(40, population=8, sample_size=3)
    assert expected > 0
    assert s.duplicates == expected == sum(asks) - 40
    assert keys == replay_keys
    assert all(t.status is Status.COMPLETE for t in trials)
    best = max(t.result.metrics["score"] for t in trials)
    assert best > 0.8 * toy_plugin.best_score()


def test_store_refuses_a_second_finished_row_for_one_arch(tmp_path):
    s = make_search(tmp_path, budget=3)
    s.run()
    t = s.store.finished()[0]
    with pytest.raises(DuplicateResultError, match="already has a result"):
        tid = s.store.start_trial(t.arch)
        s.store.finish_trial(tid, t.result)


def test_tiny_space_is_exhausted_without_duplicates(tmp_path):
    from nastk import Categorical, SearchSpace

    space = SearchSpace([Categorical("x", [0, 1, 2])])
    strategy = RandomSearch(space, OBJ, seed=0)
    search = Search(space, strategy, FunctionEvaluator(lambda a: {"score": a["x"]}), OBJ,
                    RunStore.in_dir(tmp_path), Budget(trials=10, max_duplicate_streak=50))
    trials = search.run()
    assert len(trials) == 3 and "already evaluated" in search.stop_reason


def test_failures_are_recorded_and_the_search_goes_on(tmp_path):
    s = make_search(tmp_path, budget=30, strategy_cls=RandomSearch, fn=toy_plugin.flaky)
    trials = s.run()
    assert len(trials) == 30
    failed = [t for t in trials if t.status is Status.FAILED]
    crashed = [t for t in failed if "simulated crash" in t.result.error]
    nan = [t for t in failed if "non-finite" in t.result.error]
    assert crashed and nan
    assert all(t.arch["a"] == 0 for t in crashed) and all(t.arch["a"] == 1 for t in nan)
    assert all(t.status is Status.COMPLETE for t in trials if t.arch["a"] >= 2)


@pytest.mark.parametrize("strategy_cls", [RandomSearch, RegularizedEvolution])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, strategy_cls):
    full = make_search(tmp_path / "full", budget=40, strategy_cls=strategy_cls)
    full.run()
    ref = finished_keys(full.store)

    # interrupted run: the evaluator dies on the 16th call, leaving a `running` row behind
    calls = {"n": 0}

    def dying(arch):
        calls["n"] += 1
        if calls["n"] == 16:
            raise KeyboardInterrupt
        return toy_plugin.objective(arch)

    part = make_search(tmp_path / "part", budget=40, strategy_cls=strategy_cls, fn=dying)
    with pytest.raises(KeyboardInterrupt):
        part.run()
    assert part.store.count(Status.RUNNING) == 1
    part.store.close()

    resumed = make_search(tmp_path / "part", budget=40, strategy_cls=strategy_cls)
    resumed.run()
    keys = finished_keys(resumed.store)
    assert len(keys) == len(set(keys)) == 40
    assert keys == ref  # same trials, same order, as if never interrupted
    assert resumed.store.count(Status.INTERRUPTED) == 1


def test_results_written_but_not_told_are_replayed_on_resume(tmp_path):
    s = make_search(tmp_path, budget=10)
    s.run()
    # simulate a kill between "result written" and "strategy told"
    arch = s.strategy.ask(1)[0]
    tid = s.store.start_trial(arch)
    s.store.finish_trial(tid, FunctionEvaluator(toy_plugin.objective).evaluate(arch))
    s.store.close()
    again = make_search(tmp_path, budget=12)
    n = again.restore()
    assert n == 11 and not again.store.untold()
    again.run()
    assert again.store.count(Status.COMPLETE) == 12


def test_strategy_state_is_saved_weights_only(tmp_path):
    s = make_search(tmp_path, budget=5)
    s.run()
    state = s.store.load_strategy_state()
    assert state is not None and "rng" in state
    row = s.store._db.execute("SELECT state FROM strategy_state").fetchone()[0]
    import io
    assert torch.load(io.BytesIO(row), weights_only=True).keys() == state.keys()


def _config(tmp_path, strategy="evolution", trials=30):
    cfg = {
        "name": "toy", "run_dir": str(tmp_path / "run"), "seed": 3, "plugins": ["toy_plugin"],
        "space": "toy_grid", "strategy": {"name": strategy, "options": {"population": 6}},
        "objective": {"metric": "score"},
        "evaluator": {"kind": "function", "function": "toy_plugin:objective"},
        "budget": {"trials": trials},
    }
    path = tmp_path / "toy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "nastk.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_kill_9_mid_search_then_resume(tmp_path, toy_env):
    """A search process killed with SIGKILL resumes with --resume: the final run has the same
    distinct trials as an uninterrupted one, none twice, and loses only the trial in flight."""
    ref_cfg = _config(tmp_path / "ref")
    proc = _cli(["search", str(ref_cfg), "--no-progress"], toy_env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with RunStore.open_existing(tmp_path / "ref" / "run") as st:
        ref = finished_keys(st)
    assert len(ref) == 30

    cfg = _config(tmp_path)
    env = dict(toy_env, NASTK_TOY_SLEEP="0.15")
    proc = _cli(["search", str(cfg), "--no-progress"], env)
    wait_for_complete(tmp_path / "run" / "store.sqlite", 8, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunStore.open_existing(tmp_path / "run") as st:
        done_at_kill = st.count(Status.COMPLETE)
        assert 8 <= done_at_kill < 30

    proc = _cli(["search", str(cfg), "--resume", "--no-progress"], toy_env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    with RunStore.open_existing(tmp_path / "run") as st:
        keys = finished_keys(st)
        assert st.count(Status.RUNNING) == 0
    assert len(keys) == len(set(keys)) == 30
    assert keys == ref


@pytest.mark.slow
def test_second_start_without_resume_is_refused(tmp_path, toy_env):
    cfg = _config(tmp_path, trials=3)
    for expect in (0, 2):
        proc = _cli(["search", str(cfg), "--no-progress"], toy_env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == expect, err
    assert "already holds a run" in err and "--resume" in err
    with RunStore.open_existing(tmp_path / "run") as st:
        assert st.count() == 3  # untouched


def _broken(arch):
    raise FileNotFoundError("dataset /data/missing not found")


def test_a_search_whose_first_trials_all_fail_alike_stops_and_says_why(tmp_path):
    s = make_search(tmp_path, budget=30, strategy_cls=RandomSearch, fn=_broken)
    trials = s.run()
    assert len(trials) == 5 == s.n_failed and s.n_complete == 0
    assert all(t.status is Status.FAILED for t in trials)
    assert s.stop_reason.startswith("the first 5 trials all failed with the same error: "
                                    "FileNotFoundError: dataset /data/missing not found")
    assert s.stop_reason.endswith("; fix it and rerun (nothing succeeded)")


def test_the_failure_streak_is_a_budget_setting(tmp_path):
    space = toy_plugin.ToyGrid()
    search = Search(space, RandomSearch(space, OBJ, seed=0), FunctionEvaluator(_broken), OBJ,
                    RunStore.in_dir(tmp_path), Budget(trials=30, max_failure_streak=2))
    assert len(search.run()) == 2 and "the first 2 trials" in search.stop_reason
    with pytest.raises(ValueError, match="max_failure_streak"):
        Budget(max_failure_streak=0)


def test_failures_after_a_success_or_with_different_errors_do_not_stop_the_search(tmp_path):
    calls = {"n": 0}

    def first_ok(arch):  # one success, then the same failure every time
        calls["n"] += 1
        if calls["n"] == 1:
            return {"score": 1.0}
        raise RuntimeError("out of memory")

    s = make_search(tmp_path / "a", budget=12, strategy_cls=RandomSearch, fn=first_ok)
    assert len(s.run()) == 12 and s.stop_reason == "budget of trials reached"
    assert (s.n_complete, s.n_failed) == (1, 11)

    def varied(arch):  # every failure differs: not one broken setting
        calls["n"] += 1
        raise RuntimeError(f"failure number {calls['n']}")

    s = make_search(tmp_path / "b", budget=12, strategy_cls=RandomSearch, fn=varied)
    assert len(s.run()) == 12 and s.stop_reason == "budget of trials reached"


def test_a_streak_after_other_failures_is_named_as_the_last_ones(tmp_path):
    calls = {"n": 0}

    def two_errors(arch):
        calls["n"] += 1
        raise RuntimeError("bad option" if calls["n"] <= 2 else "missing file")

    s = make_search(tmp_path, budget=30, strategy_cls=RandomSearch, fn=two_errors)
    assert len(s.run()) == 7
    assert s.stop_reason.startswith("the last 5 trials all failed with the same error: "
                                    "RuntimeError: missing file")
    assert "none of the 7 trials succeeded" in s.stop_reason
