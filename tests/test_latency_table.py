"""Latency tables (nastk.latency): the units a once-for-all space is made of, the correction and
its interval, the table file, predicted latency in searches (objective and constraint) and the
check of a run's front against the device."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from nastk.cli.main import main
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError, InvalidArchitectureError, NastkError
from nastk.evaluation.cost import count_flops
from nastk.latency.backends import Backend, Measured, make_backend
from nastk.latency.correction import LatencyCorrection
from nastk.latency.front_check import summarize
from nastk.latency.predictor import LatencyPredictor, space_record
from nastk.latency.profile import profile_table, whole_networks
from nastk.latency.table import LatencyTable, read_table
from nastk.latency.units import latency_units
from nastk.run.identity import identity_differences
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3FullSpace, OFAMobileNetV3Space
from nastk.search_spaces.ofa_mbv3.layers import MBConvBlock

SMALL = {"stages": [8, 16, 16], "final_channels": 32}


class FlopsBackend(Backend):
    """A deterministic 'device' whose latency of a module is its fvcore FLOPs in millions:
    additive over the units of a network, so a table of it predicts a network's FLOPs."""

    def measure_all(self, items: Any, progress: Any = None) -> list[Measured]:
        return [Measured(count_flops(m.eval(), shape) / 1e6, 0.0, False) for m, shape in items]


def _head(space: Any, arch: Any) -> nn.Module:
    body = space.build(arch, 3)
    return nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(body.out_channels, 7)).eval()


# -- the units ----------------------------------------------------------------------------------
def _block_inputs(body: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """Every MBConv block the body runs, with the shape of its input, in order."""
    seen: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: seen.append((mod, tuple(args[0].shape[1:]))))
        for m in body.modules() if isinstance(m, MBConvBlock)]
    with torch.no_grad():
        body(x)
    for h in hooks:
        h.remove()
    return seen


def _shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.state_dict().values()]


@pytest.mark.parametrize("space,shape", [
    (OFAMobileNetV3Space(**SMALL), (3, 32, 32)),
    (OFAMobileNetV3Space(**SMALL, conv_types=["static", "dynamic"]), (3, 24, 40)),
    (OFAMobileNetV3FullSpace(resolutions=[48, 64]), (3, 56, 56)),
])
def test_unit_keys_name_the_modules_the_network_runs(space: Any, shape: tuple[int, ...]) -> None:
    """For random architectures, the blocks of the built network, in order, have the parameter
    shapes and input sizes of the units their keys name (latency depends on nothing else)."""
    units = latency_units(space, shape)
    by_key = {u.key: u for u in units.units()}
    assert len(by_key) == len(units.units())
    rng = np.random.default_rng(0)
    for _ in range(4):
        arch = space.sample(rng)
        keys = units.keys(arch)
        assert all(k in by_key for k in keys)
        body = units.supernet.extract(arch).eval()
        blocks = _block_inputs(body, torch.zeros(1, *shape))
        first = 1 if isinstance(space, OFAMobileNetV3FullSpace) else 0  # the fixed first block
        blocks = blocks[first:]
        assert len(keys) == len(blocks) + 2  # stem, the blocks, final
        for key, (module, in_shape) in zip(keys[1:-1], blocks, strict=True):
            unit = by_key[key]
            assert unit.input_shape == in_shape, key
            assert _shapes(unit.build()) == _shapes(module), key
        assert by_key[keys[-1]].input_shape[0] == body.final[0].in_channels
        assert _shapes(by_key[keys[-1]].build()) == _shapes(body.final)


def test_blocks_of_equal_shape_share_a_key() -> None:
    """Within a stage every block after the first has one shape: a stage needs 2 positions'
    units (x 9 kernel-expand choices); ofa_mbv3's first stage (stride 1, 8 -> 8 channels) one."""
    space = OFAMobileNetV3Space(stages=[16, 24, 40], final_channels=32, stem_channels=16)
    units = latency_units(space, (3, 32, 32)).units()
    per_choice = 3 * 3
    assert len(units) == 2 + per_choice * (1 + 2 + 2)


def test_a_space_without_units_is_refused_with_the_ones_that_have_them() -> None:
    from nastk.search_spaces.small_cnn import SmallCNNSpace

    with pytest.raises(NastkError, match="ofa_mbv3 and ofa_mbv3_full"):
        latency_units(SmallCNNSpace(), (1, 10, 10))


