"""The storage contract (``nastk/run/storage.py``), run over every back end.

Each test takes a ``backend`` (a factory per back end, the way Optuna runs every storage
through one test suite): the SQLite ``RunStore`` opened with its run folder's lock, as the CLI
opens it, and the in-memory ``MemoryStorage``. "Reopening" the in-memory store hands back the
same object: its trials live as long as the process, which is what an in-process resume
continues from.

Resume is checked the way ``tests/test_resume_windows.py`` checks it for SQLite alone: a search
dies (a ``BaseException`` raised at one step of the loop, its ``Search`` object abandoned) and a
fresh ``Search`` with a fresh strategy on the same store must end with the same trials and the
same strategy state as an uninterrupted run.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_contracts import STRATEGY_OPTIONS, ContractSpace, synthetic_result
from test_resume_windows import Died, arm, kill_point, same_state, track_record

from nastk.core import registry
from nastk.core.errors import StoreError
from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.evaluation.base import FunctionEvaluator
from nastk.run.lock import lock_run_dir
from nastk.run.loop import Budget, Search
from nastk.run.memory_store import MemoryStorage
from nastk.run.sqlite_store import RunStore
from nastk.run.storage import IN_FLIGHT_META, DuplicateResultError, Storage

SPACE = ContractSpace()
OBJECTIVE = Objective(metric="score", costs=("cost",))
N_TRIALS = 16


class SQLiteBackend:
    """``RunStore`` in a run folder, holding the folder's lock while open."""

    name = "sqlite"

    def open(self, where: Path) -> Storage:
        return RunStore(where / RunStore.FILENAME, lock=lock_run_dir(where, create=True))


class MemoryBackend:
    """``MemoryStorage``, one per folder name; reopening returns the same object."""

    name = "memory"

    def __init__(self) -> None:
        self.stores: dict[Path, MemoryStorage] = {}

    def open(self, where: Path) -> Storage:
        return self.stores.setdefault(where, MemoryStorage())


