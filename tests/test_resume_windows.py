"""A run that dies at any step of the search loop resumes exactly where it stopped.

For every registered strategy a reference search runs uninterrupted; then, for each step of
``Search.propose`` / ``Search.record`` in turn, a run dies there exactly once (a
``BaseException`` raised from the patched step, the way SIGKILL stops a process between two
statements; its open SQLite transaction is rolled back when the connection closes) and is
resumed by a fresh ``Search`` and strategy on the same store. The resumed run must evaluate the
same architectures in the same order as the reference, none twice, and end with the same
strategy state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_contracts import STRATEGY_OPTIONS, ContractSpace, synthetic_result

from nastk.core import registry
from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.evaluation.base import FunctionEvaluator
from nastk.run.loop import Budget, Search
from nastk.run.sqlite_store import RunStore

N_TRIALS = 16
OBJECTIVE = Objective(metric="score", costs=("cost",))
SPACE = ContractSpace()


class Died(BaseException):
    """The process stops here (not an Exception: nothing may catch it)."""


def evaluator() -> FunctionEvaluator:
    def fn(arch):
        res = synthetic_result(SPACE, arch)
        if res.error is not None:
            raise RuntimeError(res.error)
        return res.metrics, res.costs
    return FunctionEvaluator(fn)


def make_search(run_dir: Path, name: str) -> Search:
    strategy = registry.instantiate(registry.STRATEGIES, name, STRATEGY_OPTIONS.get(name, {}),
                                    SPACE, OBJECTIVE, seed=5)
    return Search(SPACE, strategy, evaluator(), OBJECTIVE, RunStore.in_dir(run_dir),
                  Budget(trials=N_TRIALS))


def same_state(a: Any, b: Any, where: str = "state") -> None:
    """Deep equality of two strategy states (tensors exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} {list(b)}"
        for k in a:
            if k != "duration_s":  # results' wall-clock time (kept by NSGA-II, path filter)
                same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


_REFERENCE: dict[str, tuple[list[str], dict[str, Any]]] = {}


