"""Named random streams (nastk.core.streams): every stream has its own name and, for any run
seed, its own seed, distinct from the run's; the offsets are the ones stored results were
made with."""

from __future__ import annotations

import pytest

from nastk.core.streams import Stream


def test_stream_names_are_unique_and_no_name_is_an_alias():
    # an Enum with a repeated value would make the second name an alias of the first
    assert len(Stream.__members__) == len(list(Stream))
    assert len({s.name for s in Stream}) == len(list(Stream))


@pytest.mark.parametrize("run_seed", [0, 1, 6, 7, 42, 2**31 - 1])
def test_every_stream_seed_is_distinct_and_differs_from_the_run_seed(run_seed):
    seeds = [s.seed(run_seed) for s in Stream]
    assert len(set(seeds)) == len(seeds)
    assert run_seed not in seeds


def test_the_offsets_are_the_ones_results_were_made_with():
    # changing one changes every BN-recalibrated score and every inner strategy's proposals
    assert Stream.INNER_STRATEGY.seed(10) == 11
    assert Stream.BN_CALIBRATION.seed(10) == 17