@pytest.fixture(params=[SQLiteBackend, MemoryBackend], ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Any:
    return request.param()


def arch(i: int) -> Any:
    """The ``i``-th architecture of a fixed sample of the contract space (distinct keys)."""
    rng = np.random.default_rng(1234)
    seen: dict[str, Any] = {}
    while len(seen) <= i:
        a = SPACE.sample(rng)
        seen.setdefault(a.key, a)
    return list(seen.values())[i]


def evaluator(calls: list[str] | None = None) -> FunctionEvaluator:
    """The contract space's synthetic results (failures raise, and become failed results)."""
    def fn(a):
        if calls is not None:
            calls.append(a.key)
        res = synthetic_result(SPACE, a)
        if res.error is not None:
            raise RuntimeError(res.error)
        return res.metrics, res.costs
    return FunctionEvaluator(fn)


def make_search(store: Storage, name: str, budget: int = N_TRIALS, seed: int = 5,
                calls: list[str] | None = None) -> Search:
    strategy = registry.instantiate(registry.STRATEGIES, name, STRATEGY_OPTIONS.get(name, {}),
                                    SPACE, OBJECTIVE, seed=seed)
    return Search(SPACE, strategy, evaluator(calls), OBJECTIVE, store, Budget(trials=budget))


# -- writes and reads ---------------------------------------------------------------------------
def test_the_write_order_of_a_trial_and_what_is_read_back(backend, tmp_path):
    with backend.open(tmp_path) as st:
        first = st.start_trial(arch(0))  # no state: neither state nor in-flight list written
        assert st.load_strategy_state() is None and st.get_meta(IN_FLIGHT_META) is None
        second = st.start_trial(arch(1), {"rng": {"n": 1}}, in_flight=[first])
        assert (first, second) == (1, 2)
        assert st.get_meta(IN_FLIGHT_META) == [1, 2]
        assert st.load_strategy_state() == {"rng": {"n": 1}}
        assert [(t.id, t.status, t.result) for t in st.trials()] == [
            (1, Status.RUNNING, None), (2, Status.RUNNING, None)]
        assert st.finished() == [] and st.untold() == [] and st.lookup(arch(1)) is None

        result = Result.complete({"score": 0.25, "nan": float("nan")}, {"cost": 3.0},
                                 duration_s=1.5, info={"epochs": (1, 2), 7: "seven"})
        st.finish_trial(second, result)
        (got,) = st.finished()
        assert got.id == second and got.arch == arch(1) and got.status is Status.COMPLETE
        assert got.finished is not None and got.finished >= got.started
        # JSON read-back: the tuple is a list, the int key a string, NaN stays NaN
        assert got.result.metrics["score"] == 0.25 and np.isnan(got.result.metrics["nan"])
        assert got.result.costs == {"cost": 3.0} and got.result.duration_s == 1.5
        assert got.result.info == {"epochs": [1, 2], "7": "seven"}
        assert [t.id for t in st.untold()] == [second]
        assert st.lookup(arch(1)).id == second and st.lookup(arch(0)) is None

        st.mark_told([second], {"rng": {"n": 2}}, in_flight=[first])
        assert st.untold() == [] and st.get_meta(IN_FLIGHT_META) == [1]
        assert st.load_strategy_state() == {"rng": {"n": 2}}
        st.mark_told([], None)  # None: the saved state and in-flight list stay
        assert st.load_strategy_state() == {"rng": {"n": 2}} and st.get_meta("in_flight") == [1]
        st.save_strategy_state({"rng": {"n": 3}})
        assert st.load_strategy_state() == {"rng": {"n": 3}}

        st.finish_trial(first, Result.failed("boom", duration_s=0.5))
        assert [t.id for t in st.untold()] == [first]
        assert st.lookup(arch(0)).result.error == "boom"
        third = st.start_trial(arch(2))
        assert st.count() == 3 and st.count(Status.COMPLETE) == 1
        assert st.count(Status.COMPLETE, Status.FAILED) == 2 and st.count(Status.RUNNING) == 1
        assert st.mark_interrupted() == 1 and st.mark_interrupted() == 0
        assert [t.status for t in st.trials()] == [Status.FAILED, Status.COMPLETE,
                                                   Status.INTERRUPTED]
        assert st.trials()[2].id == third


def test_metadata_round_trips_through_json_and_refuses_what_json_cannot_hold(backend, tmp_path):
    with backend.open(tmp_path) as st:
        st.set_meta("run", {"seed": 3, "costs": ("flops",), 1: None, "x": float("inf")})
        assert st.get_meta("run") == {"seed": 3, "costs": ["flops"], "1": None, "x": float("inf")}
        st.get_meta("run")["seed"] = 99  # a read is a copy
        assert st.get_meta("run")["seed"] == 3
        with pytest.raises(TypeError):
            st.set_meta("run", {"arch": object()})
        assert st.get_meta("run")["seed"] == 3  # nothing of the refused write kept
        assert st.get_meta("missing", "default") == "default"


def test_the_saved_state_is_a_copy_later_changes_cannot_reach(backend, tmp_path):
    """The RL controller's state_dict() holds its live tensors, which its next update changes
    in place; neither that nor changing a loaded state may change what the store holds."""
    policy = torch.nn.Linear(3, 2)
    state = {"policy": policy.state_dict(), "history": [1.0, 2.0], "seen": {"a", "b"}}
    expected = {"policy": {k: v.clone() for k, v in policy.state_dict().items()},
                "history": [1.0, 2.0], "seen": {"a", "b"}}
    with backend.open(tmp_path) as st:
        tid = st.start_trial(arch(0), state, in_flight=[])
        with torch.no_grad():
            policy.weight.add_(1.0)  # the strategy goes on learning
        state["history"].append(3.0)
        loaded = st.load_strategy_state()
        same_state(loaded, expected)
        loaded["policy"]["weight"].zero_()
        loaded["history"].clear()
        same_state(st.load_strategy_state(), expected)
        st.finish_trial(tid, Result.complete({"score": 1.0}))
        st.mark_told([tid], state)
        same_state(st.load_strategy_state()["policy"], policy.state_dict())


def test_the_state_may_hold_what_a_weights_only_load_reads(backend, tmp_path):
    state = {"od": OrderedDict(b=1, a=2), "size": torch.Size([2, 3]), "c": 1 + 2j,
             "dtype": torch.float16, "set": {1, 2}, "bytes": b"x", "tuple": (1, "a", None),
             "grad": torch.ones(2, requires_grad=True), "half": torch.arange(3.0).half(),
             "int": torch.tensor([7], dtype=torch.int64)}
    with backend.open(tmp_path) as st:
        st.save_strategy_state(state)
        loaded = st.load_strategy_state()
    same_state(loaded, state)
    assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in state.items()}
    assert list(loaded["od"]) == ["b", "a"] and loaded["grad"].requires_grad
    assert loaded["half"].dtype == torch.float16 and loaded["int"].dtype == torch.int64


