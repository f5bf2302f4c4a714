"""The engine's schedulers (successive halving, ASHA, Hyperband): their decisions against
independent re-computations, the resource they charge, and exact resume after a run dies at
any step of a rung (for every scheduler, in-process; the Ray executors' tests are in
``test_scheduled_executors.py``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_resume_windows import CommitDies, Died, arm, same_state

from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.run.loop import Budget, Search
from nastk.run.memory_store import MemoryStorage
from nastk.run.sqlite_store import RunStore
from nastk.scheduling.config import SchedulerConfig, build_scheduler, resolve_rungs
from nastk.scheduling.fidelity import Fidelity
from nastk.scheduling.ranking import promotion_order
from nastk.scheduling.scheduler import hyperband_brackets
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical, IntRange
from nastk.space.search_space import SearchSpace
from nastk.strategies.evolution import RegularizedEvolution
from nastk.strategies.nsga2 import NSGA2
from nastk.strategies.random_search import RandomSearch

SPACE = SearchSpace([IntRange("a", 0, 15), IntRange("b", 0, 7), Categorical("c", ["p", "q"])])
OBJ = Objective(metric="score")
OBJ_MO = Objective(metric="score", costs=("cost",))
MAX = 27.0
KINDS = {"sh": {"kind": "sh"}, "asha": {"kind": "asha"}, "hyperband": {"kind": "hyperband"},
         "hyperband-async": {"kind": "hyperband", "brackets": "async"}}


def quality(arch: Architecture) -> tuple[float, float]:
    """Two qualities: one that shows early, one that grows with training (curves cross)."""
    q1 = ((arch["a"] * 7 + arch["b"] * 3) % 11) / 11
    q2 = ((arch["a"] * 5 + arch["b"] * 13 + (arch["c"] == "q") * 4) % 17) / 17
    return q1, q2


def closed_form(arch: Architecture, r: float) -> float:
    """The score a candidate reaches after ``r`` epochs, computed directly."""
    q1, q2 = quality(arch)
    return q1 * (1 - 0.8 ** r) + q2 * r / MAX


class ToyTrainer:
    """A resumable evaluator: it adds one epoch's increment at a time to the partial training
    it continues from (a state file), so a wrong or missing state gives a wrong score; its
    ``info.from`` says where it continued from."""

    fidelity = Fidelity("epochs", MAX, resumable=True)

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        return self.evaluate_at(arch, MAX)

    def evaluate_at(self, arch: Architecture, resource: float, *, checkpoint: Path | None = None,
                    state: Path | None = None, state_out: Path | None = None) -> Result:
        self.calls += 1
        reached, value = 0, 0.0
        if state is not None:
            saved = torch.load(state, weights_only=True)
            assert saved["key"] == arch.key
            reached, value = int(saved["reached"]), float(saved["value"])
        q1, q2 = quality(arch)
        for e in range(reached, int(resource)):
            value += q1 * (0.8 ** e - 0.8 ** (e + 1)) + q2 / MAX
        if state_out is not None:
            tmp = state_out.with_suffix(".tmp")
            state_out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": arch.key, "reached": int(resource), "value": value}, tmp)
            os.replace(tmp, state_out)
        cost = float(arch["a"] + arch["b"])
        return Result.complete({"score": value}, {"cost": cost},
                               info={"from": reached, "resource": resource})


def make_search(store: Any, kind: str, *, strategy: str = "random", trials: int = 40,
                resource: float | None = None, objective: Objective = OBJ) -> Search:
    ev = ToyTrainer()
    sched = build_scheduler(SchedulerConfig(**KINDS[kind]), ev.fidelity, objective)
    strat = {"random": RandomSearch, "evolution": RegularizedEvolution,
             "nsga2": NSGA2}[strategy](SPACE, objective, seed=3)
    return Search(SPACE, strat, ev, objective, store, Budget(trials=trials, resource=resource),
                  scheduler=sched, partial_dir=getattr(store, "path", Path(".")).parent /
                  "partial" if isinstance(store, RunStore) else None)


# -- the brackets and rungs ---------------------------------------------------------------------
def test_hyperband_brackets_are_li_et_al_s():
    # Li et al. (2018), Table 1: R = 81, eta = 3
    assert hyperband_brackets(5, 3) == [(0, 81), (1, 34), (2, 15), (3, 8), (4, 5)]


def test_rungs_follow_the_reduction_factor_and_end_at_the_full_budget():
    assert resolve_rungs(SchedulerConfig(kind="sh"), Fidelity("epochs", 27)) == [1, 3, 9, 27]
    assert resolve_rungs(SchedulerConfig(kind="sh", reduction_factor=2),
                         Fidelity("epochs", 6)) == [1, 2, 4, 6]
    table = Fidelity("epochs", 200, 12, levels=(12, 200))
    assert resolve_rungs(SchedulerConfig(kind="hyperband"), table) == [12, 200]
    with pytest.raises(ValueError, match="answers at 12, 200 epochs only"):
        resolve_rungs(SchedulerConfig(kind="sh", rungs=[50, 200]), table)


def test_a_bad_scheduler_option_names_the_field_and_the_allowed_values():
    base = {"space": {"name": "small_cnn"}, "task": {"name": "classification"}}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "scheduler": {"kind": "hyperbnd"}}, "cfg.yaml")
    text = str(err.value)
    assert "scheduler.kind" in text and "'sh'" in text and "'hyperband'" in text
    with pytest.raises(ConfigError, match=r"scheduler\.reduction_factor"):
        parse_config({**base, "scheduler": {"kind": "asha", "reduction_factor": 1}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="brackets is an option of kind 'hyperband'"):
        parse_config({**base, "scheduler": {"kind": "asha", "brackets": "async"}}, "cfg.yaml")
    assert parse_config({**base, "scheduler": "hyperband"}).scheduler.kind == "hyperband"


# -- promotion order against a brute force ---------------------------------------------------------
def brute_order(points: list[tuple[float, ...]]) -> list[int]:
    """NSGA-II's order by definition: peel fronts by pairwise dominance; within a front, the
    crowding distance summed over objectives (extremes infinite), larger first, ties by
    arrival."""
    left = list(range(len(points)))
    out = []
    while left:
        front = [i for i in left if not any(
            all(points[j][k] >= points[i][k] for k in range(len(points[i])))
            and any(points[j][k] > points[i][k] for k in range(len(points[i])))
            for j in left)]
        dist = {i: 0.0 for i in front}
        if len(front) <= 2:
            dist = {i: math.inf for i in front}
        else:
            for k in range(len(points[0])):
                srt = sorted(front, key=lambda i: points[i][k])
                lo, hi = points[srt[0]][k], points[srt[-1]][k]
                dist[srt[0]] = dist[srt[-1]] = math.inf
                for a, b, c in zip(srt, srt[1:], srt[2:], strict=False):
                    if hi > lo and dist[b] != math.inf:
                        dist[b] += (points[c][k] - points[a][k]) / (hi - lo)
        out += sorted(front, key=lambda i: (-dist[i], i))
        left = [i for i in left if i not in front]
    return out


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_promotion_order_is_nsga2_s_order_computed_by_brute_force(dims):
    rng = np.random.default_rng(dims)
    for _ in range(30):
        n = int(rng.integers(1, 14))
        pts = [tuple(float(v) for v in rng.integers(0, 6, dims)) for _ in range(n)]
        entries = [(100 + i, p) for i, p in enumerate(pts)] + [(999, None)]
        got = promotion_order(entries)
        want = (sorted(range(n), key=lambda i: (-pts[i][0], i)) if dims == 1  # by score
                else brute_order(pts))
        assert got == [100 + i for i in want]


# -- decisions in a whole run ------------------------------------------------------------------
def rung_rows(store: Any) -> list[tuple[int, int, float, float]]:
    return [(r.trial_id, r.rung, r.resource, round(r.result.metrics["score"], 12))
            for r in store.rungs()]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_rung_continues_from_its_own_partial_training_and_is_charged_the_difference(kind):
    store = MemoryStorage()
    search = make_search(store, kind, trials=45, resource=500)
    search.run()
    rows = store.rungs()
    assert rows and search.spent == pytest.approx(sum(r.cost for r in rows))
    assert search.spent <= 500
    by_trial: dict[int, list[Any]] = {}
    for r in rows:
        by_trial.setdefault(r.trial_id, []).append(r)
    archs = {t.id: t.arch for t in store.trials()}
    for tid, seq in by_trial.items():
        prev = 0.0
        for r in seq:
            assert r.result.info["from"] == prev, (tid, r.rung)
            assert r.cost == pytest.approx(r.resource - prev)
            assert r.result.metrics["score"] == pytest.approx(closed_form(archs[tid], r.resource))
            prev = r.resource
    # every trial ends with its last rung's result, marked when below the full budget
    for t in store.trials():
        assert t.status is Status.COMPLETE
        last = by_trial[t.id][-1]
        assert t.result.info["resource"] == last.resource
        assert t.result.metrics == last.result.metrics
        assert bool(t.result.info.get("early_stopped")) == (last.resource < MAX)
        assert t.result.cut_short == (last.resource < MAX)


def test_synchronous_halving_promotes_the_top_third_of_each_full_rung():
    store = MemoryStorage()
    search = make_search(store, "sh", trials=27)
    search.run()
    archs = {t.id: t.arch for t in store.trials()}
    rows = store.rungs()
    for rung, n_next in ((0, 9), (1, 3), (2, 1)):
        here = [r.trial_id for r in rows if r.rung == rung]
        nxt = {r.trial_id for r in rows if r.rung == rung + 1}
        r_here = [1, 3, 9][rung]
        ranked = sorted(here, key=lambda t: (-closed_form(archs[t], r_here), here.index(t)))
        assert nxt == set(ranked[:n_next]), rung
    # the rungs of one bracket run in order: every rung-0 result before any rung-1 job
    assert [r.rung for r in rows] == [0] * 27 + [1] * 9 + [2] * 3 + [3]


@pytest.mark.parametrize("kind", ["asha", "hyperband-async"])
def test_asha_continues_exactly_the_candidates_in_the_top_of_their_rung_so_far(kind):
    store = MemoryStorage()
    make_search(store, kind, trials=60).run()
    rows = store.rungs()
    archs = {t.id: t.arch for t in store.trials()}
    bracket_of: dict[int, int] = {}
    for r in rows:  # a candidate's bracket is the rung it started at
        bracket_of.setdefault(r.trial_id, r.rung)
    seen: dict[tuple[int, int], list[tuple[float, int]]] = {}
    went_on = {(r.trial_id, r.rung - 1) for r in rows}
    for i, r in enumerate(rows):
        key = (bracket_of[r.trial_id], r.rung)
        seen.setdefault(key, []).append((closed_form(archs[r.trial_id], r.resource), i))
        if r.rung == 3:
            continue
        m = len(seen[key])
        keep = max(1, math.floor(m / 3))
        top = sorted(seen[key], key=lambda v: (-v[0], v[1]))[:keep]
        assert ((r.trial_id, r.rung) in went_on) == (i in {j for _, j in top}), (i, r)


def test_multi_objective_promotion_keeps_the_front_not_the_most_accurate():
    store = MemoryStorage()
    make_search(store, "sh", trials=27, objective=OBJ_MO, strategy="nsga2").run()
    rows = store.rungs()
    archs = {t.id: t.arch for t in store.trials()}
    here = [r.trial_id for r in rows if r.rung == 0]
    nxt = [r.trial_id for r in rows if r.rung == 1]
    pts = [(closed_form(archs[t], 1), -float(archs[t]["a"] + archs[t]["b"])) for t in here]
    expect = [here[i] for i in brute_order(pts)[:9]]
    assert sorted(nxt) == sorted(expect)
    by_score = sorted(here, key=lambda t: -closed_form(archs[t], 1))[:9]
    assert sorted(by_score) != sorted(expect)  # the two rules differ on this run


def test_the_strategy_is_told_every_rung_and_each_candidate_once():
    store = MemoryStorage()
    search = make_search(store, "hyperband", trials=30)
    fid, final = [], []
    strat = search.strategy
    orig_f, orig_t = strat.tell_fidelity, strat.tell
    strat.tell_fidelity = lambda a, r, res: (fid.append((a.key, r)), orig_f(a, r, res))[1]
    strat.tell = lambda a, res: (final.append(a.key), orig_t(a, res))[1]
    search.run()
    assert sorted(fid) == sorted((t.arch.key, r.resource) for r in store.rungs()
                                 for t in store.trials() if t.id == r.trial_id)
    assert sorted(final) == sorted(t.arch.key for t in store.trials())


def test_candidates_outside_the_constraints_are_never_trained_nor_charged():
    from nastk.space.cost_range import CostRangeSpace

    class Costs:
        def __call__(self, arch):
            return {"params": float(arch["a"] * 10 + arch["b"])}

    space = CostRangeSpace(SPACE, Costs(), {"params": (None, 60.0)})
    ev = ToyTrainer()
    sched = build_scheduler(SchedulerConfig(kind="hyperband"), ev.fidelity, OBJ)
    store = MemoryStorage()
    Search(space, RandomSearch(space, OBJ, seed=1), ev, OBJ, store, Budget(trials=30),
           scheduler=sched).run()
    archs = [t.arch for t in store.trials()]
    assert archs and all(a["a"] * 10 + a["b"] <= 60 for a in archs)
    assert ev.calls == len(store.rungs())


# -- exact resume --------------------------------------------------------------------------------
_REF: dict[tuple[str, str], Any] = {}


def reference(kind: str, strategy: str, tmp: Path) -> Any:
    if (kind, strategy) not in _REF:
        search = make_search(RunStore.in_dir(tmp), kind, strategy=strategy, resource=400)
        search.run()
        st = search.store
        _REF[kind, strategy] = (rung_rows(st), [(t.id, t.arch.key, t.status, t.result.info)
                                                 for t in st.trials()],
                                st.load_strategy_state())
        st.close()
    return _REF[kind, strategy]


def kill(search: Search, point: str, at: int) -> dict[str, int]:
    n = lambda s: len(s.store.rungs()) >= at  # noqa: E731
    st = search.store
    if point == "after ask":
        return arm(search, search.strategy, "ask", n)
    if point == "after start_trial":
        return arm(search, st, "start_trial", n)
    if point == "after restart_trial":
        return arm(search, st, "restart_trial", n)
    if point == "during evaluate_at":
        return arm(search, search.evaluator, "evaluate_at", n, after=False)
    if point == "after evaluate_at":
        return arm(search, search.evaluator, "evaluate_at", n)
    if point == "after tell_fidelity":
        return arm(search, search.strategy, "tell_fidelity", n)
    if point == "inside record_rung":
        proxy = CommitDies(st._db, lambda: len(search.in_flight) == 0 and n(search))
        st._db = proxy
        return proxy.__dict__
    if point == "after record_rung":
        return arm(search, st, "record_rung", n)
    if point == "after tell":
        return arm(search, search.strategy, "tell", n)
    if point == "after mark_told":
        return arm(search, st, "mark_told", n)
    if point == "after finish_trial":
        return arm(search, st, "finish_trial", n)
    raise AssertionError(point)


POINTS = ["after ask", "after start_trial", "after restart_trial", "during evaluate_at",
          "after evaluate_at", "after tell_fidelity", "inside record_rung", "after record_rung",
          "after tell", "after mark_told", "after finish_trial"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind,strategy", [("sh", "evolution"), ("asha", "random"),
                                           ("hyperband", "evolution"),
                                           ("hyperband-async", "random")])
def test_a_scheduled_run_killed_at_any_step_resumes_to_the_same_rungs(kind, strategy, point,
                                                                      tmp_path):
    ref_rows, ref_trials, ref_state = reference(kind, strategy, tmp_path / "ref")
    fired_any = False
    for at in (4, 19):
        run_dir = tmp_path / f"run{at}"
        search = make_search(RunStore.in_dir(run_dir), kind, strategy=strategy, resource=400)
        fired = kill(search, point, at)
        try:
            search.run()
        except Died:
            pass
        search.store.close()
        if not (fired.get("n") or fired.get("fired")):
            continue
        fired_any = True
        resumed = make_search(RunStore.in_dir(run_dir), kind, strategy=strategy, resource=400)
        resumed.run()
        st = resumed.store
        assert rung_rows(st) == ref_rows, f"{kind}: died {point} after {at} rungs"
        assert [(t.id, t.arch.key, t.status, t.result.info) for t in st.trials()] == ref_trials
        same_state(st.load_strategy_state(), ref_state, f"{kind} {point} {at}")
        assert not list((run_dir / "partial").glob("*.pt"))  # partial trainings cleaned up
        st.close()
    if point not in ("after restart_trial", "after finish_trial"):
        assert fired_any, point


def test_resume_with_a_larger_resource_budget_goes_on_from_the_first_session(tmp_path):
    part = make_search(RunStore.in_dir(tmp_path / "part"), "asha", resource=120)
    part.run()
    assert part.spent <= 120 and "resource budget of 120" in part.stop_reason
    first = rung_rows(part.store)
    ended = {t.id: t.result for t in part.store.trials()}
    waiting = [t for t, r in ended.items() if r.info["scheduler"] == "budget"]
    part.store.close()
    more = make_search(RunStore.in_dir(tmp_path / "part"), "asha", resource=300)
    more.run()
    got = rung_rows(more.store)
    # the first session's rungs stand; a candidate that waited for a promotion when it ended
    # was finished with its last rung (the run's report is complete) and stays so
    assert got[:len(first)] == first and len(got) > len(first)
    assert more.spent <= 300
    for tid in waiting:
        assert more.store.trials()[tid - 1].result == ended[tid]
        assert all(r[0] != tid for r in got[len(first):])
    more.store.close()




def test_the_readme_scheduler_example_runs_as_written(tmp_path):
    import re
    import subprocess
    import sys

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    marker = "<!-- tested: tests/test_schedulers.py -->"
    code = re.search(r"```python\n(.*?)```", text.split(marker, 1)[1], re.S).group(1)
    code += ("\nrows = search.record().rungs\n"
             "assert sum(r.cost for r in rows) <= 400 and len(rows) > len(search.trials)\n"
             "assert best.result.info['resource'] == 27 and best.arch['depth'] > 1\n")
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "candidates" in done.stdout


def test_the_incumbent_after_a_resume_is_the_live_one_even_when_the_top_rung_failed():
    ev = ToyTrainer()
    search = Search(SPACE, RandomSearch(SPACE, OBJ), ev, OBJ, MemoryStorage(), Budget(),
                    scheduler=build_scheduler(SchedulerConfig(kind="sh"), ev.fidelity, OBJ))
    from nastk.core.trial import Trial

    ok9 = Trial(1, SPACE.sample(np.random.default_rng(0)), Status.COMPLETE,
                Result.complete({"score": 5.0}, info={"resource": 9.0}), 0.0, 1.0)
    bad = Trial(2, SPACE.sample(np.random.default_rng(1)), Status.FAILED,
                Result(Status.FAILED, {}, {}, "boom", 0.0, {"resource": 27.0}), 0.0, 1.0)
    assert search._best([ok9, bad]) is ok9
    assert search._better_incumbent(ok9) and not search._better_incumbent(bad)
