"""Exact hypervolume (every entry larger-is-better) against hand-computed values and a
count of dominated unit cells."""

import itertools

import numpy as np
import pytest

from nastk.core.pareto import hypervolume


def test_hand_computed_fronts():
    # staircase (3,1) (2,2) (1,3) over (0,0): 3*1 + 2*1 + 1*1
    assert hypervolume([(3, 1), (2, 2), (1, 3)], (0, 0)) == 6.0
    # a dominated point and one not beyond the reference add nothing
    assert hypervolume([(3, 1), (2, 2), (1, 3), (1, 1), (5, -1)], (0, 0)) == 6.0
    assert hypervolume([], (0, 0)) == 0.0
    assert hypervolume([(4.0,)], (1.5,)) == 2.5
    assert hypervolume([(1, 2, 3)], (0, 0, 0)) == 6.0
    # two boxes 2x1x1 and 1x2x1 overlapping in a unit cube: 2 + 2 - 1
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == 3.0
    # the reference point shifts every box
    assert hypervolume([(3, 1), (2, 2)], (1, -1)) == pytest.approx(2 * 2 + 1 * 1)


@pytest.mark.parametrize("m", [2, 3])
def test_equals_the_count_of_dominated_unit_cells(m):
    rng = np.random.default_rng(m)
    for _ in range(25):
        pts = rng.integers(0, 5, size=(int(rng.integers(1, 9)), m)).astype(float)
        cells = sum(bool(np.any(np.all(pts >= np.array(c) + 1, axis=1)))
                    for c in itertools.product(range(5), repeat=m))
        assert hypervolume(pts, np.zeros(m)) == pytest.approx(cells)


def _trials_with_a_cut_short_one():
    from nastk.core.objective import Objective
    from nastk.core.result import Result, Status
    from nastk.core.trial import Trial
    from nastk.space.architecture import Architecture

    def trial(i, acc, flops, info=None):
        return Trial(i, Architecture({"i": i}), Status.COMPLETE,
                     Result.complete({"acc": acc}, {"flops": flops}, info=info), float(i))

    trials = [trial(1, 0.90, 100.0), trial(2, 0.80, 50.0),
              # ASHA stopped it after 2 of 6 epochs: cheap and, on paper, not dominated
              trial(3, 0.36, 10.0, {"early_stopped": True, "epochs": 2}),
              # an early-stopping callback ended this one by its own rule: its result is final
              trial(4, 0.70, 20.0, {"early_stopped": True, "stopped_epoch": 4})]
    return trials, Objective(metric="acc", costs=("flops",))


def test_a_trial_a_scheduler_cut_short_is_never_on_a_front_unless_allowed():
    from nastk.core.pareto import pareto_front
    from nastk.report.results import pareto_points

    trials, objective = _trials_with_a_cut_short_one()
    assert trials[2].result.cut_short and not trials[3].result.cut_short
    assert [t.id for t in pareto_front(trials, objective)] == [4, 2, 1]
    pts = pareto_points(trials, objective, cost="flops")
    assert [t.id for t in pts.trials] == [1, 2, 3, 4]  # drawn ...
    assert pts.mask.tolist() == [True, True, False, True]  # ... but not on the front
    allowed = objective.model_copy(update={"cut_short_on_front": True})
    assert [t.id for t in pareto_front(trials, allowed)] == [3, 4, 2, 1]
    assert pareto_points(trials, allowed, cost="flops").mask.tolist() == [True] * 4