def test_a_state_sqlite_could_not_read_back_is_refused_in_memory_when_saved(tmp_path):
    """A numpy scalar in a state: the SQLite store saves it and fails only when a resume reads
    it (weights-only); the in-memory store refuses it at once, naming the type, and keeps the
    state it had."""
    state = {"rng": 1, "best": np.float64(0.5)}
    with RunStore.in_dir(tmp_path) as st:
        st.save_strategy_state(state)
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            st.load_strategy_state()
    mem = MemoryStorage()
    mem.save_strategy_state({"rng": 0})
    tid = mem.start_trial(arch(0))
    mem.finish_trial(tid, Result.complete({"score": 1.0}))
    with pytest.raises(StoreError, match=r"holds a numpy\.float64 \(np\.float64\(0\.5\)\)"):
        mem.mark_told([tid], state, in_flight=[])
    assert mem.load_strategy_state() == {"rng": 0} and [t.id for t in mem.untold()] == [tid]
    assert mem.get_meta(IN_FLIGHT_META) is None


# -- what the store refuses ---------------------------------------------------------------------
@pytest.mark.parametrize("status", [Status.RUNNING, Status.INTERRUPTED])
def test_finish_trial_refuses_a_result_that_is_not_finished(backend, tmp_path, status):
    with backend.open(tmp_path) as st:
        tid = st.start_trial(arch(0))
        with pytest.raises(ValueError, match=f"complete or failed result, got {status.value}"):
            st.finish_trial(tid, Result(status))
        assert [t.status for t in st.trials()] == [Status.RUNNING] and not st.finished()


def test_a_second_finished_row_for_one_architecture_is_refused(backend, tmp_path):
    with backend.open(tmp_path) as st:
        first = st.start_trial(arch(0))
        st.finish_trial(first, Result.complete({"score": 1.0}))
        again = st.start_trial(arch(0))  # a second row may start (a redo) ...
        with pytest.raises(DuplicateResultError, match=rf"already has a result \(trial {first}\)"
                                                       rf"; trial {again} cannot"):
            st.finish_trial(again, Result.failed("later"))  # ... but never finish
        assert [(t.id, t.status) for t in st.trials()] == [(first, Status.COMPLETE),
                                                           (again, Status.RUNNING)]
        assert st.lookup(arch(0)).result.metrics == {"score": 1.0}
        st.finish_trial(first, Result.complete({"score": 2.0}))  # its own row: a correction
        assert st.lookup(arch(0)).result.metrics == {"score": 2.0} and st.count() == 2


def test_writes_naming_unknown_trials_are_refused_and_keep_nothing(backend, tmp_path):
    with backend.open(tmp_path) as st:
        tid = st.start_trial(arch(0))
        st.finish_trial(tid, Result.complete({"score": 1.0}))
        with pytest.raises(StoreError, match="holds no trial 5"):
            st.finish_trial(5, Result.complete({"score": 1.0}))
        with pytest.raises(StoreError, match="holds no trial 7"):
            st.mark_told([tid, 7], {"rng": 1}, in_flight=[])
        assert [t.id for t in st.untold()] == [tid] and st.load_strategy_state() is None
        assert st.get_meta(IN_FLIGHT_META) is None
        with pytest.raises(TypeError):  # a result JSON cannot hold: nothing of it kept
            st.finish_trial(tid, Result(Status.COMPLETE, {"score": 2.0}, info={"x": object()}))
        assert st.lookup(arch(0)).result.metrics == {"score": 1.0}


def test_a_second_writer_is_refused_where_one_could_exist(backend, tmp_path):
    """SQLite: a run folder takes one live process; a second store on a locked folder is refused
    naming the owner, and opens once the first is closed. In memory the question does not
    arise: the store is an object of one process, which no other process can reach, and every
    ``MemoryStorage()`` is a store of its own: there is nothing shared to lock."""
    first = backend.open(tmp_path)
    first.set_meta("owner", "first")
    if isinstance(backend, SQLiteBackend):
        with pytest.raises(StoreError, match=rf"in use by pid {os.getpid()} on host .*"
                                             r"\(this process\)"):
            backend.open(tmp_path)
        first.close()
        with backend.open(tmp_path) as second:
            assert second.get_meta("owner") == "first"
    else:
        other = MemoryStorage()
        other.set_meta("owner", "other")
        assert first.get_meta("owner") == "first" and other.count() == first.count() == 0
        first.close()  # releases nothing: the store stays usable
        assert backend.open(tmp_path) is first and first.get_meta("owner") == "first"


