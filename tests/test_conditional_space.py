"""Conditional dimensions (nastk.space.conditions): a dimension that exists only when conditions
on the dimensions before it hold; every space operation against a brute-force enumeration."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nastk.config.compose import build_space
from nastk.config.schema import PluginRef
from nastk.core.errors import InvalidArchitectureError
from nastk.space import Categorical, IntRange, SearchSpace, StageList
from nastk.space.architecture import Architecture
from nastk.space.conditions import Condition, when


def space() -> SearchSpace:
    """depth 1..3; op_2 from depth 2, op_3 from depth 3; k only when op_2 is B (a condition
    on a conditional dimension); op_1 and width always."""
    return SearchSpace([
        IntRange("depth", 1, 3),
        Categorical("op_1", ["A", "B"]),
        Categorical("op_2", ["A", "B"]).only_if(when("depth", ">=", 2)),
        Categorical("op_3", ["A", "B"]).only_if(when("depth", ">=", 3)),
        Categorical("k", [3, 5, 7], ordinal=True).only_if(when("op_2", "==", "B")),
        StageList("width", [8, 16], 1),
    ], name="cond")


def brute_force(sp: SearchSpace) -> dict[str, Architecture]:
    """Every architecture: each full assignment of every dimension's values (inactive ones
    included), with the dimensions whose conditions fail dropped by hand."""
    values = {"depth": [1, 2, 3], "op_1": ["A", "B"], "op_2": ["A", "B"], "op_3": ["A", "B"],
              "k": [3, 5, 7], "width": [(8,), (16,)]}
    out = {}
    for combo in itertools.product(*values.values()):
        full = dict(zip(values, combo, strict=True))
        arch = {"depth": full["depth"], "op_1": full["op_1"], "width": full["width"]}
        if full["depth"] >= 2:
            arch["op_2"] = full["op_2"]
            if full["op_2"] == "B":
                arch["k"] = full["k"]
        if full["depth"] >= 3:
            arch["op_3"] = full["op_3"]
        a = Architecture(arch)
        out[a.key] = a
    return out


def test_size_is_the_exact_count() -> None:
    """By hand: depth 1: op_1 x width = 4; depth 2: x op_2 (A: 1, B: 3 kernels) = 16; depth
    3: x op_3 = 32; 52 in all, as the brute force finds."""
    sp = space()
    assert sp.size() == 4 + 16 + 32 == len(brute_force(sp))
    assert all(sp.is_valid(a) for a in brute_force(sp).values())


def test_validate_names_the_condition_that_failed() -> None:
    sp = space()
    with pytest.raises(InvalidArchitectureError,
                       match=r"'op_3' is inactive here: it exists only when depth >= 3 "
                             r"\(depth is 2\); leave it out"):
        sp.validate({"depth": 2, "op_1": "A", "op_2": "A", "op_3": "B", "width": [8]})
    with pytest.raises(InvalidArchitectureError,
                       match=r"missing dimension 'op_2' \(active because depth >= 2\)"):
        sp.validate({"depth": 2, "op_1": "A", "width": [8]})
    with pytest.raises(InvalidArchitectureError,
                       match=r"'k' is inactive here: it exists only when op_2 == 'B' "
                             r"\(op_2 is inactive\)"):
        sp.validate({"depth": 1, "op_1": "A", "k": 3, "width": [8]})
    with pytest.raises(InvalidArchitectureError, match=r"'k': 4 not in \[3, 5, 7\]"):
        sp.validate({"depth": 2, "op_1": "A", "op_2": "B", "k": 4, "width": [8]})
    with pytest.raises(InvalidArchitectureError, match=r"unknown dimensions \['zzz'\]"):
        sp.validate({"depth": 1, "op_1": "A", "width": [8], "zzz": 1})
    arch = sp.validate({"depth": 1, "op_1": "A", "width": [8]})
    assert set(arch) == {"depth", "op_1", "width"}  # inactive dimensions are absent


def test_sample_mutate_crossover_stay_in_the_space() -> None:
    sp = space()
    every = brute_force(sp)
    rng = np.random.default_rng(0)
    drawn = [sp.sample(rng) for _ in range(3000)]
    assert {a.key for a in drawn} == set(every)  # every architecture is drawn
    for a, b in zip(drawn[:300], drawn[300:600], strict=True):
        child = sp.mutate(a, rng)
        assert child.key in every and child != a
        assert sp.crossover(a, b, rng).key in every
    # a mutation that raises the depth gives the new dimensions values
    low = Architecture({"depth": 1, "op_1": "A", "width": (8,)})
    grown = [m for m in (sp.mutate(low, np.random.default_rng(s)) for s in range(40))
             if m["depth"] == 3]
    assert grown and all("op_2" in m and "op_3" in m for m in grown)


def test_neighbours_change_one_active_dimension() -> None:
    sp = space()
    every = brute_force(sp)
    arch = Architecture({"depth": 2, "op_1": "A", "op_2": "B", "k": 5, "width": (16,)})
    found = sp.neighbours(arch)
    assert len({n.key for n in found}) == len(found) and all(n.key in every for n in found)
    changed = []
    for n in found:  # one dimension both have changes; others only appear or disappear
        diff = [d for d in arch if d in n and n[d] != arch[d]]
        assert len(diff) == 1
        changed.append(diff[0])
    # depth 1 and 3, op_1 A->B, op_2 B->A (k dropped), k 3 and 7, width 8
    assert sorted(changed) == ["depth", "depth", "k", "k", "op_1", "op_2", "width"]
    deeper = next(n for n in found if n["depth"] == 3)
    assert deeper["op_3"] == "A"  # an activated dimension takes its first value


def test_encoding_has_fixed_length_and_an_activity_mask() -> None:
    sp = space()
    assert sp.encoding_size() == 1 + 2 + 2 + 2 + 1 + 1 + 3  # + 3 conditional dimensions
    for a in brute_force(sp).values():
        vec = sp.encode(a)
        assert vec.shape == (sp.encoding_size(),)
        mask = vec[-3:]
        assert list(mask) == [float("op_2" in a), float("op_3" in a), float("k" in a)]
        if "op_3" not in a:
            assert list(vec[5:7]) == [0.0, 0.0]


def test_decisions_round_trip_and_ignore_inactive_dimensions() -> None:
    sp = space()
    every = brute_force(sp)
    for a in every.values():
        assert sp.from_decisions(sp.to_decisions(a)) == a
    seen = {sp.from_decisions(list(idx)).key
            for idx in itertools.product(*(range(n) for n in sp.decisions()))}
    assert seen == set(every)


def test_spec_round_trip_keeps_the_conditions() -> None:
    sp = space()
    again = SearchSpace.from_spec(json.loads(json.dumps(sp.spec())))
    assert again.size() == sp.size()
    assert again["k"].when == (Condition("op_2", "==", "B"),)
    assert "when" not in json.dumps(SearchSpace([Categorical("a", [1, 2])]).spec())


def test_nested_membership_and_comparison_conditions() -> None:
    sp = SearchSpace([
        Categorical("block", ["conv", "attn", "none"]),
        IntRange("heads", 1, 4).only_if(when("block", "==", "attn")),
        Categorical("bias", [True, False]).only_if(when("heads", ">", 2)),
        Categorical("act", ["relu", "gelu"]).only_if(when("block", "in", ["conv", "attn"]),
                                                     when("block", "!=", "conv")),
        Categorical("norm", ["bn", "ln"]).only_if(when("block", "not in", ["none"])),
    ])
    # conv: norm 2; attn: heads 1-2 (x1) + heads 3-4 (x bias 2) = 6, x act 2 x norm 2; none: 1
    assert sp.size() == 2 + 6 * 2 * 2 + 1
    rng = np.random.default_rng(3)
    keys = {sp.sample(rng).key for _ in range(2000)}
    assert len(keys) == sp.size()


@pytest.mark.parametrize("dims,message", [
    ([Categorical("b", [1]).only_if(when("a", "==", 1)), Categorical("a", [1, 2])],
     "'a' is listed after it"),
    ([Categorical("b", [1]).only_if(when("zz", "==", 1))], "'zz' does not exist"),
    ([Categorical("a", [1, 2]), Categorical("b", [1]).only_if(when("a", "==", 3))],
     "3 is not a value of 'a'"),
    ([Categorical("a", [1, 2]), Categorical("b", [1]).only_if(when("a", "in", [1, 9]))],
     "9 is not a value of 'a'"),
])
def test_bad_conditions_are_refused_when_the_space_is_made(dims: list[Any],
                                                           message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace(dims)


def test_bad_conditions_themselves() -> None:
    with pytest.raises(ValueError, match="operator '~' unknown"):
        when("a", "~", 1)
    with pytest.raises(ValueError, match="compares numbers"):
        when("a", "<", "x")
    with pytest.raises(ValueError, match="give a list"):
        when("a", "in", 3)
    with pytest.raises(ValueError, match="a condition on itself"):
        Categorical("a", [1]).only_if(when("a", "==", 1))


FINGERPRINTS = Path(__file__).parent / "data" / "space_fingerprints.json"


@pytest.mark.parametrize("name", sorted(json.loads(FINGERPRINTS.read_text())))
def test_built_in_spaces_behave_as_before_conditions_existed(name: str) -> None:
    """Keys of sampled, mutated and crossed architectures (seed 7), neighbour counts, sizes,
    encodings, decisions and specs of the built-in spaces, as the code before conditional
    dimensions gave them (recorded from it in tests/data/space_fingerprints.json)."""
    want = json.loads(FINGERPRINTS.read_text())[name]
    sp = build_space(PluginRef(name=name))
    rng = np.random.default_rng(7)
    a = [sp.sample(rng) for _ in range(4)]
    m = [sp.mutate(x, rng) for x in a]
    c = [sp.crossover(a[i], a[(i + 1) % 4], rng) for i in range(4)]
    got = {"sample": [x.short_id for x in a], "mutate": [x.short_id for x in m],
           "crossover": [x.short_id for x in c],
           "neighbours": [len(sp.neighbours(x)) for x in a[:2]], "size": str(sp.size()),
           "encoding_size": sp.encoding_size(),
           "enc_sum": [float(sp.encode(x).sum()) for x in a],
           "dec_sum": [sum(sp.to_decisions(x)) for x in a],
           "spec": json.dumps(sp.spec(), sort_keys=True, default=str)[:2000]}
    assert got == want


# -- continuous and log-scale dimensions --------------------------------------------------------
def test_float_values_scale_and_grid() -> None:
    from nastk.space import Float

    lr = Float("lr", 1e-4, 1e-1, log=True, grid=4)
    assert lr.validate(0.00123456789) == 0.00123457  # 6 significant digits: a stable key
    for bad in (1e-5, 0.2, float("nan"), True, "0.01"):
        with pytest.raises(InvalidArchitectureError, match=r"real numbers in \[0.0001, 0.1\] "
                                                           r"\(log scale\)"):
            lr.validate(bad)
    rng = np.random.default_rng(0)
    draws = np.array([lr.sample(rng) for _ in range(4000)])
    assert draws.min() >= 1e-4 and draws.max() <= 1e-1
    # log-uniform: half the draws below the geometric mean of the bounds (sqrt(1e-5))
    assert abs(np.mean(draws < np.sqrt(1e-4 * 1e-1)) - 0.5) < 0.03
    # the decision view: 4 points evenly spaced on the log scale, bounds included
    assert [lr.from_decisions([i]) for i in range(4)] == [0.0001, 0.001, 0.01, 0.1]
    assert lr.to_decisions(0.0009) == [1] and lr.neighbours(0.003) == [0.001, 0.01]
    assert lr.neighbours(0.01) == [0.001, 0.1]
    assert lr.encode(0.001) == [pytest.approx(1 / 3)] and lr.size() == float("inf")
    for _ in range(50):
        moved = lr.mutate(0.01, rng)
        assert moved != 0.01 and 1e-4 <= moved <= 1e-1
    wd = Float("wd", 0.0, 1e-3)
    assert [wd.from_decisions([i]) for i in (0, 15)] == [0.0, 0.001]
    assert abs(np.mean([wd.sample(rng) < 5e-4 for _ in range(4000)]) - 0.5) < 0.03
    with pytest.raises(ValueError, match="log-scale range needs low > 0"):
        Float("x", 0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="finite low < high"):
        Float("x", 1.0, 1.0)


def test_log_integer_range() -> None:
    batch = IntRange("batch", 1, 1024, log=True)
    rng = np.random.default_rng(1)
    draws = [batch.sample(rng) for _ in range(4000)]
    assert all(batch.is_valid(d) for d in draws)
    # P(v < 32) = log(32) / log(1025) for the log-uniform draw floored to an integer
    assert abs(np.mean(np.array(draws) < 32) - np.log(32) / np.log(1025)) < 0.03
    assert batch.encode(1) == [0.0] and batch.encode(1024) == [1.0]
    assert batch.spec()["log"] is True and "log" not in IntRange("b", 1, 4).spec()
    stepped = IntRange("w", 8, 64, 8, log=True)
    assert {stepped.sample(rng) for _ in range(500)} <= set(range(8, 65, 8))
    with pytest.raises(ValueError, match="needs low >= 1"):
        IntRange("b", 0, 4, log=True)


def test_a_space_with_a_continuous_dimension_is_infinite_and_round_trips() -> None:
    from nastk.space import Float

    sp = SearchSpace([IntRange("depth", 1, 2),
                      Float("lr", 1e-4, 1e-1, log=True).only_if(when("depth", "==", 2)),
                      Categorical("opt", ["sgd", "adam"])])
    assert sp.size() == float("inf")
    finite = SearchSpace([Float("lr", 1e-4, 1e-1), Categorical("a", [1]).only_if(
        when("lr", ">", 0.05))])
    assert finite.size() == float("inf")  # a condition that reads a continuous dimension
    again = SearchSpace.from_spec(json.loads(json.dumps(sp.spec())))
    rng = np.random.default_rng(4)
    for _ in range(50):
        a = sp.sample(rng)
        assert again.validate(dict(a)) == a and ("lr" in a) == (a["depth"] == 2)


def test_bayesian_optimisation_tells_an_absent_dimension_from_itsfirst_value() -> None:
    """bo's kernel reads one more option, "absent", for each decision of a conditional
    dimension: an architecture without op_3 and one with op_3 at its first value differ
    there, and the model's pool decodes back to the space's architectures."""
    from nastk.core.objective import Objective
    from nastk.core.result import Result
    from nastk.strategies.bayesian import BayesianOptimisation

    sp = space()
    bo = BayesianOptimisation(sp, Objective(metric="acc"), seed=0, warmup=5)
    assert bo.counts == [3, 2, 3, 3, 4, 2]  # depth, op_1, op_2+1, op_3+1, k+1, width
    short = Architecture({"depth": 2, "op_1": "A", "op_2": "A", "width": (8,)})
    deep = Architecture({"depth": 3, "op_1": "A", "op_2": "A", "op_3": "A", "width": (8,)})
    assert bo._encode(short) == [1, 0, 0, 2, 3, 0] and bo._encode(deep)[3] == 0
    every = brute_force(sp)
    for a in every.values():
        assert bo._decode(bo._encode(a)) == a
    for _ in range(20):
        (arch,) = bo.ask(1)
        assert arch.key in every
        bo.tell(arch, Result.complete({"acc": float(arch["depth"]) + (arch["op_1"] == "B")}))
