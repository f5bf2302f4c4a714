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
