"""The search-space DSL: dimensions, Architecture, SearchSpace operations and errors."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nastk import (
    Architecture,
    Categorical,
    CellDAG,
    IntRange,
    InvalidArchitectureError,
    SearchSpace,
    StageList,
)


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace([
        Categorical("act", ["relu", "gelu", "swish"]),
        IntRange("width", 8, 64, 8),
        StageList("kernel", [3, 5, 7], stages=4),
        CellDAG("cell", nodes=4, ops=["none", "skip", "conv1", "conv3"], zero_op="none",
                require_connected=True),
    ], name="toy")


def test_architecture_is_immutable_hashable_and_order_independent():
    a = Architecture({"b": [1, 2], "a": "x"})
    b = Architecture(a=("x"), b=(1, 2))
    assert a == b and hash(a) == hash(b) and a.key == b.key
    assert a["b"] == (1, 2)
    with pytest.raises(AttributeError):
        a.foo = 1
    assert len({a, b}) == 1
    assert a.replace(a="y") != a and a["a"] == "x"


def test_architecture_json_round_trip(space):
    rng = np.random.default_rng(0)
    for _ in range(50):
        arch = space.sample(rng)
        text = arch.to_json()
        back = Architecture.from_json(text)
        assert back == arch and back.key == arch.key
        assert json.loads(text) == arch.as_dict()
        assert space.validate(back) == arch


#: built from a dict whose insertion order follows a set of strings, so it differs between
#: processes with different PYTHONHASHSEEDs; prints the key, the short id and that order
KEY_SCRIPT = """
from nastk import Architecture
values = {"width": 8, "kernel": [3, 5, 7], "act": "gelu", "cell": [["conv", 0], ["skip", 1]],
          "ratio": 0.25, "use_se": True, "name": "caf\\u00e9"}
