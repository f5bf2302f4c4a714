"""The engine's scheduler driving candidates on the Ray actor pool and on Ray Tune: one rung per
job, partial training sent to the workers and back as bytes, the same rungs as in-process.

The fast tests (no Ray cluster) cover the worker's rung path, the Tune searcher's answers while
a rung is in flight and ``executor.scheduler: asha`` as the engine's scheduler; the slow ones
run a Hyperband search (synchronous brackets, rungs 1, 3, 9) on a local Ray with 2 CPUs.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path

import pytest

from nastk import Architecture, IntRange, Objective, SearchSpace
from nastk.config.executors import ExecutorConfig
from nastk.core.result import Result
from nastk.core.weights import write_atomic
from nastk.evaluation.base import ResourceFunctionEvaluator
from nastk.executors.worker import InstanceFactory, WorkerSpec, evaluate_rung
from nastk.run.loop import Budget, Search
from nastk.run.memory_store import MemoryStorage
from nastk.scheduling.config import SchedulerConfig, build_scheduler
from nastk.scheduling.fidelity import Fidelity
from nastk.strategies.random_search import RandomSearch

TESTS = Path(__file__).parent
FULL = 9.0  # rungs 1, 3, 9 with eta 3


def _base(arch: Architecture) -> float:
    return float((arch["x"] * 37) % 101)  # distinct for x < 101: no ties in a rung


def curve(arch: Architecture, resource: float) -> dict[str, float]:
    """A learning curve: the architecture's quality, approached as the resource grows."""
    return {"score": _base(arch) * resource / (resource + 1.0)}


class ResumableToy:
    """A resumable multi-fidelity evaluator: its partial training is a JSON file naming the
    architecture, the resource reached and the rungs it went through. It refuses a state of
    another architecture, a ``state`` path that does not exist, or one that is not below the
    resource asked; its metrics say where it started (``start``) and how many evaluations the
    candidate's training went through (``segments``), so a missing or stale state shows."""

    fidelity = Fidelity("epochs", FULL, 1.0, resumable=True)

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        return self.evaluate_at(arch, FULL, checkpoint=checkpoint)

    def evaluate_at(self, arch: Architecture, resource: float, *,
                    checkpoint: Path | None = None, state: Path | None = None,
                    state_out: Path | None = None) -> Result:
        start, trace = 0.0, []
        if state is not None:
            if not Path(state).is_file():
                raise FileNotFoundError(f"no partial state at {state}")
            saved = json.loads(Path(state).read_text())
            if saved["arch"] != arch.key:
                raise ValueError(f"state of {saved['arch']} given to {arch.key}")
            if not saved["resource"] < resource:
                raise ValueError(f"state at {saved['resource']} continued to {resource}")
            start, trace = float(saved["resource"]), list(saved["trace"])
        trace.append(float(resource))
        if state_out is not None:
            write_atomic(state_out, json.dumps({"arch": arch.key, "resource": float(resource),
                                                "trace": trace}).encode())
        return Result.complete({**curve(arch, resource), "start": start,
                                "segments": float(len(trace))}, info={"resource": resource})


def resource_function() -> ResourceFunctionEvaluator:
    return ResourceFunctionEvaluator(curve, Fidelity("epochs", FULL, 1.0))


EVALUATORS = {"function": resource_function, "resumable": ResumableToy}


def make_search(evaluator, executor=None, trials: int = 6, kind: str = "hyperband") -> Search:
    space = SearchSpace([IntRange("x", 0, 99)])
    objective = Objective(metric="score")
    scheduler = build_scheduler(SchedulerConfig(kind=kind), evaluator.fidelity, objective)
    return Search(space, RandomSearch(space, objective, seed=5), evaluator, objective,
                  MemoryStorage(), Budget(trials=trials), executor=executor, scheduler=scheduler)


def rung_rows(search: Search) -> list[tuple]:
    """``(arch key, rung, resource, metrics)`` of every rung row, in the order recorded."""
    arch = {t.id: t.arch.key for t in search.store.trials()}
    return [(arch[r.trial_id], r.rung, r.resource, tuple(sorted(r.result.metrics.items())))
            for r in search.store.rungs()]


