"""A third-party-style plugin used by the tests: a toy space registered at import time and a
synthetic objective with a known optimum (importable as ``toy_plugin`` with tests/ on the path)."""

from __future__ import annotations

import os
import time

from nastk import Architecture, Categorical, SearchSpace, StageList
from nastk.core.registry import SEARCH_SPACES

#: preference of each choice; the optimum picks the largest everywhere
WEIGHTS = {"a": [0.0, 0.3, 1.0, 0.2], "b": [0.5, 0.0, 0.1, 0.9], "c": [0.2, 0.8, 0.0, 0.4]}
STAGE_WEIGHTS = [0.1, 0.6, 0.3]


class ToyGrid(SearchSpace):
    """A toy grid space (3 categorical dims x 3 staged dims) for tests."""

    def __init__(self, stages: int = 3) -> None:
        super().__init__([Categorical(n, [0, 1, 2, 3]) for n in WEIGHTS]
                         + [StageList("s", [0, 1, 2], stages=stages)], name="toy_grid")


if "toy_grid" not in SEARCH_SPACES:
    SEARCH_SPACES.register("toy_grid", ToyGrid)


def objective(arch: Architecture) -> dict[str, float]:
    """Sum of per-choice preferences; sleeps NASTK_TOY_SLEEP seconds to mimic training."""
    delay = float(os.environ.get("NASTK_TOY_SLEEP", "0"))
    if delay:
        time.sleep(delay)
    score = sum(WEIGHTS[n][arch[n]] for n in WEIGHTS) + sum(STAGE_WEIGHTS[v] for v in arch["s"])
    return {"score": score}


def best_score(stages: int = 3) -> float:
    return sum(max(w) for w in WEIGHTS.values()) + stages * max(STAGE_WEIGHTS)


def flaky(arch: Architecture) -> dict[str, float]:
    """Fails (raises) when a == 0, returns NaN when a == 1, else scores like ``objective``."""
    if arch["a"] == 0:
        raise RuntimeError("simulated crash in candidate")
    if arch["a"] == 1:
        return {"score": float("nan")}
    return objective(arch)
