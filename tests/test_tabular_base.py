"""The tabular-benchmark base (nastk/data/tabular.py) through a user's own tiny benchmark: its
folder found or explained, one instance per folder and options, rows in table order, the
evaluator's results and query count, and the look-up functions a config names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nastk.core.errors import BenchmarkDataError, InvalidArchitectureError
from nastk.core.result import Status
from nastk.data.tabular import TabularBenchmark, TabularEvaluator, lookup_function
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace

ROWS = [("a", "x", "71.5"), ("b", "x", "nan"), ("a", "y", "80.25"), ("b", "y", "64.0")]


def _space() -> SearchSpace:
    return SearchSpace([Categorical("op", ["a", "b"]), Categorical("act", ["x", "y"])],
                       name="toy")


class ToyBench(TabularBenchmark):
    env_var = "NASTK_TOY_BENCH_DIR"
    required = ("toy/table.csv",)
    title = "toy tables"
    layout = "Put the folder toy/ (with table.csv)"
    built = 0

    def __init__(self, data_dir: Path, scale: float = 1.0) -> None:
        super().__init__(data_dir, _space())
        type(self).built += 1
        self.values: list[float] = []
        for line in (data_dir / "toy" / "table.csv").read_text().splitlines():
            op, act, value = line.split(",")
            row = self.add_arch(Architecture({"op": op, "act": act}))
            assert row == len(self.values)
            self.values.append(float(value) * scale)

    @classmethod
    def load(cls, data_dir: str | Path | None = None, scale: float = 1.0) -> ToyBench:
        return cls.from_folder(data_dir, scale)


class ToyEvaluator(TabularEvaluator):
    bench: ToyBench

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return {"score": self.bench.values[self.bench.row(arch)]}

    def info(self, arch: Architecture) -> dict[str, object]:
        return {"row": self.bench.row(arch)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "table.csv").write_text("\n".join(",".join(r) for r in ROWS))
    return tmp_path


def test_folder_is_found_or_explained(folder, tmp_path_factory, monkeypatch):
    assert ToyBench.find_data_dir(folder) == folder.resolve()
    monkeypatch.setenv("NASTK_TOY_BENCH_DIR", str(folder))
    assert ToyBench.find_data_dir() == folder.resolve()
    assert ToyBench.data_missing() is None
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setenv("NASTK_TOY_BENCH_DIR", str(empty))
    monkeypatch.chdir(empty)
    reason = ToyBench.data_missing()
    assert reason is not None and reason.startswith("toy tables not found (looked for "
                                                    "toy/table.csv in: ")
    assert str(empty) in reason and "Put the folder toy/ (with table.csv) in one folder" in reason
    assert "NASTK_TOY_BENCH_DIR=" in reason
    with pytest.raises(BenchmarkDataError, match="toy tables not found"):
        ToyBench.load(empty)


def test_one_instance_per_folder_and_options(folder):
    before = ToyBench.built
    a = ToyBench.load(folder)
    assert ToyBench.load(folder) is a and ToyBench.load(str(folder)) is a
    doubled = ToyBench.load(folder, 2.0)
    assert doubled is not a and ToyBench.built == before + 2
    assert doubled.values[0] == 2 * a.values[0] == 143.0


def test_rows_in_table_order(folder):
    bench = ToyBench.load(folder)
    assert len(bench) == 4
    assert [dict(a) for a in bench.archs()] == [{"op": op, "act": act} for op, act, _ in ROWS]
    assert bench.row({"op": "a", "act": "y"}) == 2  # a mapping is validated first
    with pytest.raises(InvalidArchitectureError):
        bench.row({"op": "c", "act": "y"})
    arch = bench.archs()[3]
    assert bench.arch(arch.key) == arch
    assert bench.add_arch(Architecture({"op": "a", "act": "x"})) == 0  # known: same row
    assert len(bench) == 4
    assert bench.best_value(bench.values) == 80.25  # NaN is no optimum
    assert math.isnan(bench.values[1])


def test_evaluator_counts_queries_and_records_info(folder):
    ev = ToyEvaluator(ToyBench.load(folder))
    arch = Architecture({"op": "b", "act": "y"})
    result = ev.evaluate(arch)
    assert result.status == Status.COMPLETE and result.metrics == {"score": 64.0}
    assert result.costs == {} and result.info == {"row": 3}
    assert ev.lookup(arch) == ({"score": 64.0}, {})
    ev.evaluate(arch)
    assert ev.queries == 2  # lookup() is not a query


def test_lookup_function_is_lazy_and_named(folder):
    made: list[ToyEvaluator] = []

    def make() -> ToyEvaluator:
        made.append(ToyEvaluator(ToyBench.load(folder)))
        return made[-1]

    fn = lookup_function(make, "my_pkg.bench", "toy_score", "The toy table's score.")
    assert not made  # nothing read until the first query
    assert fn(Architecture({"op": "a", "act": "y"})) == ({"score": 80.25}, {})
    assert fn(Architecture({"op": "a", "act": "x"})) == ({"score": 71.5}, {})
    assert len(made) == 1 and made[0].queries == 0
    assert (fn.__module__, fn.__name__, fn.__qualname__, fn.__doc__) == (
        "my_pkg.bench", "toy_score", "toy_score", "The toy table's score.")