built = {k: values[k] for k in set(values)}
arch = Architecture(built)
print(arch.key)
print(arch.short_id)
print(",".join(built))
"""


def test_key_is_stable_across_processes():
    # the key is canonical JSON, not Python's salted hash: two processes with different hash
    # seeds (so different set and dict orders) compute the same key and short id as this one
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run([sys.executable, "-c", KEY_SCRIPT], env=env, capture_output=True,
                              text=True, check=True, timeout=120)
        outputs.append(proc.stdout.splitlines())
    (key1, id1, order1), (key2, id2, order2) = outputs
    assert order1 != order2  # the processes really built their dicts in different orders
    values = {"width": 8, "kernel": [3, 5, 7], "act": "gelu",
              "cell": [["conv", 0], ["skip", 1]], "ratio": 0.25, "use_se": True,
              "name": "caf\u00e9"}
    here = Architecture(dict(reversed(list(values.items()))))
    assert key1 == key2 == here.key
    assert id1 == id2 == here.short_id
    assert here.key == ('{"act":"gelu","cell":[["conv",0],["skip",1]],"kernel":[3,5,7],'
                        '"name":"caf\\u00e9","ratio":0.25,"use_se":true,"width":8}')
    assert Architecture(w=8, k=[3, 5]).key == '{"k":[3,5],"w":8}'


def test_size_matches_enumeration_for_small_space():
    s = SearchSpace([Categorical("a", [1, 2, 3]), IntRange("b", 0, 4, 2),
                     StageList("c", [0, 1], 2)])
    assert s.size() == 3 * 3 * 4
    rng = np.random.default_rng(1)
    seen = {s.sample(rng) for _ in range(2000)}
    assert len(seen) == s.size()


def test_cell_size_counts_only_connected_cells():
    d = CellDAG("c", nodes=3, ops=["none", "conv"], zero_op="none", require_connected=True)
    # edges 0->1, 0->2, 1->2: output reachable iff 0->2 or (0->1 and 1->2): 5 of 8
    assert d.size() == 5
    g = d.graph(("conv", "none", "conv"))
    assert g.edges[0, 1]["op"] == "conv" and g.number_of_edges() == 3


def test_validate_names_the_bad_dimension_and_allowed_values(space):
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(InvalidArchitectureError, match=r"'width': 12 not in range\(8, 65, 8\)"):
        space.validate(arch.replace(width=12))
    with pytest.raises(InvalidArchitectureError, match=r"'act': 'tanh' not in \['relu', 'gelu'"):
        space.validate(arch.replace(act="tanh"))
    with pytest.raises(InvalidArchitectureError,
                       match=r"'kernel': stage 2 value 4 not in \[3, 5, 7\]"):
        space.validate(arch.replace(kernel=(3, 3, 4, 3)))
    with pytest.raises(InvalidArchitectureError, match="expected a list of 4 values"):
        space.validate(arch.replace(kernel=(3, 3)))
    with pytest.raises(InvalidArchitectureError, match="not reachable"):
        space.validate(arch.replace(cell=("none",) * 6))
    with pytest.raises(InvalidArchitectureError, match=r"missing dimensions \['cell'\]"):
        space.validate({k: v for k, v in arch.items() if k != "cell"})
    with pytest.raises(InvalidArchitectureError, match=r"unknown dimensions \['depth'\]"):
        space.validate({**arch, "depth": 3})
    with pytest.raises(InvalidArchitectureError, match="'act': True not in"):
        SearchSpace([Categorical("act", [1, 2])]).validate({"act": True})


def test_mutate_changes_at_least_one_dimension_and_stays_valid(space):
    rng = np.random.default_rng(3)
    for _ in range(100):
        a = space.sample(rng)
        b = space.mutate(a, rng)
        assert b != a and space.is_valid(b)


def test_crossover_takes_every_dimension_from_a_parent(space):
    rng = np.random.default_rng(4)
    for _ in range(50):
        a, b = space.sample(rng), space.sample(rng)
        c = space.crossover(a, b, rng)
        assert space.is_valid(c)
        assert all(c[k] in (a[k], b[k]) for k in c)


def test_neighbours_differ_in_exactly_one_decision(space):
    a = space.sample(np.random.default_rng(5))
    base = space.to_decisions(a)
    nbrs = space.neighbours(a)
    assert len(set(nbrs)) == len(nbrs) > 0
    for n in nbrs:
        diff = sum(x != y for x, y in zip(space.to_decisions(n), base, strict=True))
        assert diff == 1
    # every one-decision change that is valid is listed
    expected = 0
    for i, k in enumerate(space.decisions()):
        for j in range(k):
            if j != base[i] and space.is_valid(space.from_decisions([*base[:i], j, *base[i + 1:]])):
                expected += 1
    assert expected == len(nbrs)


def test_encode_has_fixed_length_and_distinguishes_archs(space):
    rng = np.random.default_rng(6)
    archs = [space.sample(rng) for _ in range(100)]
    vecs = np.stack([space.encode(a) for a in archs])
    assert vecs.shape == (100, space.encoding_size())
    assert vecs.dtype == np.float32 and np.all((vecs >= 0) & (vecs <= 1))
    keys = {a.key for a in archs}
    assert len({v.tobytes() for v in vecs}) == len(keys)


def test_decisions_round_trip(space):
    rng = np.random.default_rng(7)
    for _ in range(50):
        a = space.sample(rng)
        assert space.from_decisions(space.to_decisions(a)) == a
    assert math.prod(space.decisions()) >= space.size()


def test_spec_round_trip(space):
    again = SearchSpace.from_spec(json.loads(json.dumps(space.spec())))
    assert again.spec() == space.spec() and again.size() == space.size()


def test_bad_dimension_definitions_fail_clearly():
    with pytest.raises(ValueError, match="duplicates"):
        Categorical("a", [1, 1])
    with pytest.raises(ValueError, match="not a multiple of step"):
        IntRange("w", 8, 30, 8)
    with pytest.raises(ValueError, match="duplicate dimension names"):
        SearchSpace([Categorical("a", [1]), Categorical("a", [2])])
