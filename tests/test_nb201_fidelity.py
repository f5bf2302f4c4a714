"""NB201FidelityEvaluator: NAS-Bench-201 at 12 and 200 epochs, driven by the engine's schedulers
and charged in epochs."""

from __future__ import annotations

import csv
import math

import pytest

from nastk.search_spaces.nb201 import nb201_data_missing

pytestmark = pytest.mark.skipif(nb201_data_missing() is not None,
                                reason=str(nb201_data_missing()))


@pytest.fixture(scope="module")
def ev():
    from nastk.search_spaces.nb201 import NB201FidelityEvaluator

    return NB201FidelityEvaluator("cifar10")


@pytest.fixture(scope="module")
def table():
    from nastk.search_spaces.nb201 import ACC_FILE, TABLES, find_data_dir

    with (find_data_dir() / TABLES / ACC_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def _at(ev, index):
    """The architecture of row ``index`` (the official string of the table)."""
    return ev.bench.space.from_string(_row_string(ev, index))


_STRINGS: dict[int, str] = {}


def _row_string(ev, index):
    if not _STRINGS:
        from nastk.search_spaces.nb201 import ACC_FILE, TABLES, find_data_dir

        with (find_data_dir() / TABLES / ACC_FILE).open(newline="") as f:
            for row in csv.DictReader(f):
                _STRINGS[int(row["index"])] = row["arch_str"]
    return _STRINGS[index]


def test_fidelity_declared(ev):
    from nastk.scheduling.fidelity import Fidelity, MultiFidelityEvaluator, fidelity_of

    assert ev.fidelity == Fidelity(name="epochs", max=200, min=12, levels=(12, 200),
                                   resumable=False)
    assert fidelity_of(ev) is ev.fidelity
    assert isinstance(ev, MultiFidelityEvaluator)


def test_optimum_matches_source(ev):
    """SOURCE.md: CIFAR-10 max x-valid at 200 epochs is 91.6067 (arch 6111), its test 94.3733."""
    arch = _at(ev, 6111)
    r200 = ev.evaluate_at(arch, 200)
    assert r200.ok
    assert r200.metrics["val_acc"] == pytest.approx(91.6067)
    assert r200.metrics["test_acc_200ep"] == pytest.approx(94.3733)
    assert r200.info == {"nb201_index": 6111, "resource": 200.0}
    assert {"params", "flops"} <= set(r200.costs)
    r12 = ev.evaluate_at(arch, 12)
    assert r12.metrics["val_acc"] == pytest.approx(84.384)
    assert r12.metrics["test_acc_200ep"] == pytest.approx(94.3733)  # always the 200-epoch test
    assert r12.info == {"nb201_index": 6111, "resource": 12.0}
    full = ev.evaluate(arch)
    assert full.metrics == r200.metrics and full.info == r200.info


@pytest.mark.parametrize("dataset,prefix", [("cifar10", None), ("cifar100", "c100"),
                                            ("ImageNet16-120", "in16")])
@pytest.mark.parametrize("index", [0, 857, 3888, 9930, 13714])
def test_values_equal_table_columns(table, dataset, prefix, index):
    from nastk.search_spaces.nb201 import NB201FidelityEvaluator

    ev = NB201FidelityEvaluator(dataset)
    row = table[index]
    assert int(row["index"]) == index
    if prefix is None:
        val12, val200 = "c10valid_xvalid_12ep", "c10valid_xvalid_200ep_mean"
        test200 = "c10_oritest_200ep_mean"
    else:
        val12, val200 = f"{prefix}_xvalid_12ep", f"{prefix}_xvalid_200ep_naslib"
        test200 = f"{prefix}_xtest_200ep_mean"
    arch = ev.bench.space.from_string(row["arch_str"])
    r12, r200 = ev.evaluate_at(arch, 12), ev.evaluate_at(arch, 200.0)
    assert r12.metrics["val_acc"] == float(row[val12])
    assert r200.metrics["val_acc"] == float(row[val200])
    assert r12.metrics["test_acc_200ep"] == r200.metrics["test_acc_200ep"] == float(row[test200])
    assert r12.info["nb201_index"] == r200.info["nb201_index"] == index


@pytest.mark.parametrize("resource", [50, 0, 201, 12.5])
def test_bad_resource_fails_naming_the_levels(ev, resource):
    before = ev.queries
    res = ev.evaluate_at(_at(ev, 6111), resource)
    assert not res.ok
    assert "12" in res.error and "200" in res.error and "epochs" in res.error
    assert ev.queries == before  # a refused query is not counted


def _search(kind, budget, seed=0, strategy="random", dataset="cifar10", **extra):
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.loop import Budget, Search
    from nastk.run.memory_store import MemoryStorage
    from nastk.scheduling.config import SchedulerConfig, build_scheduler
    from nastk.search_spaces.nb201 import NB201FidelityEvaluator

    ev = NB201FidelityEvaluator(dataset)
    obj = Objective(metric="val_acc")
    sched = build_scheduler(SchedulerConfig(kind=kind, rungs=[12, 200], reduction_factor=3,
                                            **extra), ev.fidelity, obj)
    strat = registry.instantiate(registry.STRATEGIES, strategy, {}, ev.bench.space, obj,
                                 seed=seed)
    store = MemoryStorage(keep_strategy_state=False)
    seen = []
    epochs0 = ev.epochs
    search = Search(ev.bench.space, strat, ev, obj, store,
                    Budget(trials=10**6, resource=budget), scheduler=sched,
                    on_rung=lambda c, r, spent: seen.append((c.previous, c.resource, c.cost,
                                                             spent)))
    search.run()
    return search, store, seen, ev.epochs - epochs0


@pytest.mark.parametrize("budget", [700, 2000, 5000])
def test_hyperband_charges_epochs(budget):
    search, store, seen, looked_up = _search("hyperband", budget)
    rungs = store.rungs()
    assert len(rungs) == len(seen) > 0
    new12 = [s for s in seen if s[0] == 0 and s[1] == 12]
    promoted = [s for s in seen if s[0] == 12 and s[1] == 200]
    new200 = [s for s in seen if s[0] == 0 and s[1] == 200]  # Hyperband's full-fidelity bracket
    assert len(new12) + len(promoted) + len(new200) == len(seen)
    assert all(s[2] == 12 for s in new12) and new12
    assert all(s[2] == 188 for s in promoted) and promoted
    assert all(s[2] == 200 for s in new200)
    charged = 12 * len(new12) + 188 * len(promoted) + 200 * len(new200)
    assert sum(r.cost for r in rungs) == search.spent == charged <= budget
    assert sorted(r.cost for r in rungs) == sorted(s[2] for s in seen)
    assert seen[-1][3] == search.spent  # on_rung's running total
    # the table is looked up afresh at 200 for a promotion: 12 more than the run charges
    assert looked_up == charged + 12 * len(promoted)
    # the run stops before the first job that would exceed the budget (the largest costs 200)
    assert "resource budget" in search.stop_reason and budget - search.spent < 200


def test_successive_halving_charges_12_per_candidate_and_188_per_promotion():
    search, store, _, _ = _search("sh", 1000)
    rungs = store.rungs()
    costs = sorted({r.cost for r in rungs})
    assert costs == [12.0, 188.0]
    n12 = sum(1 for r in rungs if r.resource == 12)
    n200 = sum(1 for r in rungs if r.resource == 200)
    assert search.spent == 12 * n12 + 188 * n200 == sum(r.cost for r in rungs) <= 1000


def test_incumbent_is_best_validation_at_the_highest_fidelity():
    search, store, _, _ = _search("hyperband", 3000, seed=1)
    finished = [t for t in store.finished() if t.result is not None and t.result.ok]
    top = max(t.result.info["resource"] for t in finished)
    assert top == 200
    best_val = max(t.result.metrics["val_acc"] for t in finished
                   if t.result.info["resource"] == top)
    assert search.best.result.info["resource"] == 200
    assert search.best.result.metrics["val_acc"] == best_val
    # a 12-epoch result is never the incumbent, even when its accuracy were higher
    assert math.isfinite(search.best.result.metrics["test_acc_200ep"])