def reference(name: str, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[list[str], dict[str, Any]]:
    if name not in _REFERENCE:
        search = make_search(tmp_path_factory.mktemp(f"ref_{name}"), name)
        search.run()
        keys = [t.arch.key for t in search.store.finished()]
        state = search.store.load_strategy_state()
        search.store.close()
        assert len(keys) == len(set(keys)) == N_TRIALS
        _REFERENCE[name] = (keys, state)
    return _REFERENCE[name]


def arm(search: Search, obj: Any, method: str, when: Callable[[Search], bool],
        after: bool = True) -> dict[str, int]:
    """Make ``obj.method`` raise :class:`Died` (after it ran, or instead of running) on its
    first call for which ``when(search)`` holds; returns a record of whether it fired."""
    original = getattr(obj, method)
    fired = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if fired["n"] or not when(search):
            return original(*args, **kwargs)
        fired["n"] += 1
        if not after:
            raise Died(method)
        original(*args, **kwargs)
        raise Died(method)

    setattr(obj, method, wrapper)
    return fired


class CommitDies:
    """A connection proxy whose next ``COMMIT`` dies once armed: the process stops inside a
    transaction (SQLite rolls it back)."""

    def __init__(self, db: Any, when: Callable[[], bool]) -> None:
        self._db, self._when, self.fired = db, when, 0

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.fired and self._when():
            self.fired += 1
            raise Died("inside a transaction")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def kill_point(search: Search, point: str, at: int) -> dict[str, int]:
    """Arm the run to die at ``point`` once ``at`` trials are finished."""
    done = lambda s: s.n_done >= at  # noqa: E731
    started = lambda s: s.n_done >= at and bool(s.in_flight)  # noqa: E731
    st, strat = search.store, search.strategy
    if point == "after ask":
        return arm(search, strat, "ask", done)
    if point == "after start_trial":
        return arm(search, st, "start_trial", done)
    if point == "during evaluate":
        return arm(search, search.evaluator, "evaluate", done, after=False)
    if point == "after finish_trial":
        return arm(search, st, "finish_trial", done)
    if point == "after tell":
        return arm(search, strat, "tell", started)
    if point == "inside mark_told":
        proxy = CommitDies(st._db, lambda: search.n_done >= at and not search.in_flight
                           and _in_record.get(id(search), False))
        st._db = proxy
        return proxy.__dict__
    if point == "after mark_told":
        return arm(search, st, "mark_told",
                   lambda s: s.n_done >= at and _in_record.get(id(s), False))
    if point == "in the on_trial callback":
        search.on_trial = lambda trial, n, best: None
        return arm(search, search, "on_trial", done, after=False)
    if point == "after record":
        return arm(search, search, "record", done)
    if point == "before a repeat's state is saved":
        return arm(search, st, "save_strategy_state", done, after=False)
    raise AssertionError(point)


_in_record: dict[int, bool] = {}


def track_record(search: Search) -> None:
    original = search.record

    def record(candidate, result):
        _in_record[id(search)] = True
        try:
            return original(candidate, result)
        finally:
            _in_record[id(search)] = False

    search.record = record


POINTS = ["after ask", "after start_trial", "during evaluate", "after finish_trial",
          "after tell", "inside mark_told", "after mark_told", "in the on_trial callback",
          "after record", "before a repeat's state is saved"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("name", registry.STRATEGIES.names())
def test_a_run_killed_at_any_step_resumes_exactly(name, point, tmp_path, tmp_path_factory):
    ref_keys, ref_state = reference(name, tmp_path_factory)
    fired_at = []
    # die once early (warm-up: random proposals) and once late (the strategy learning: the RL
    # controller updates every 4 successes, evolution mutates, the guides are fitted)
    for at in (3, 11):
        run_dir = tmp_path / str(at)
        search = make_search(run_dir, name)
        track_record(search)
        fired = kill_point(search, point, at)
        try:
            search.run()
        except Died:
            pass
        search.store.close()
        if not (fired.get("n") or fired.get("fired")):
            continue  # e.g. no repeat proposal after `at` trials: the run ended undisturbed
        fired_at.append(at)
        resumed = make_search(run_dir, name)
        resumed.run()
        keys = [t.arch.key for t in resumed.store.finished()]
        state = resumed.store.load_strategy_state()
        assert resumed.store.count(Status.RUNNING) == 0
        resumed.store.close()
        assert len(keys) == len(set(keys)) == N_TRIALS, at
        assert keys == ref_keys, f"{name}: died {point} after {at} trials"
        same_state(state, ref_state, f"{name}, died {point} after {at} trials: state")
    if point != "before a repeat's state is saved":  # only strategies that repeat themselves
        assert fired_at == [3, 11]


@pytest.mark.slow
def test_a_process_killed_after_its_result_is_stored_resumes_exactly(tmp_path, toy_env):
    """The same with a real process: ``os._exit`` right after the result of the 9th trial is
    committed (before the RL controller is told, and before its policy update)."""
    name = "rl"
    ref_dir = tmp_path / "ref"
    search = make_search(ref_dir, name)
    search.run()
    ref = [t.arch.key for t in search.store.finished()]
    search.store.close()

    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_resume_windows import make_search
        search = make_search(sys.argv[1], {name!r})
        finish = search.store.finish_trial
        def finish_then_die(tid, result):
            finish(tid, result)
            if search.n_done == 8:
                os._exit(3)
        search.store.finish_trial = finish_then_die
        search.run()
    """)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", script, str(run_dir)], env=toy_env,
                          capture_output=True, text=True, timeout=300, cwd=os.getcwd())
    assert proc.returncode == 3, proc.stderr
    with RunStore.in_dir(run_dir) as st:
        assert len(st.untold()) == 1 and st.count(Status.COMPLETE, Status.FAILED) == 9
    resumed = make_search(run_dir, name)
    resumed.run()
    assert [t.arch.key for t in resumed.store.finished()] == ref
    resumed.store.close()


def test_a_trial_row_is_written_with_the_state_that_proposed_it(tmp_path):
    """The transaction behind the windows above: row, state and in-flight list at once."""
    with RunStore.in_dir(tmp_path) as st:
        first = st.start_trial(SPACE.sample(np.random.default_rng(0)))
        tid = st.start_trial(SPACE.sample(np.random.default_rng(1)), {"rng": {"n": 7}},
                             in_flight=[first])
        assert st.load_strategy_state() == {"rng": {"n": 7}}
        assert st.get_meta("in_flight") == [first, tid]
        st.mark_told([], {"rng": {"n": 8}}, in_flight=[])
        assert st.get_meta("in_flight") == [] and st.load_strategy_state() == {"rng": {"n": 8}}


def test_a_store_written_before_proposals_were_saved_still_resumes(tmp_path, tmp_path_factory):
    """Stores of earlier versions saved the strategy's state only when told: a run of one
    killed during an evaluation resumes (asking the strategy again) as it always did."""
    name = "evolution"
    ref_keys, _ = reference(name, tmp_path_factory)
    old = make_search(tmp_path, name)
    start = old.store.start_trial
    old.store.start_trial = lambda arch, state=None, in_flight=None: start(arch)  # old format
    kill_point(old, "during evaluate", 6)
    with pytest.raises(Died):
        old.run()
    assert old.store.get_meta("in_flight") == []  # nothing recorded as in flight
    old.store.close()
    resumed = make_search(tmp_path, name)
    resumed.run()
    assert [t.arch.key for t in resumed.store.finished()] == ref_keys
    resumed.store.close()


@pytest.mark.parametrize("update", [1, 2])
def test_the_rl_controller_killed_right_after_a_policy_update_resumes_exactly(
        update, tmp_path, tmp_path_factory):
    """The RL controller's tell may take a policy step: a kill after that step (its result
    stored, the new policy not yet) must not step twice or skip it."""
    ref_keys, ref_state = reference("rl", tmp_path_factory)
    search = make_search(tmp_path, "rl")
    tell = search.strategy.tell

    def tell_then_die(arch, result):
        before = search.strategy.updates
        tell(arch, result)
        if search.strategy.updates > before and search.strategy.updates == update:
            raise Died("after a policy update")

    search.strategy.tell = tell_then_die
    with pytest.raises(Died):
        search.run()
    assert search.store.load_strategy_state()["updates"] == update - 1
    search.store.close()
    resumed = make_search(tmp_path, "rl")
    resumed.run()
    assert [t.arch.key for t in resumed.store.finished()] == ref_keys
    same_state(resumed.store.load_strategy_state(), ref_state, "rl state")
    resumed.store.close()
