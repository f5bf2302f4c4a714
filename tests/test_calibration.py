"""Exact expected incumbent of random search from a table's order statistics."""

import itertools

import numpy as np
import pytest

from nastk.run.tabular import calibrated_budget, expected_random_incumbent


def brute_force(search, report, n):
    """Average over every n-subset and every order of first sight among ties."""
    total, count = 0.0, 0
    for subset in itertools.combinations(range(len(search)), n):
        best = max(search[i] for i in subset)
        tied = [report[i] for i in subset if search[i] == best]
        total += sum(tied) / len(tied)
        count += 1
    return total / count


def test_hand_computed_table_with_a_tie():
    search, report = [3, 2, 2, 1], [10, 20, 40, 0]
    assert expected_random_incumbent(search, report, 1) == pytest.approx(17.5)
    # pairs: three hold row 0 (10); {1,2} tie (30); {1,3} 20; {2,3} 40 -> (30 + 90) / 6
    assert expected_random_incumbent(search, report, 2) == pytest.approx(20.0)
    assert expected_random_incumbent(search, report, 4) == pytest.approx(10.0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_equals_brute_force_on_a_random_table_with_ties(n):
    rng = np.random.default_rng(3)
    search = rng.integers(0, 4, size=9).tolist()  # many ties
    report = rng.normal(size=9).tolist()
    assert expected_random_incumbent(search, report, n) == pytest.approx(
        brute_force(search, report, n))


def test_calibrated_budget_is_the_first_n_reaching_the_target():
    rng = np.random.default_rng(0)
    search = rng.normal(size=200)
    report = search + rng.normal(scale=0.5, size=200)
    values = [expected_random_incumbent(search, report, n) for n in range(1, 201)]
    target = values[36]  # reached first at n = 37 unless an earlier n ties it
    n = calibrated_budget(search, report, target)
    assert values[n - 1] >= target and all(v < target for v in values[:n - 1])
    assert calibrated_budget(search, report, max(values) + 1) is None


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="equal-length"):
        expected_random_incumbent([1, 2], [1], 1)
    with pytest.raises(ValueError, match=r"n must be in 1\.\.2"):
        expected_random_incumbent([1, 2], [1, 2], 3)


@pytest.mark.slow
def test_nb201_calibrated_budgets_and_the_benchmark_tables(tmp_path, capsys, monkeypatch):
    """The calibrated NAS-Bench-201 budgets (the n at which random search's exact expectation
    reaches the published random-search mean) and the benchmark's use of them."""
    import importlib
    import json
    from pathlib import Path

    from nastk.search_spaces.nb201 import nb201_data_missing

    if nb201_data_missing():
        pytest.skip(nb201_data_missing())
    # importable by name, so that its worker pool can pickle its functions
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    mod = importlib.import_module("compare_strategies")
    calib = mod.calibration(list(mod.PUBLISHED))
    assert {d: c["budget"] for d, c in calib.items()} == {
        "cifar10": 93, "cifar100": 83, "ImageNet16-120": 72}
    for d, c in calib.items():
        n = c["budget"]
        assert c["expected"][n] >= mod.PUBLISHED[d]["random"][0] > c["expected"][n - 1]
    assert calib["cifar10"]["expected"][150] == pytest.approx(93.823, abs=1e-3)
    code = mod.main(["--seeds", "2", "--strategies", "random", "--datasets", "cifar10",
                     "--workers", "1", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "budget 93 queries (the calibrated budget" in out
    assert "budget 150 queries (not comparable with the published figures)" in out
    res = json.loads((tmp_path / "results.json").read_text())["results"]["cifar10"]
    runs = json.loads((tmp_path / "runs.json").read_text())
    finals = [r["incumbent_test"][92] for r in runs]
    assert res["at_calibrated"][0]["mean"] == pytest.approx(np.mean(finals))
    assert res["at_calibrated"][0]["std"] == pytest.approx(np.std(finals, ddof=1))
