"""The DetOFA benchmark's front measures on hand-computed cases, and its recipe validates."""

import importlib.util
import math
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("detofa_bench", ROOT / "benchmarks" / "detofa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_front_and_hypervolume(bench):
    points = [(10.0, 0.2), (20.0, 0.3), (30.0, 0.25), (5.0, 0.05), (20.0, 0.1)]
    assert bench.front(points) == [(5.0, 0.05), (10.0, 0.2), (20.0, 0.3)]
    # staircase under (5, .05), (10, .2), (20, .3) up to FLOPs 40:
    # .05 * (1 - 5/40) + .15 * (1 - 10/40) + .1 * (1 - 20/40)
    assert bench.hypervolume(points, 40.0) == pytest.approx(0.04375 + 0.1125 + 0.05)
    assert bench.hypervolume([(50.0, 0.9)], 40.0) == 0.0  # beyond the reference point
    assert bench.best_within(points, 15.0) == 0.2
    assert math.isnan(bench.best_within(points, 1.0))
    assert bench.flops_to_reach(points, 0.25) == 20.0
    assert math.isnan(bench.flops_to_reach(points, 0.5))


def test_recipe_holds_three_variants_at_equal_budget(bench, tmp_path):
    from nastk.cli.commands.recipe import check_stage
    from nastk.pipelines.recipe import load_recipe

    recipe = bench.make_recipe(0, 8, 48, 40, 0.5, tmp_path, 1)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    plan = load_recipe(path, check_stage)
    epochs = {s.name: raw["config"]["training"]["epochs"]
              for s, raw in zip(plan.recipe.stages, plan.raw, strict=True)
              if s.kind == "supernet_train" and s.name != "pretrain"}
    assert epochs["ofa_supernet"] == epochs["scratch_supernet"] == 8
    assert epochs["detofa_supernet"] + epochs["detofa_finetune"] == 8
    raw = dict(zip([s.name for s in plan.recipe.stages], plan.raw, strict=True))
    assert "init" not in raw["scratch_supernet"]["config"]["training"]
    assert raw["detofa_search"]["config"]["path_filter"]["keep_ratio"] == 0.5
    assert "path_filter" not in raw["ofa_search"]["config"]
