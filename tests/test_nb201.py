"""NAS-Bench-201: the cell space, its network, the cost model and the tabular benchmark."""

import math

import pytest
import torch

from nastk.core.errors import BenchmarkDataError, InvalidArchitectureError
from nastk.evaluation.cost import count_flops, count_params
from nastk.search_spaces.nb201 import (
    EDGE_NAMES,
    OPS,
    NB201Bench,
    NB201Evaluator,
    NB201Space,
    architecture_costs,
    find_data_dir,
    nb201_data_missing,
)

MISSING = nb201_data_missing()
needs_data = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

BEST_C10 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
            "nor_conv_1x1~2|")


def test_space_shape_and_string_round_trip():
    space = NB201Space()
    assert space.size() == 15625
    assert space.encoding_size() == 30
    arch = space.from_string(BEST_C10)
    assert arch["edge_3_2"] == "nor_conv_1x1" and arch["edge_3_0"] == "skip_connect"
    assert space.to_string(arch) == BEST_C10
    assert space.render(arch) == BEST_C10
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(50):
        a = space.sample(rng)
        assert space.from_string(space.to_string(a)) == a


@pytest.mark.parametrize("text, fragment", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 node groups"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "edge_1_0"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge"),
])
def test_bad_strings_name_the_problem(text, fragment):
    with pytest.raises(InvalidArchitectureError, match=fragment):
        NB201Space().from_string(text)


def test_graph_and_connectivity():
    space = NB201Space()
    arch = space.from_string(BEST_C10)
    g = space.graph(arch)
    assert sorted(g.edges) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert g.edges[0, 3]["op"] == "skip_connect"
    cut = space.from_string("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert space.is_connected(cut)
    dead = space.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    assert space.is_connected(dead)
    dead = dead.replace(edge_3_1="none")
    assert not space.is_connected(dead)


def test_network_params_match_the_published_extremes():
    """NAS-Bench-201's CIFAR-10 networks have 0.073306 M (all none) to 1.531546 M params
    (all 3x3 convolutions)."""
    space = NB201Space()
    for op, expected in (("none", 73306), ("nor_conv_3x3", 1531546)):
        arch = space.validate(dict.fromkeys(EDGE_NAMES, op))
        body = space.build(arch, 3)
        model = torch.nn.Sequential(body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(body.out_channels, 10))
        assert count_params(model) == expected
        assert architecture_costs(arch)["params"] == expected
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_additive_cost_model_equals_fvcore_on_built_networks():
    space = NB201Space()
    rng = __import__("numpy").random.default_rng(3)
    for dataset, classes, res in (("cifar10", 10, 32), ("ImageNet16-120", 120, 16)):
        arch = space.sample(rng)
        body = space.build(arch, 3)
        model = torch.nn.Sequential(body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(body.out_channels, classes))
        costs = architecture_costs(arch, dataset)
        assert costs["params"] == count_params(model)
        assert costs["flops"] == count_flops(model, (3, res, res))
        # the space costs the network of its `dataset` option (CIFAR-10 by default)
        assert NB201Space(dataset=dataset).arch_costs(arch) == costs
    assert space.arch_costs(arch) == architecture_costs(arch, "cifar10")
    with pytest.raises(ValueError, match="unknown; use one of"):
        NB201Space(dataset="mnist")


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(BenchmarkDataError, match="NASTK_NB201_DIR"):
        find_data_dir(tmp_path)
    (tmp_path / "nasbench201-tables").mkdir()
    (tmp_path / "nasbench201-tables" / "nb201_merged.csv").write_text("index,arch_str\n0,x\n")
    with pytest.raises(BenchmarkDataError, match="expected 15625"):
        NB201Bench(tmp_path)


@needs_data
def test_bench_reproduces_published_optima():
    bench = NB201Bench.load()
    assert len(bench) == 15625
    assert bench.optimum("cifar10") == pytest.approx(94.37, abs=0.005)
    assert bench.optimum("cifar100") == pytest.approx(73.51, abs=0.005)
    assert bench.optimum("ImageNet16-120") == pytest.approx(47.31, abs=0.005)
    best = bench.space.from_string(BEST_C10)
    assert bench.index(best) == 6111
    assert bench.accuracy(best, "cifar10", "test200") == pytest.approx(94.3733)
    assert bench.accuracy(best, "cifar10", "val200") == pytest.approx(91.6067)
    # the 12-epoch signal is lower and only loosely agrees
    assert bench.accuracy(best, "cifar10", "val12") < 90
    assert set(OPS) == {a["edge_1_0"] for a in bench.archs()}


@needs_data
def test_table_params_agree_with_the_network():
    """The published per-architecture params (naswot table) equal the built network's count for
    nearly all architectures (about 1% of that table's rows carry another row's value)."""
    bench = NB201Bench.load()
    import csv

    with (bench.data_dir / "nasbench201-tables" / "nb201_merged.csv").open() as f:
        table = [float(r["params_mb_c10"]) for r in csv.DictReader(f)]
    same = sum(math.isclose(architecture_costs(a)["params"] / 1e6, p, rel_tol=1e-5)
               for a, p in zip(bench.archs(), table, strict=True))
    assert same / len(table) > 0.98


@needs_data
def test_evaluator_reports_search_and_test_metrics_and_costs():
    ev = NB201Evaluator("cifar100", latency_device="pixel3")
    arch = ev.bench.space.from_string(BEST_C10)
    result = ev.evaluate(arch)
    assert result.ok and ev.queries == 1
    assert result.metrics["test_acc_200ep"] == ev.bench.accuracy(arch, "cifar100", "test200")
    assert result.metrics["val_acc_12ep"] == ev.bench.accuracy(arch, "cifar100", "val12")
    assert result.costs["params"] == architecture_costs(arch, "cifar100")["params"]
    assert result.costs["latency_ms"] > 0
    assert result.info["nb201_index"] == 6111
    with pytest.raises(BenchmarkDataError, match="devices"):
        NB201Bench(ev.bench.data_dir, latency_device="toaster")