def check_rungs(search: Search, resumable: bool) -> None:
    """Every rung row complete; each trial's rungs ascending, each one continuing from its own
    previous rung (the resumable toy's ``start`` and ``segments``); spent = the sum of the
    costs, a promotion charged the difference."""
    rows = search.store.rungs()
    assert rows and all(r.result.ok for r in rows), [r.result.error for r in rows]
    by_trial: dict[int, list] = defaultdict(list)
    for r in rows:
        by_trial[r.trial_id].append(r)
    rungs = search.scheduler.rungs
    for seq in by_trial.values():
        previous = 0.0
        for i, r in enumerate(seq):
            assert r.resource == rungs[r.rung] and r.resource > previous
            assert r.cost == pytest.approx(r.resource - previous)
            if resumable:
                assert r.result.metrics["start"] == previous
                assert r.result.metrics["segments"] == i + 1
            previous = r.resource
    assert search.spent == pytest.approx(sum(r.cost for r in rows))
    assert any(len(seq) > 1 for seq in by_trial.values())  # something was promoted
    assert not search.in_flight and all(t.done for t in search.store.trials())


@pytest.fixture(scope="module")
def reference():
    """The in-process run of each evaluator (rows in the order recorded)."""
    out = {}
    for name, make in EVALUATORS.items():
        search = make_search(make())
        search.run()
        check_rungs(search, name == "resumable")
        out[name] = rung_rows(search)
    return out


# -- no Ray cluster -----------------------------------------------------------------------------
def test_evaluate_rung_sends_partial_training_both_ways_as_bytes():
    toy, arch = ResumableToy(), Architecture(x=7)
    first, weights, state = evaluate_rung(toy, arch.to_json(), False, 1.0, None)
    assert Result.from_dict(first).ok and weights is None
    assert json.loads(state) == {"arch": arch.key, "resource": 1.0, "trace": [1.0]}
    second, _, state2 = evaluate_rung(toy, arch.to_json(), False, 3.0, state)
    assert Result.from_dict(second).metrics["start"] == 1.0
    assert json.loads(state2)["trace"] == [1.0, 3.0]
    # another candidate's state is refused: a failed result, not an exception
    other, _, none = evaluate_rung(toy, Architecture(x=8).to_json(), False, 3.0, state)
    assert not Result.from_dict(other).ok and "state of" in Result.from_dict(other).error
    assert none is None
    # a non-resumable evaluator writes no state
    res, _, nothing = evaluate_rung(resource_function(), arch.to_json(), False, 3.0, None)
    assert Result.from_dict(res).metrics == curve(arch, 3.0) and nothing is None


def test_executor_scheduler_asha_is_the_engines_asha():
    ex = ExecutorConfig(kind="ray", scheduler="asha",
                        asha={"grace_period": 2, "reduction_factor": 3})
    data = ex.engine_scheduler()
    assert data == {"kind": "asha", "reduction_factor": 3.0, "min_resource": 2.0}
    cfg = SchedulerConfig(**data)
    assert build_scheduler(cfg, Fidelity("epochs", 18.0), Objective(metric="score")).rungs \
        == [2.0, 6.0, 18.0]
    assert ExecutorConfig(kind="ray").engine_scheduler() is None


def test_tune_searcher_waits_while_a_rung_is_in_flight(reference):
    """Drive the Tune searcher by hand with one trial at a time: it answers ``None`` (not
    FINISHED) while a rung is in flight, and sends the resource and the state bytes."""
    pytest.importorskip("ray.tune")
    from ray.tune.search import Searcher

    from nastk.executors.tune_trials import _Bridge, _StrategySearcher

    search = make_search(ResumableToy())
    search.begin()
    bridge = _Bridge(search)
    searcher = _StrategySearcher(bridge, 2)
    n, waited = 0, 0
    pending: list[str] = []
    config_of: dict[str, dict] = {}
    while True:
        n += 1
        config = searcher.suggest(f"t{n}")
        if config == Searcher.FINISHED:
            assert not pending and not search.in_flight
            break
        if config is None:
            assert pending  # None only while something is in flight
            waited += len(pending) < 2  # capacity left, yet a rung must finish first
            tid = pending.pop(0)
            candidate = bridge.candidates.pop(tid)
            state = config_of[tid]["state"]
            assert state == (candidate.state_in.read_bytes() if candidate.state_in else None)
            result_dict, _, new_state = evaluate_rung(search.evaluator, config_of[tid]["arch"],
                                                      False, config_of[tid]["resource"], state)
            if new_state:
                write_atomic(candidate.state_out, new_state)
            search.record(candidate, Result.from_dict(result_dict))
            continue
        config_of[f"t{n}"] = config
        assert config["rung"] is not None and config["resource"] in (1.0, 3.0, 9.0)
        pending.append(f"t{n}")
    search.finish_waiting()
    assert waited  # a synchronous bracket made the searcher wait
    check_rungs(search, resumable=True)
    assert sorted(rung_rows(search)) == sorted(reference["resumable"])


