"""`constraints: {flops: [low, high]}`: every strategy searches only architectures whose costs
lie in the ranges."""

from __future__ import annotations

import numpy as np
import pytest
import toy_plugin
import yaml

from nastk.cli.main import main
from nastk.core.errors import InvalidArchitectureError, NastkError
from nastk.core.objective import Objective
from nastk.core.registry import STRATEGIES, instantiate
from nastk.run.sqlite_store import RunStore
from nastk.space.cost_range import CostRangeSpace


def cost(arch) -> dict[str, float]:
    return {"flops": float(arch["a"] + arch["b"] + arch["c"] + sum(arch["s"]))}


def test_every_strategy_stays_inside_the_range():
    space = CostRangeSpace(toy_plugin.ToyGrid(), cost, {"flops": (4.0, 7.0)})
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)]
    archs += [space.mutate(a, rng) for a in archs[:20]]
    assert all(4.0 <= cost(a)["flops"] <= 7.0 for a in archs)
    for name in ("random", "evolution", "nsga2"):
        strategy = instantiate(STRATEGIES, name, {}, space, Objective(metric="score",
                                                                     costs=("flops",)), seed=1)
        for _ in range(15):
            arch = strategy.ask(1)[0]
            assert 4.0 <= cost(arch)["flops"] <= 7.0, name
            strategy.tell(arch, __import__("nastk").Result.complete(
                toy_plugin.objective(arch), cost(arch)))


def test_outside_the_range_is_invalid_and_an_empty_range_is_refused():
    space = CostRangeSpace(toy_plugin.ToyGrid(), cost, {"flops": (None, 2.0)})
    big = {"a": 3, "b": 3, "c": 3, "s": [2, 2, 2]}
    with pytest.raises(InvalidArchitectureError, match=r"flops 15 is outside the range"):
        space.validate(big)
    with pytest.raises(NastkError, match="is empty"):
        CostRangeSpace(toy_plugin.ToyGrid(), cost, {"flops": (5.0, 1.0)})
    with pytest.raises(NastkError, match="widen the range"):
        CostRangeSpace(toy_plugin.ToyGrid(), cost, {"flops": (100.0, None)},
                       max_tries=20).sample(np.random.default_rng(0))


@pytest.mark.slow
def test_a_search_with_a_flops_range_evaluates_only_architectures_inside_it(tmp_path):
    cfg = {"name": "c", "run_dir": str(tmp_path / "run"),
           "space": {"name": "small_cnn", "options": {"stages": 2}},
           "task": {"name": "classification", "options": {"dataset": "digits"}},
           "strategy": "random", "constraints": {"flops": [None, 150000]},
           "evaluator": {"kind": "train", "train": {"epochs": 1, "latency": False}},
           "budget": {"trials": 4}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 0
    with RunStore.open_existing(tmp_path / "run") as store:
        trials = store.finished()
    assert len(trials) == 4 and all(t.result.costs["flops"] <= 150000 for t in trials)