# -- the correction ----------------------------------------------------------------------------
def test_correction_recovers_an_exact_line_with_a_zero_width_interval() -> None:
    table = np.array([3.0, 5.0, 8.0, 13.0, 21.0])
    c = LatencyCorrection.fit(table, 2.0 + 0.5 * table)
    assert c.intercept_ms == pytest.approx(2.0)
    assert c.slope == pytest.approx(0.5)
    mean, low, high = c.predict(10.0)
    assert mean == pytest.approx(7.0)
    assert low == pytest.approx(7.0) and high == pytest.approx(7.0)
    assert c.loo_mape == pytest.approx(0.0, abs=1e-9)


def test_correction_interval_is_the_conformal_quantiles_of_leave_one_out_ratios() -> None:
    """Brute force: refit without each network with numpy, take measured / predicted, and the
    floor((n+1) a/2)-th and ceil((n+1)(1-a/2))-th smallest ratios."""
    rng = np.random.default_rng(3)
    table = rng.uniform(5, 50, size=39)
    measured = (1.0 + 0.8 * table) * rng.lognormal(0, 0.1, size=39)
    c = LatencyCorrection.fit(table, measured, level=0.9)
    ratios = []
    for i in range(39):
        keep = np.arange(39) != i
        b, a = np.polyfit(table[keep], measured[keep], 1)
        ratios.append(measured[i] / (a + b * table[i]))
    ratios.sort()
    assert c.ratio_low == pytest.approx(ratios[math.floor(40 * 0.05) - 1])
    assert c.ratio_high == pytest.approx(ratios[math.ceil(40 * 0.95) - 1])
    b, a = np.polyfit(table, measured, 1)
    assert (c.intercept_ms, c.slope) == (pytest.approx(a), pytest.approx(b))
    assert c.achievable_level == pytest.approx(0.9)


def test_correction_with_few_networks_says_what_its_interval_can_claim() -> None:
    c = LatencyCorrection.fit([1.0, 2.0, 3.0, 4.0], [1.1, 2.3, 2.9, 4.2], level=0.95)
    assert c.achievable_level == pytest.approx(1 - 2 / 5)
    assert c.ratio_low <= 1.0 <= c.ratio_high
    with pytest.raises(NastkError, match="at least 3"):
        LatencyCorrection.fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(NastkError, match="positive"):
        LatencyCorrection.fit([1.0, 2.0, -3.0], [1.0, 2.0, 3.0])


# -- profiling and predicting ------------------------------------------------------------------
@pytest.fixture(scope="module")
def flops_table() -> tuple[Any, LatencyTable]:
    space = OFAMobileNetV3Space(**SMALL)
    table = profile_table(space, (3, 32, 32), lambda a: _head(space, a),
                          FlopsBackend(threads=1, repeats=1, warmup=0), networks=6, seed=0)
    return space, table


def test_a_table_of_an_additive_cost_predicts_it_exactly(flops_table: Any) -> None:
    """On a 'device' whose latency is FLOPs (additive over units), the table plus its
    correction (intercept = the head's FLOPs) predicts fvcore's count on any built network."""
    space, table = flops_table
    predictor = LatencyPredictor(table, space, (3, 32, 32))
    rng = np.random.default_rng(11)
    for _ in range(5):
        arch = space.sample(rng)
        want = count_flops(_head(space, arch), (3, 32, 32)) / 1e6
        p = predictor.predict(arch)
        assert p.ms == pytest.approx(want, rel=1e-6)
        assert p.low == pytest.approx(want, rel=1e-6) and p.high == pytest.approx(want, rel=1e-6)
    assert table.correction.slope == pytest.approx(1.0)
    assert len(table.networks) == 6
    assert table.networks[0].arch == space.smallest().as_dict()
    assert table.networks[1].arch == space.largest().as_dict()


def test_whole_networks_are_distinct_and_seeded() -> None:
    space = OFAMobileNetV3Space(**SMALL)
    a = whole_networks(space, 8, seed=4)
    assert len({x.key for x in a}) == 8
    assert [x.key for x in a] == [x.key for x in whole_networks(space, 8, seed=4)]


