"""Named random streams derived from a run's seed.

Some parts of a run draw from their own generator, seeded from the run's seed so that they
neither disturb nor mirror the main stream: the training batches that recalibrate batch norm
before a sub-network is scored, and the inner strategy a wrapping strategy proposes through.
Each such stream has a name here and a fixed offset added to the run's seed. The offsets are
those nastk has always used, so every stored result stays reproducible; a new stream takes an
offset no other stream has (``tests/test_streams.py`` checks that they stay distinct).
"""

from __future__ import annotations

import enum

__all__ = ["Stream"]


@enum.unique
class Stream(enum.IntEnum):
    """A random stream derived from a run's seed; its value is the offset added to the seed."""

    #: a wrapping strategy's inner strategy (predictor-guided and path-filter search)
    INNER_STRATEGY = 1
    #: the fixed training batches that recalibrate batch norm before a sub-network is scored
    #: (supernet training's epoch evaluations and the weight-sharing evaluator)
    BN_CALIBRATION = 7

    def seed(self, run_seed: int) -> int:
        """The seed of this stream in a run seeded with ``run_seed``."""
        return int(run_seed) + int(self.value)
