"""What "better" and "best" mean under an objective (nastk.core.objective): the direction, ties,
missing and NaN values, and the order of a ranking."""

from __future__ import annotations

import math

import pytest

from nastk.core.objective import Objective
from nastk.core.result import Result

MAX = Objective(metric="accuracy")
MIN = Objective(metric="loss", direction="min")
NAN = math.nan


@pytest.mark.parametrize(("objective", "a", "b", "expected"), [
    (MAX, 0.9, 0.8, True), (MAX, 0.8, 0.9, False), (MAX, 0.8, 0.8, False),
    (MIN, 0.8, 0.9, True), (MIN, 0.9, 0.8, False), (MIN, 0.8, 0.8, False),
    (MAX, -math.inf, None, True), (MIN, math.inf, NAN, True),  # any number beats nothing
    (MAX, None, 0.0, False), (MIN, NAN, 5.0, False), (MAX, None, None, False),
    (MAX, NAN, NAN, False), (MAX, math.inf, 1e308, True), (MIN, -math.inf, -1e308, True),
])
def test_better_follows_the_direction_and_never_prefers_a_missing_value(objective, a, b,
                                                                         expected):
    assert objective.better(a, b) is expected


def test_best_is_the_first_of_the_best_and_skips_unusable_values():
    values = [NAN, 0.7, None, 0.9, 0.2, 0.9]
    assert MAX.best(values) == 0.9
    assert MIN.best(values) == 0.2
    assert MAX.best([None, NAN]) is None and MAX.best([]) is None
    records = [{"epoch": 1, "v": 0.5}, {"epoch": 2, "v": 0.7}, {"epoch": 3},
               {"epoch": 4, "v": 0.7}, {"epoch": 5, "v": 0.1}]
    assert MAX.best(records, key=lambda r: r.get("v"))["epoch"] == 2  # tie: the first
    assert MIN.best(records, key=lambda r: r.get("v"))["epoch"] == 5


def test_ranked_orders_best_first_keeps_ties_in_order_and_drops_unusable_items():
    items = [("a", 0.5), ("b", None), ("c", 0.9), ("d", 0.5), ("e", NAN), ("f", 0.1)]
    assert [n for n, _ in MAX.ranked(items, key=lambda it: it[1])] == ["c", "a", "d", "f"]
    assert [n for n, _ in MIN.ranked(items, key=lambda it: it[1])] == ["f", "a", "d", "c"]


def test_value_and_score_of_results():
    ok = Result.complete({"accuracy": 0.8, "loss": 0.3})
    failed = Result.failed("boom", metrics={"accuracy": 0.99})
    assert MAX.value(ok) == 0.8 and MIN.value(ok) == 0.3
    assert MAX.score(ok) == 0.8 and MIN.score(ok) == -0.3
    assert MAX.value(failed) is None and MAX.score(failed) is None
    assert Objective(metric="iou").value(ok) is None


def test_of_task_takes_the_primary_metric_and_its_direction():
    class Task:
        primary_metric = "kld"
        direction = "min"

    assert Objective.of_task(Task()) == Objective(metric="kld", direction="min")