def test_table_file_round_trip_and_clear_errors(tmp_path: Path, flops_table: Any) -> None:
    _, table = flops_table
    path = table.save(tmp_path / "t.json")
    again = read_table(path)
    assert again == table
    with pytest.raises(ConfigError, match=r"does not exist.*nastk latency profile"):
        read_table(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a JSON latency table"):
        read_table(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "nastk.front/1"}))
    with pytest.raises(ConfigError, match="not a nastk latency table"):
        read_table(tmp_path / "other.json")
    data = json.loads(path.read_text())
    data["units"] = {k: {"ms": -1.0, "spread": 0.0} for k in data["units"]}
    (tmp_path / "neg.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="greater than 0"):
        read_table(tmp_path / "neg.json")


def test_predictor_refuses_another_space_or_input_shape(flops_table: Any) -> None:
    space, table = flops_table
    with pytest.raises(ConfigError, match="profiled for space 'ofa_mbv3' with options"):
        LatencyPredictor(table, OFAMobileNetV3Space(stages=[8, 16, 24], final_channels=32),
                         (3, 32, 32))
    with pytest.raises(ConfigError, match=r"input shape \[3, 32, 32\].*\[3, 64, 64\]"):
        LatencyPredictor(table, space, (3, 64, 64))
    broken = table.model_copy(update={"units": dict(list(table.units.items())[:3])})
    with pytest.raises(InvalidArchitectureError, match="no timing for unit"):
        LatencyPredictor(broken, space, (3, 32, 32)).predict(space.largest())
    assert space_record(space)["options"]["stages"] == SMALL["stages"]


def test_summary_of_a_check_by_hand() -> None:
    points = [{"predicted_ms": 11.0, "measured_ms": 10.0, "inside": True},
              {"predicted_ms": 18.0, "measured_ms": 20.0, "inside": True},
              {"predicted_ms": 33.0, "measured_ms": 30.0, "inside": False}]
    s = summarize(points)
    assert s["mape"] == pytest.approx((10 + 10 + 10) / 3)
    assert s["max_error"] == pytest.approx(10.0)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert s["spearman"] == pytest.approx(1.0)


# -- the back ends -----------------------------------------------------------------------------
class _Counter(nn.Module):
    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return x


def test_measure_all_interleaves_rounds() -> None:
    """Warm-up passes of each module, then per round each module's untimed pass and its share
    of the repeats, module after module."""
    log: list[str] = []
    backend = make_backend("cpu", 1, repeats=6, warmup=2, rounds=3)
    out = backend.measure_all([(_Counter("a", log), (1,)), (_Counter("b", log), (1,))])
    assert len(out) == 2 and all(m.ms > 0 for m in out)
    round_ = ["a"] * 3 + ["b"] * 3  # one untimed + 6 / 3 timed passes each
    assert log == ["a", "a", "b", "b"] + round_ * 3


def test_backends_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown; use one of"):
        make_backend("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            make_backend("cuda")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install -e \"\.\[onnx\]\".*onnxruntime"):
        make_backend("onnxruntime")


def test_onnxruntime_backend_times_an_exported_block() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    space = OFAMobileNetV3Space(**SMALL)
    unit = latency_units(space, (3, 32, 32)).units()[3]
    m = make_backend("onnxruntime", 1, repeats=4, warmup=1, rounds=2).measure(
        unit.build(), unit.input_shape)
    assert m.ms > 0 and m.spread >= 0
    assert make_backend("onnxruntime", 1).device()["onnxruntime"]


# -- configs -----------------------------------------------------------------------------------
BASE = {"space": {"name": "ofa_mbv3", "options": SMALL}, "task": "classification"}


def test_constraint_forms_and_their_errors() -> None:
    c = parse_config({**BASE, "constraints": {"flops": {"max": 5e6}, "params": [1, None]}})
    assert c.constraints == {"flops": (None, 5e6), "params": (1, None)}
    with pytest.raises(ConfigError, match="latency_ms needs a predicted latency.*latency: "
                                          r"\{table: FILE\}"):
        parse_config({**BASE, "constraints": {"latency_ms": {"max": 3}}})
    with pytest.raises(ConfigError, match="unknown bound"):
        parse_config({**BASE, "constraints": {"flops": {"below": 3}}})
    with pytest.raises(ConfigError, match="function evaluator has none"):
        parse_config({"space": "nb201", "objective": {"metric": "acc"},
                      "evaluator": {"kind": "function", "function": "a.b:c"},
                      "latency": {"table": "t.json"}})


def test_identity_of_a_run_stored_before_latency_tables_is_unchanged() -> None:
    config = parse_config({**BASE, "constraints": {"flops": [None, 5e6]}})
    stored = config.identity()
    stored.pop("latency")
    assert identity_differences(stored, config) is None


# -- a search with predicted latency ------------------------------------------------------------
def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny ofa_mbv3 supernet, its latency table on this CPU, and the search config."""
    tmp = tmp_path_factory.mktemp("latency")
    task = {"name": "classification", "options": {"n_samples": 300}}
    sn = _write(tmp / "sn.yaml", {
        "name": "sn", "run_dir": str(tmp / "sn"), "space": BASE["space"], "task": task,
        "training": {"phases": [{"epochs": 1}], "batch_size": 64}})
    assert main(["supernet", "train", str(sn), "--no-progress"]) == 0
    search = {"name": "lat", "run_dir": str(tmp / "run"), "space": BASE["space"],
              "task": task, "strategy": {"name": "nsga2", "options": {"population": 6}},
              "objective": {"costs": ["latency_ms"]},
              "latency": {"table": str(tmp / "table.json")},
              "evaluator": {"kind": "supernet", "supernet": {
                  "checkpoint": str(tmp / "sn" / "supernet.pt"), "calib_batches": 1}},
              "budget": {"trials": 14}}
    cfg = _write(tmp / "search.yaml", search)
    assert main(["latency", "profile", str(cfg), "--out", str(tmp / "table.json"),
                 "--networks", "5", "--repeats", "4", "--warmup", "1", "--threads", "1",
                 "--no-progress"]) == 0
    return {"tmp": tmp, "search": search, "table": read_table(tmp / "table.json")}


def _predicted_by_hand(table: LatencyTable, space: Any, arch: Any
                       ) -> tuple[float, float, float]:
    """The table's units summed and the correction applied, without the predictor."""
    keys = latency_units(space, tuple(table.input_shape)).keys(arch)
    total = sum(table.units[k].ms for k in keys)
    c = table.correction
    mean = c.intercept_ms + c.slope * total
    return mean, mean * c.ratio_low, mean * c.ratio_high


@pytest.mark.slow
def test_weight_sharing_nsga2_with_predicted_latency_objective_and_constraint(
        trained: dict[str, Any]) -> None:
    """The acceptance run: NSGA-II over ofa_mbv3 by weight sharing, latency_ms predicted
    from the table as an objective cost and a constraint; every trial's latency is the table's
    prediction (recomputed by hand), none exceeds the bound, and the report has the front's
    predicted-vs-measured table."""
    from nastk.run.record import open_run

    tmp, table = trained["tmp"], trained["table"]
    space = OFAMobileNetV3Space(**SMALL)
    preds = sorted(_predicted_by_hand(table, space, space.sample(np.random.default_rng(i)))[0]
                   for i in range(40))
    bound = preds[len(preds) * 2 // 3]  # about a third of the space is cut
    config = {**trained["search"], "constraints": {"latency_ms": {"max": bound}}}
    path = _write(tmp / "search_c.yaml", config)
    assert main(["search", str(path), "--no-progress"]) == 0
    record = open_run(tmp / "run")
    assert len(record.finished) == 14
    for t in record.finished:
        assert t.result is not None and t.result.ok
        mean, low, high = _predicted_by_hand(table, space, t.arch)
        assert t.result.costs["latency_ms"] == pytest.approx(mean)
        assert t.result.costs["latency_ms"] <= bound
        info = t.result.info["latency"]
        assert info["predicted"] is True and info["table"] == "table.json"
        assert (info["low"], info["high"]) == (pytest.approx(low, abs=1e-3),
                                               pytest.approx(high, abs=1e-3))
    check = json.loads((tmp / "run" / "latency_check.json").read_text())
    assert check["measured"] is True
    report = (tmp / "run" / "report.md").read_text()
    assert "## Predicted latency against measured" in report
    section = report.split("## Predicted latency against measured")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == check["front"] == len(check["points"]) >= 1
    for p in check["points"]:
        assert p["measured_ms"] > 0 and p["inside"] in (True, False)
        assert f"{p['predicted_ms']:.2f}" in section


@pytest.mark.slow
def test_an_infeasible_latency_bound_stops_before_anything_is_written(
        trained: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    tmp = trained["tmp"]
    config = {**trained["search"], "run_dir": str(tmp / "never"),
              "constraints": {"latency_ms": {"max": 1e-6}}}
    assert main(["search", str(_write(tmp / "never.yaml", config)), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "latency_ms of the samples ranged" in err and "widen the range" in err
    assert not (tmp / "never").exists()


@pytest.mark.slow
def test_check_on_another_device_says_where_to_run_it(trained: dict[str, Any],
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A table profiled elsewhere: the front is not timed here; the report says so and names
    the command to run on the device, and `nastk latency check` exits non-zero."""
    tmp = trained["tmp"]
    data = json.loads((tmp / "table.json").read_text())
    data["device"]["cpu"] = "Cortex-A72 (a Raspberry Pi 4)"
    (tmp / "pi.json").write_text(json.dumps(data))
    config = {**trained["search"], "run_dir": str(tmp / "pi_run"),
              "latency": {"table": str(tmp / "pi.json")}, "budget": {"trials": 6}}
    assert main(["search", str(_write(tmp / "pi.yaml", config)), "--no-progress"]) == 0
    check = json.loads((tmp / "pi_run" / "latency_check.json").read_text())
    assert check["measured"] is False and "Cortex-A72" in check["reason"]
    report = (tmp / "pi_run" / "report.md").read_text()
    assert f"nastk latency check {tmp / 'pi_run'}" in report
    capsys.readouterr()
    assert main(["latency", "check", str(tmp / "pi_run")]) == 1
    assert main(["latency", "check", str(tmp / "pi_run"), "--table",
                 str(tmp / "table.json")]) == 0
    assert json.loads((tmp / "pi_run" / "latency_check.json").read_text())["measured"]
    assert "| trial |" in (tmp / "pi_run" / "report.md").read_text().split(
        "## Predicted latency against measured")[1]


@pytest.mark.slow
def test_a_train_evaluator_predicts_instead_of_timing(trained: dict[str, Any]) -> None:
    from nastk.config.compose import build_components

    tmp = trained["tmp"]
    config = parse_config({**trained["search"], "evaluator": {
        "kind": "train", "train": {"epochs": 1, "batch_size": 64}}})
    parts = build_components(config)
    arch = parts.space.sample(np.random.default_rng(5))
    result = parts.evaluator.evaluate(arch)
    assert result.ok, result.error
    mean, _, _ = _predicted_by_hand(trained["table"], parts.space, arch)
    assert result.costs["latency_ms"] == pytest.approx(mean)
    assert result.info["latency"]["predicted"] is True
    assert "busy" not in result.info["latency"]  # nothing was timed
    wrong = parse_config({**trained["search"], "latency": {"table": str(tmp / "nope.json")}})
    with pytest.raises(ConfigError, match=r"nope\.json does not exist"):
        build_components(wrong)


@pytest.mark.slow
def test_without_measuring_the_front_the_report_says_latency_was_predicted(
        trained: dict[str, Any]) -> None:
    tmp = trained["tmp"]
    config = {**trained["search"], "run_dir": str(tmp / "unmeasured"),
              "latency": {"table": str(tmp / "table.json"), "measure_front": False},
              "budget": {"trials": 4}}
    assert main(["search", str(_write(tmp / "unmeasured.yaml", config)), "--no-progress"]) == 0
    assert not (tmp / "unmeasured" / "latency_check.json").exists()
    report = (tmp / "unmeasured" / "report.md").read_text()
    section = report.split("## Predicted latency against measured")[1].split("\n## ")[0]
    assert "predicted from the latency table table.json" in section
    assert f"nastk latency check {tmp / 'unmeasured'}" in section


class _PredictingEvaluator:
    """An evaluator that builds models the way the engine's do for latency: it reports the
    latency predictor's ``latency_ms`` (set by whoever composes the search)."""

    latency_predictor: LatencyPredictor | None = None

    def evaluate(self, arch: Any, checkpoint: Path | None = None) -> Any:
        from nastk.core.result import Result

        assert self.latency_predictor is not None
        return Result.complete({"m": 1.0}, {"latency_ms": self.latency_predictor(arch)})


def test_the_python_api_takes_a_latency_table(tmp_path: Path, flops_table: Any) -> None:
    from nastk import create_search
    from nastk.run.sqlite_store import RunStore

    space, table = flops_table
    path = table.save(tmp_path / "table.json")
    predictor = LatencyPredictor(table, space, (3, 32, 32))
    with create_search(space, _PredictingEvaluator(), objective="m", costs=["latency_ms"],
                       strategy="random", storage=tmp_path / "run", budget=4,
                       latency=predictor) as search:
        search.optimize()
        trials = search.trials
    assert len(trials) == 4
    for t in trials:  # each trial's latency is the table's prediction for its architecture
        assert t.result.costs["latency_ms"] == pytest.approx(predictor.predict(t.arch).ms)
    with RunStore.open_existing(tmp_path / "run") as st:
        assert st.get_meta("identity")["latency"]["input_shape"] == [3, 32, 32]
    with pytest.raises(ConfigError, match=r"pass the search's task"):
        create_search(space, _PredictingEvaluator(), objective="m", latency=path)
    with pytest.raises(ConfigError, match="builds none"):
        create_search(space, lambda arch: {"m": 1.0}, objective="m", latency=predictor)
    other = OFAMobileNetV3Space(**{**SMALL, "depths": [2]})
    with pytest.raises(ConfigError, match="build it over the search's space"):
        create_search(other, _PredictingEvaluator(), objective="m", latency=predictor)
