"""``run_tabular``: the engine's search loop over an in-memory store that keeps no strategy state,
checked against the plain in-memory loop tabular benchmarks ran before (written out below as
the independent reference)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from test_contracts import OPS, STRATEGY_OPTIONS, ContractSpace

from nastk.core import registry
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.run.tabular import Trajectory, run_tabular
from nastk.space.architecture import Architecture
from nastk.strategies.base import Strategy

SPACE = ContractSpace()
OBJECTIVE = Objective(metric="score")


class Table:
    """A tabular evaluator: the search metric ``score``, a report metric ``report`` ranked
    differently, NaN scores for one corner of the space (a table's missing entries) and a
    report of 0.0 for the widest and deepest architectures (the best scored); counts its
    queries."""

    def __init__(self) -> None:
        self.queries = 0

    def evaluate(self, arch: Architecture, checkpoint: Any = None) -> Result:
        self.queries += 1
        score = math.log(arch["width"]) + 0.4 * arch["depth"] - 0.1 * OPS.index(arch["op"])
        if arch["op"] == "none" and arch["act"] == "gelu":
            score = math.nan
        report = 0.0 if arch["width"] == 64 and arch["depth"] == 4 else (
            100.0 - 3 * arch["depth"] + arch["width"] / 8)
        return Result.complete({"score": score, "report": report}, {"cost": 1.0},
                               info={"row": int(arch["width"] * 10 + arch["depth"])})


def plain_loop(strategy: Strategy, evaluator: Table, budget: int, report_metric: str,
               max_duplicate_streak: int = 1000) -> Trajectory:
    """The loop ``run_tabular`` ran before it became the engine's: validate, answer a repeat
    from the results so far, the budget in distinct architectures, the incumbent by score."""
    seen: dict[str, Result] = {}
    traj = Trajectory()
    best_score, best_report, streak = -math.inf, math.nan, 0
    while traj.queries < budget:
        arch = strategy.space.validate(strategy.ask(1)[0])
        if arch.key in seen:
            strategy.tell(arch, seen[arch.key])
            traj.duplicates += 1
            streak += 1
            if streak >= max_duplicate_streak:
                break
            continue
        streak = 0
        result = seen[arch.key] = evaluator.evaluate(arch)
        strategy.tell(arch, result)
        score = OBJECTIVE.score(result)
        if score is not None and score > best_score:
            best_score, best_report = score, float(result.value(report_metric) or math.nan)
        traj.archs.append(arch)
        traj.incumbent_report.append(best_report)
    return traj


def strategy(name: str, seed: int) -> Strategy:
    return registry.instantiate(registry.STRATEGIES, name, STRATEGY_OPTIONS.get(name, {}),
                                SPACE, OBJECTIVE, seed=seed)


def same_curve(a: list[float], b: list[float]) -> bool:
    """Equal, NaN equal to NaN."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y))
                                    for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["random", "evolution", "bo", "nsga2"])  # rl: below
def test_run_tabular_searches_as_the_plain_loop_did(name):
    for seed in (0, 1):
        expected = plain_loop(strategy(name, seed), Table(), 60, "report")
        calls: list[tuple[int, int]] = []
        table = Table()
        got = run_tabular(strategy(name, seed), table, OBJECTIVE, 60, "report",
                          on_query=lambda n, t, c=calls: c.append((n, len(t.incumbent_report))))
        assert [a.key for a in got.archs] == [a.key for a in expected.archs]
        assert same_curve(got.incumbent_report, expected.incumbent_report)
        assert got.duplicates == expected.duplicates and table.queries == got.queries == 60
        assert calls == [(n, n) for n in range(1, 61)]
        assert got.stop_reason == "budget of trials reached"


def test_nan_scores_and_zero_reports_shape_the_curve_as_before():
    """An architecture with a NaN score never becomes the incumbent; an incumbent whose report
    is 0.0 is recorded as NaN (the loop's ``value or nan``). Both occur for this seed."""
    got = run_tabular(strategy("random", 4), Table(), OBJECTIVE, 120, "report")
    expected = plain_loop(strategy("random", 4), Table(), 120, "report")
    assert same_curve(got.incumbent_report, expected.incumbent_report)
    curve = got.incumbent_report
    nan_scored = [i for i, a in enumerate(got.archs) if a["op"] == "none" and a["act"] == "gelu"]
    assert nan_scored and all(same_curve(curve[i:i + 1], curve[i - 1:i]) for i in nan_scored)
    zero = [i for i, a in enumerate(got.archs) if a["width"] == 64 and a["depth"] == 4]
    assert zero and not math.isnan(curve[zero[0] - 1]) and math.isnan(curve[-1])


class Stuck(Strategy):
    """Proposes its first architecture first, then only the second one, forever."""

    def __init__(self, space: ContractSpace) -> None:
        super().__init__(space, OBJECTIVE, seed=0)
        self.archs = [space.sample(np.random.default_rng(i)) for i in (0, 1)]
        self.asked = 0

    def ask(self, n: int = 1) -> list[Architecture]:
        self.asked += n
        return [self.archs[min(self.asked - 1, 1)]]

    def tell(self, arch: Architecture, result: Result) -> None:
        pass


def test_a_streak_of_repeats_stops_the_search_as_before():
    got = run_tabular(Stuck(SPACE), Table(), OBJECTIVE, 10, "report", max_duplicate_streak=7)
    expected = plain_loop(Stuck(SPACE), Table(), 10, "report", max_duplicate_streak=7)
    assert got.queries == expected.queries == 2
    assert got.duplicates == expected.duplicates == 7
    assert got.stop_reason.startswith("7 proposals in a row were already evaluated")


def test_the_strategy_state_is_never_asked_for():
    """The in-memory store keeps no state: ``state_dict()`` (not free for bo and rl) is never
    called; the RL controller searches as in the plain loop."""
    s = strategy("rl", 2)
    s.state_dict = lambda: pytest.fail("state_dict() called")  # type: ignore[method-assign]
    got = run_tabular(s, Table(), OBJECTIVE, 30, "report")
    expected = plain_loop(strategy("rl", 2), Table(), 30, "report")
    assert [a.key for a in got.archs] == [a.key for a in expected.archs]
    assert same_curve(got.incumbent_report, expected.incumbent_report)
    assert got.duplicates == expected.duplicates


def test_a_budget_below_one_evaluates_nothing():
    table = Table()
    traj = run_tabular(strategy("random", 0), table, OBJECTIVE, 0)
    assert traj.queries == 0 and table.queries == 0 and math.isnan(traj.final_report)
