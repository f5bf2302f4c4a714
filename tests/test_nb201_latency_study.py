"""A device's latency as a cost of NAS-Bench-201 searches (issue 32, item 4): the look-up
functions ``nastk.search_spaces.nb201:<dataset>_<device>``, and the study of accuracy against
latency (``examples/study_latency.yaml``)."""

import csv
import json
from functools import cache
from pathlib import Path

import pytest
import yaml

import nastk.search_spaces.nb201 as nb201
from nastk.cli.main import main
from nastk.config.schema import load_config
from nastk.core.errors import BenchmarkDataError, ConfigError
from nastk.core.loading import load_object
from nastk.pipelines.study.config import StudyConfig
from nastk.run.sqlite_store import RunStore
from nastk.search_spaces.nb201 import HELP_DEVICES, NB201Space, nb201_data_missing

MISSING = nb201_data_missing()
needs_data = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "study_latency.yaml"
EAGLE = "eagle_desktop_cpu_i7_7820x_fp32"


@cache
def latency_table() -> list[dict[str, str]]:
    """The rows of ``nb201_latency_ms.csv``, read here independently of the module (once)."""
    path = nb201.find_data_dir() / nb201.HARDWARE / nb201.LATENCY_FILE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@needs_data
@pytest.mark.parametrize(("name", "device"), [("cifar10_raspi4", "raspi4"),
                                              ("cifar100_titan_rtx_1", "titan_rtx_1"),
                                              ("imagenet16_fpga", "fpga"),
                                              ("cifar10_eyeriss", "eyeriss")])
def test_a_device_function_reports_that_devices_latency(name, device):
    rows = latency_table()
    fn = load_object(f"nastk.search_spaces.nb201:{name}", "evaluator.function")
    assert fn is getattr(nb201, name) is load_object(f"nastk.search_spaces.nb201:{name}", "f")
    assert fn.__name__ == name and device in (fn.__doc__ or "")
    space = NB201Space()
    dataset = name.partition("_")[0]
    plain = getattr(nb201, dataset)  # the Pixel 3 look-up of the same data set
    for index in (0, 1, 777, 8190, 15624):
        arch = space.from_string(rows[index]["arch_str"])
        metrics, costs = fn(arch)
        assert costs["latency_ms"] == float(rows[index][device])
        # everything else is the plain look-up's
        plain_metrics, plain_costs = plain(arch)
        assert metrics == plain_metrics
        assert {k: v for k, v in costs.items() if k != "latency_ms"} == \
            {k: v for k, v in plain_costs.items() if k != "latency_ms"}
        assert plain_costs["latency_ms"] == float(rows[index]["pixel3"])


@needs_data
def test_the_device_list_is_the_tables_header():
    header = list(latency_table()[0])
    assert list(nb201.latency_devices()) == [c for c in header if c not in ("index", "arch_str")]
    assert set(HELP_DEVICES) | {EAGLE} == set(nb201.latency_devices())
    assert len(HELP_DEVICES) == 27


def test_an_unknown_device_or_data_set_names_both_lists():
    for name, problem in (("cifar10_nexus5", "unknown device 'nexus5'"),
                          ("svhn_raspi4", "unknown data set 'svhn'"),
                          ("cifar10", None), ("raspi4", "unknown data set 'raspi4'")):
        if problem is None:  # the plain look-up is still there
            assert callable(getattr(nb201, name))
            continue
        with pytest.raises(AttributeError) as err:
            getattr(nb201, name)
        message = str(err.value)
        assert problem in message and name in message
        assert "cifar10, cifar100, imagenet16" in message
        assert all(d in message for d in HELP_DEVICES)
        assert not hasattr(nb201, name)
    assert not hasattr(nb201, "__wrapped__")
    with pytest.raises(ConfigError, match=r"cannot load .*cifar10_nexus5"):
        load_object("nastk.search_spaces.nb201:cifar10_nexus5", "evaluator.function")