# -- the search loop over the store -------------------------------------------------------------
def plain_loop(name: str, budget: int, seed: int = 5) -> tuple[list[str], int, list[Status]]:
    """The independent reference: ask 1, answer a repeat from a dict, tell; returns the keys
    evaluated, the repeats and the statuses the strategy was told."""
    strategy = registry.instantiate(registry.STRATEGIES, name, STRATEGY_OPTIONS.get(name, {}),
                                    SPACE, OBJECTIVE, seed=seed)
    cache: dict[str, Result] = {}
    repeats, told = 0, []
    while len(cache) < budget:
        a = strategy.ask(1)[0]
        if a.key in cache:
            repeats += 1
        else:
            cache[a.key] = evaluator().evaluate(a)
        strategy.tell(a, cache[a.key])
        told.append(cache[a.key].status)
    return list(cache), repeats, told


def test_a_repeated_architecture_is_answered_from_the_store(backend, tmp_path):
    calls: list[str] = []
    search = make_search(backend.open(tmp_path), "evolution", budget=40, calls=calls)
    told: list[Status] = []
    tell = search.strategy.tell
    search.strategy.tell = lambda a, r: told.append(r.status) or tell(a, r)
    trials = search.run()
    keys, repeats, plain_told = plain_loop("evolution", 40)
    assert repeats > 0  # evolution re-proposes (7 for this seed; measured)
    assert calls == keys == [t.arch.key for t in trials]  # each evaluated once, in order
    assert search.duplicates == repeats and told == plain_told
    search.store.close()


def test_failed_trials_are_recorded_counted_and_told_as_failed(backend, tmp_path):
    search = make_search(backend.open(tmp_path), "random", budget=120)
    told: dict[str, Status] = {}
    tell = search.strategy.tell
    search.strategy.tell = lambda a, r: told.__setitem__(a.key, r.status) or tell(a, r)
    trials = search.run()
    corner = [t for t in trials if t.arch["op"] == "none" and t.arch["act"] == "relu"]
    assert len(corner) >= 5  # 32 of 384 fail: about 10 expected in 120
    assert all(t.status is Status.FAILED and "synthetic failure" in t.result.error
               for t in corner)
    assert search.store.count(Status.FAILED) == len(corner) == search.n_failed
    assert search.store.count(Status.COMPLETE) == 120 - len(corner) == search.n_complete
    assert {k for k, s in told.items() if s is Status.FAILED} == {t.arch.key for t in corner}
    assert search.best.result.metrics["score"] == max(
        t.result.metrics["score"] for t in trials if t.status is Status.COMPLETE)
    search.store.close()


@pytest.mark.parametrize("name", registry.STRATEGIES.names())
def test_both_back_ends_record_the_same_search(name, tmp_path):
    """Same seed, same proposals, same results and strategy state, whichever store."""
    runs = []
    for b in (SQLiteBackend(), MemoryBackend()):
        search = make_search(b.open(tmp_path / b.name), name)
        trials = search.run()
        runs.append(([(t.id, t.arch.key, t.status, t.result.metrics, t.result.costs)
                      for t in trials], search.duplicates, search.store.load_strategy_state()))
        search.store.close()
    (a, dup_a, state_a), (b, dup_b, state_b) = runs
    assert len(a) == N_TRIALS and a == b and dup_a == dup_b
    same_state(state_a, state_b)


# -- resume ---------------------------------------------------------------------------------------
_REFERENCE: dict[tuple[str, str], tuple[list[str], dict[str, Any]]] = {}


def reference(backend: Any, name: str, where: Path) -> tuple[list[str], dict[str, Any]]:
    """The trials and final strategy state of an uninterrupted run on ``backend``."""
    if (backend.name, name) not in _REFERENCE:
        search = make_search(backend.open(where), name)
        search.run()
        _REFERENCE[(backend.name, name)] = ([t.arch.key for t in search.store.finished()],
                                            search.store.load_strategy_state())
        search.store.close()
    return _REFERENCE[(backend.name, name)]