# -- on a local Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module: 2 CPUs, workers that can import this test module."""
    ray = pytest.importorskip("ray")
    pythonpath = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH")] if p)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield
    ray.shutdown()


def _spec(evaluator) -> WorkerSpec:
    return WorkerSpec(InstanceFactory(evaluator), Objective(metric="score"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["function", "resumable"])
def test_actor_pool_runs_the_schedulers_rungs(ray_cluster, reference, name):
    from nastk.executors.actor_pool import ActorPoolExecutor

    evaluator = EVALUATORS[name]()
    one = make_search(evaluator, ActorPoolExecutor(_spec(evaluator), 1))
    one.run()
    check_rungs(one, name == "resumable")
    assert rung_rows(one) == reference[name]  # one at a time: the in-process order
    two = make_search(evaluator, ActorPoolExecutor(_spec(evaluator), 2))
    two.run()
    check_rungs(two, name == "resumable")
    assert sorted(rung_rows(two)) == sorted(reference[name])  # sync brackets: same decisions


@pytest.mark.slow
def test_tune_runs_each_rung_as_a_trial(ray_cluster, reference, tmp_path):
    from nastk.executors.tune_trials import TuneExecutor

    evaluator = ResumableToy()
    one = make_search(evaluator, TuneExecutor(_spec(evaluator), 1, tmp_path / "one"),
                      trials=4)
    one.run()
    check_rungs(one, resumable=True)
    ref = make_search(ResumableToy(), trials=4)
    ref.run()
    assert rung_rows(one) == rung_rows(ref)
    two = make_search(evaluator, TuneExecutor(_spec(evaluator), 2, tmp_path / "two"),
                      trials=4)
    two.run()
    check_rungs(two, resumable=True)
    assert sorted(rung_rows(two)) == sorted(rung_rows(ref))
    names = {p.name for p in (tmp_path / "two").rglob("trial_*_rung_*") if p.is_dir()}
    assert names == {f"trial_{r.trial_id}_rung_{r.rung}" for r in two.store.rungs()}  # one
    assert len(names) > len(two.store.trials())  # Tune trial per rung


@pytest.mark.slow
@pytest.mark.parametrize("point", ["start_trial", "restart_trial", "record_rung", "mark_told"])
@pytest.mark.parametrize("kind", ["hyperband", "sh"])
def test_a_scheduled_run_on_the_actor_pool_killed_at_a_step_resumes_to_the_same_rungs(
        ray_cluster, tmp_path, point, kind):
    """The driver dies (as ``kill -9`` stops it between two statements) right after a store
    write while two actors have rungs in flight; a new driver on the same store, again with two
    actors, ends with the uninterrupted run's rung rows (synchronous brackets and a random
    strategy: the decisions do not depend on the order results arrive in), each rung
    continuing from its own partial training."""
    from test_resume_windows import Died

    from nastk.executors.actor_pool import ActorPoolExecutor
    from nastk.run.sqlite_store import RunStore

    ref = make_search(ResumableToy(), trials=9, kind=kind)
    ref.run()

    def scheduled(run_dir: Path) -> Search:
        evaluator = ResumableToy()
        search = make_search(evaluator, ActorPoolExecutor(_spec(evaluator), 2), trials=9,
                             kind=kind)
        search.store = RunStore.in_dir(run_dir)
        search._partial_dir = run_dir / "partial"
        return search

    first = scheduled(tmp_path)
    write = getattr(first.store, point)
    calls = {"n": 0}

    def dies(*args, **kwargs):
        out = write(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Died(point)
        return out

    setattr(first.store, point, dies)
    with pytest.raises(Died):
        first.run()
    first.store.close()
    resumed = scheduled(tmp_path)
    resumed.run()
    check_rungs(resumed, resumable=True)
    assert sorted(rung_rows(resumed)) == sorted(rung_rows(ref))
    assert len({t.arch.key for t in resumed.store.trials()}) == len(resumed.store.trials())
    resumed.store.close()