@needs_data
def test_an_architecture_the_device_table_lacks_has_no_latency():
    """The Eagle column is empty for the 341 disconnected cells: their look-up has no
    ``latency_ms`` (the search records such a trial as failed and goes on), as
    ``NB201Bench.costs`` does for the plain look-ups."""
    rows = latency_table()
    fn = getattr(nb201, f"cifar10_{EAGLE}")
    space = NB201Space()
    empty = [i for i, r in enumerate(rows) if r[EAGLE] == ""]
    assert len(empty) == 341
    _, costs = fn(space.from_string(rows[empty[0]]["arch_str"]))
    assert "latency_ms" not in costs and "flops" in costs
    full = next(i for i, r in enumerate(rows) if r[EAGLE])
    _, costs = fn(space.from_string(rows[full]["arch_str"]))
    assert costs["latency_ms"] == float(rows[full][EAGLE])


@needs_data
def test_a_device_lookup_without_the_latency_table_stops_before_its_first_trial(
        tmp_path, monkeypatch):
    merged = nb201.find_data_dir() / nb201.TABLES / nb201.ACC_FILE
    (tmp_path / nb201.TABLES).mkdir()
    (tmp_path / nb201.TABLES / nb201.ACC_FILE).symlink_to(merged)
    monkeypatch.setenv(nb201.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(nb201, "_DEVICE_FUNCTIONS", {})
    with pytest.raises(BenchmarkDataError, match=r"nb201_latency_ms\.csv is not in"):
        nb201.imagenet16_samsung_s7.prepare()  # what the composition root calls first


def small_study(run_dir: Path, seeds: int = 2, trials: int = 20) -> dict:
    """The example's tasks and strategies with a small budget."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(run_dir=str(run_dir), seeds=seeds)
    for task in data["tasks"]:
        task["budget"] = {"trials": trials}
    return data


def test_a_wrong_device_in_a_study_stops_it_before_anything_is_written(tmp_path, capsys):
    data = small_study(tmp_path / "run")
    data["tasks"][0]["evaluator"]["function"] = "nastk.search_spaces.nb201:cifar10_raspi5"
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["study", str(cfg), "--no-progress"]) != 0
    assert "cifar10_raspi5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@needs_data
def test_the_example_study_names_three_devices_and_the_tables_bounds():
    cfg = load_config(EXAMPLE, StudyConfig)
    assert [s.label or s.name for s in cfg.strategies] == ["random", "rea", "nsga2"]
    devices = []
    bench = nb201.NB201Bench.load()
    column = bench.column("cifar10", "test200")
    for t in cfg.tasks:
        module, _, name = t.evaluator["function"].partition(":")
        assert module == "nastk.search_spaces.nb201" and name.startswith("cifar10_")
        devices.append(name.removeprefix("cifar10_"))
        assert callable(getattr(nb201, name))
        assert t.objective["costs"] == ["latency_ms"] and t.report_metric == "test_acc_200ep"
        assert (t.optimum, t.worst) == (max(column), min(column))
    assert len(set(devices)) == 3 and set(devices) <= set(HELP_DEVICES)


@pytest.mark.slow
@needs_data
def test_a_small_latency_study_reports_hypervolumes_and_the_tables_latencies(tmp_path):
    rows = latency_table()
    by_string = {r["arch_str"]: r for r in rows}
    bench = nb201.NB201Bench.load()
    data = small_study(tmp_path / "run")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["study", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "study.json").read_text())
    tasks = [t["name"] for t in data["tasks"]]
    assert summary["hypervolume_tasks"] == tasks
    for task in data["tasks"]:
        device = task["evaluator"]["function"].rpartition(":")[2].removeprefix("cifar10_")
        rows_of = summary["tasks"][task["name"]]["strategies"]
        assert set(rows_of) == {"random", "rea", "nsga2"}
        for strategy, row in rows_of.items():
            assert 0.0 < row["hypervolume"] <= 1.21 and len(row["hypervolume_per_seed"]) == 2
            assert row["seeds"] == 2
            for seed in range(2):
                with RunStore.open_existing(tmp_path / "run" / task["name"] / strategy /
                                            f"seed_{seed}") as store:
                    trials = store.finished()
                assert len(trials) == 20
                for t in trials:
                    row_ = by_string[NB201Space.to_string(t.arch)]
                    assert t.result.costs["latency_ms"] == float(row_[device])
                    assert t.result.metrics["test_acc_200ep"] == bench.accuracy(
                        t.arch, "cifar10", "test200")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Hypervolume leaderboard" in report
