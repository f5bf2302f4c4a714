"""Study statistics against values computed by hand on a tiny fixed table."""

import pytest

from nastk.pipelines.study.stats import (
    average_ranks,
    mean_normalised_regret,
    normalised_regret,
    ranks,
    wilcoxon_pairs,
)

#: task -> strategy -> final value per seed (3 seeds)
TABLE = {
    "t1": {"a": [3.0, 4.0, 5.0], "b": [1.0, 2.0, 3.0], "c": [4.0, 4.0, 4.0]},   # means 4, 2, 4
    "t2": {"a": [0.1, 0.2, 0.3], "b": [0.5, 0.5, 0.5], "c": [0.0, 0.0, 0.3]},   # .2, .5, .1
}


def test_ranks_share_ties():
    assert ranks({"a": 3, "b": 3, "c": 1}) == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert ranks({"a": 1, "b": 2, "c": 3, "d": 2}) == {"c": 1.0, "b": 2.5, "d": 2.5, "a": 4.0}


def test_average_ranks_over_tasks():
    # t1: a and c tie for first (1.5 each), b third; t2: b 1, a 2, c 3
    assert average_ranks(TABLE) == {"a": pytest.approx(1.75), "b": pytest.approx(2.0),
                                    "c": pytest.approx(2.25)}


def test_normalised_regret_uses_the_true_optimum_where_given():
    assert normalised_regret(3.0, 5.0, 1.0) == pytest.approx(0.5)
    # t1 with a true optimum 5 and worst 0: a (4) 0.2, b (2) 0.6, c (4) 0.2
    # t2 from the seeds: best 0.5, worst 0.0: a (.2) 0.6, b (.5) 0.0, c (.1) 0.8
    got = mean_normalised_regret(TABLE, optimum={"t1": 5.0}, worst={"t1": 0.0})
    assert got == {"a": pytest.approx(0.4), "b": pytest.approx(0.3), "c": pytest.approx(0.5)}
    with pytest.raises(ValueError, match="optimum > worst"):
        normalised_regret(1.0, 1.0, 1.0)


def test_wilcoxon_exact_p_values_by_hand():
    # differences 1..5 all positive: W- = 0; exact two-sided p = 2 / 2**5 = 0.0625
    row = {"x": [11.0, 12.0, 13.0, 14.0, 15.0], "y": [10.0] * 5,
           "z": [11.0, 8.0, 13.0, 14.0, 5.0]}
    res = wilcoxon_pairs(row)
    assert res[("x", "y")]["statistic"] == 0.0
    assert res[("x", "y")]["p"] == pytest.approx(0.0625)
    assert res[("x", "y")]["mean_diff"] == pytest.approx(3.0)
    # z - y = 1, -2, 3, 4, -5: W+ = 8, W- = 7; 16 of the 32 sign patterns give W <= 7, so the
    # two-sided p is min(1, 2 * 16 / 32) = 1
    assert res[("y", "z")]["statistic"] == 7.0
    assert res[("y", "z")]["p"] == pytest.approx(1.0)
    assert wilcoxon_pairs({"a": [1.0, 2.0], "b": [1.0, 2.0]})[("a", "b")]["p"] == 1.0


def test_every_task_needs_every_strategy():
    with pytest.raises(ValueError, match="every task needs every strategy"):
        average_ranks({"t1": {"a": [1.0]}, "t2": {"b": [1.0]}})


def test_normalised_hypervolume_by_hand():
    """Entries normalised between the worst and best of all runs, reference -0.1: run a spans
    the two extremes (0, 1) and (1, 0): 1.1 * 0.1 + 0.1 * 1.0; run b holds the ideal (1, 1):
    1.1 * 1.1; an empty run has none."""
    from nastk.pipelines.study.report import normalised_hypervolumes

    hv = normalised_hypervolumes({"a": [[(0.0, 0.0), (10.0, -5.0)]], "b": [[(10.0, 0.0)], []]})
    assert hv["a"] == [pytest.approx(0.21)]
    assert hv["b"] == [pytest.approx(1.21), 0.0]