#: the steps of test_resume_windows.py's kill points that every back end has (it adds one inside
#: an SQLite transaction, and a repeat's save: see the test after the next)
POINTS = ["after ask", "after start_trial", "during evaluate", "after finish_trial",
          "after tell", "after mark_told", "in the on_trial callback", "after record"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("name", ["evolution", "random", "rl"])
def test_a_search_abandoned_at_any_step_resumes_exactly(backend, name, point, tmp_path):
    ref_keys, ref_state = reference(backend, name, tmp_path / "reference")
    for at in (3, 11):  # early (random warm-up) and late (the strategy learning)
        where = tmp_path / str(at)
        search = make_search(backend.open(where), name)
        track_record(search)
        kill_point(search, point, at)
        with pytest.raises(Died):  # the point is reached
            search.run()
        search.store.close()
        calls: list[str] = []
        resumed = make_search(backend.open(where), name, calls=calls)
        resumed.run()
        keys = [t.arch.key for t in resumed.store.finished()]
        assert resumed.store.count(Status.RUNNING) == 0
        assert keys == ref_keys, f"{name}: died {point} after {at} trials"
        assert len(set(keys)) == N_TRIALS and not set(calls) & set(keys[:at])
        same_state(resumed.store.load_strategy_state(), ref_state, f"{name}, {point}, {at}")
        resumed.store.close()


def test_a_search_abandoned_before_a_repeats_state_is_saved_resumes_exactly(backend, tmp_path):
    """A repeated proposal is told its stored result and the state saved alone; evolution with
    seed 2 repeats itself 3 times in 24 trials (measured): the search dies before each save."""
    def run(where: Path, die_at_repeat: int | None = None, calls: list[str] | None = None
            ) -> tuple[list[str], dict[str, Any], int]:
        search = make_search(backend.open(where), "evolution", budget=24, seed=2, calls=calls)
        if die_at_repeat is not None:
            saves = {"n": 0}

            def nth(_: Search) -> bool:
                saves["n"] += 1
                return saves["n"] == die_at_repeat
            fired = arm(search, search.store, "save_strategy_state", nth, after=False)
        try:
            search.run()
        except Died:
            assert die_at_repeat is not None and fired["n"] == 1
        out = ([t.arch.key for t in search.store.finished()],
               search.store.load_strategy_state(), search.duplicates)
        search.store.close()
        return out

    ref_keys, ref_state, repeats = run(tmp_path / "reference")
    assert repeats == 3
    for k in range(1, repeats + 1):
        killed_keys, _, _ = run(tmp_path / str(k), die_at_repeat=k)
        assert len(killed_keys) < 24
        calls: list[str] = []
        keys, state, _ = run(tmp_path / str(k), calls=calls)
        assert keys == ref_keys, f"died before repeat {k}'s state was saved"
        assert not set(calls) & set(killed_keys)  # nothing finished is evaluated again
        same_state(state, ref_state, f"died before repeat {k}'s state was saved")


# -- trials in flight -----------------------------------------------------------------------------
class OutOfOrder:
    """An executor in this process: up to ``width`` candidates in flight, the newest finished
    first; after ``die_after`` records the driver dies."""

    def __init__(self, width: int = 3, die_after: int | None = None) -> None:
        self.width, self.die_after, self.recorded = width, die_after, 0
        self.in_flight_seen: list[tuple[list[int], list[int]]] = []

    def run(self, search: Search) -> None:
        pending: list[Any] = []
        while True:
            while len(pending) < self.width and (c := search.propose()) is not None:
                pending.append(c)
                self.in_flight_seen.append((sorted(c.trial_id for c in pending),
                                            search.store.get_meta(IN_FLIGHT_META)))
            if not pending:
                return
            c = pending.pop()
            search.record(c, search.evaluate_here(c))
            self.recorded += 1
            self.in_flight_seen.append((sorted(c.trial_id for c in pending),
                                        search.store.get_meta(IN_FLIGHT_META)))
            if self.die_after is not None and self.recorded >= self.die_after:
                raise Died("driver")


def test_the_in_flight_list_follows_the_trials_in_flight_and_is_redone_first(backend,
                                                                              tmp_path):
    executor = OutOfOrder(width=3, die_after=5)
    search = make_search(backend.open(tmp_path), "random", budget=12)
    search.executor = executor
    with pytest.raises(Died):
        search.run()
    # after every proposal and every record, the stored list is what is in flight
    assert all(seen == stored for seen, stored in executor.in_flight_seen)
    left = [t for t in search.store.trials() if t.status is Status.RUNNING]
    assert len(left) == 2 and search.store.get_meta(IN_FLIGHT_META) == [t.id for t in left]
    search.store.close()

    calls: list[str] = []
    again = make_search(backend.open(tmp_path), "random", budget=12, calls=calls)
    again.executor = OutOfOrder(width=1)
    trials = again.run()
    assert calls[:2] == [t.arch.key for t in left]  # redone first, in their order
    done = [t for t in trials if t.done]
    assert len(done) == 12 == len({t.arch.key for t in done})
    assert [t.status for t in trials if t.id in {x.id for x in left}] == [Status.INTERRUPTED] * 2
    assert again.store.get_meta(IN_FLIGHT_META) == []
    again.store.close()
