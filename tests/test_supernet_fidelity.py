"""The supernet-fidelity benchmark end to end on a tiny supernet: its correlations equal scipy's
on the numbers it recorded, and its noise and spread figures are the stated formulas."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from nastk.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 200, "image_size": 16,
                    "num_classes": 4}}


def _toy_supernet(tmp_path: Path) -> Path:
    """A trained one-epoch toy supernet; returns its config."""
    cfg = {"name": "fid", "run_dir": str(tmp_path / "fid"), "plugins": ["toy_supernet"],
           "space": "toy_supernet", "task": TASK,
           "training": {"epochs": 1, "batch_size": 32, "n_random": 1, "bn_calib_batches": 2,
                        "num_threads": 1}}
    path = tmp_path / "supernet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    return path


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("supernet_fidelity",
                                                  ROOT / "benchmarks" / "supernet_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_and_its_correlations_are_scipys(bench, tmp_path, capsys):
    path = _toy_supernet(tmp_path)
    out = tmp_path / "fidelity.json"
    assert bench.main(["--supernet", str(path), "--n", "6", "--seeds", "2", "--epochs", "1",
                       "--k", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "noise ceiling" in printed and "spread / noise" in printed
    doc = json.loads(out.read_text())
    raw, got = doc["raw"], doc["stats"]
    ws = np.array(raw["ws"])
    sa = np.array(raw["standalone"])
    assert sa.shape == (6, 2) and len(raw["archs"]) == 6
    assert len({json.dumps(a, sort_keys=True) for a in raw["archs"]}) == 6  # distinct
    mean = sa.mean(axis=1)
    assert got["ws_tau"] == pytest.approx(stats.kendalltau(mean, ws).statistic, nan_ok=True)
    assert got["ws_spearman"] == pytest.approx(stats.spearmanr(mean, ws).statistic,
                                               nan_ok=True)
    assert got["noise_ceiling_tau"] == pytest.approx(
        stats.kendalltau(sa[:, 0], sa[:, 1]).statistic, nan_ok=True)
    assert got["flops_tau"] == pytest.approx(
        stats.kendalltau(mean, raw["flops"]).statistic, nan_ok=True)
    assert got["params_spearman"] == pytest.approx(
        stats.spearmanr(mean, raw["params"]).statistic, nan_ok=True)
    assert got["seed_noise"] == pytest.approx(np.sqrt(np.mean(np.var(sa, axis=1, ddof=1))))
    assert got["spread"] == pytest.approx(np.std(mean, ddof=1))


def test_stats_on_hand_made_numbers(bench):
    ws = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    sa = np.array([[0.50, 0.52], [0.60, 0.58], [0.70, 0.71], [0.80, 0.80], [0.90, 0.91]])
    s = bench.fidelity_stats(ws, sa, flops=ws[::-1] * 10, params=ws * 3, k=2)
    assert s["ws_tau"] == pytest.approx(1.0) and s["flops_tau"] == pytest.approx(-1.0)
    assert s["noise_ceiling_tau"] == pytest.approx(1.0) and s["top_k_overlap"] == 2
    noise = np.sqrt(np.mean([np.var(r, ddof=1) for r in sa]))
    assert s["spread_over_noise"] == pytest.approx(np.std(sa.mean(1), ddof=1) / noise)
    flipped = sa.copy()
    flipped[:, 1] = flipped[::-1, 1]  # the seeds disagree: no ceiling to be a fraction of
    worse = bench.fidelity_stats(ws, flipped, ws, ws)
    assert worse["noise_ceiling_tau"] < 0 and np.isnan(worse["ws_tau_over_ceiling"])
    assert "undefined" in bench.format_stats(worse)
    with pytest.raises(ValueError, match="seeds >= 2"):
        bench.fidelity_stats(ws, sa[:, :1], ws, ws)


def test_reuse_keeps_the_stand_alone_scores_and_refuses_other_settings(bench, tmp_path):
    path = _toy_supernet(tmp_path)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    args = ["--supernet", str(path), "--n", "4", "--seeds", "2", "--epochs", "1"]
    assert bench.main([*args, "--json", str(first)]) == 0
    assert bench.main([*args, "--calib-batches", "1", "--reuse", str(first),
                       "--json", str(second)]) == 0
    a, b = (json.loads(f.read_text())["raw"] for f in (first, second))
    assert b["standalone"] == a["standalone"] and b["archs"] == a["archs"]
    with pytest.raises(SystemExit, match="train differ"):
        bench.main([*args[:-1], "2", "--reuse", str(first)])  # 2 epochs: other ground truth


@pytest.mark.slow
def test_standalone_only_reports_spread_without_a_supernet(bench, tmp_path, capsys):
    search = {"name": "s", "run_dir": str(tmp_path / "s"), "space": "small_cnn",
              "task": TASK, "evaluator": {"kind": "train",
                                          "train": {"epochs": 1, "batch_size": 32}}}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search))
    out = tmp_path / "s.json"
    assert bench.main(["--standalone-only", str(path), "--n", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stand-alone spread and noise" in printed and "weight sharing" not in printed
    doc = json.loads(out.read_text())
    raw, got = doc["raw"], doc["stats"]
    assert raw["ws"] is None and raw["train"]["epochs"] == 1 and raw["train"]["batch_size"] == 32
    sa = np.array(raw["standalone"])
    assert sa.shape == (4, 2) and len(raw["flops"]) == 4 and min(raw["flops"]) > 0
    assert got["flops_tau"] == pytest.approx(stats.kendalltau(sa.mean(1), raw["flops"]).statistic)
    assert got["spread"] == pytest.approx(np.std(sa.mean(1), ddof=1))
    assert np.isnan(got["ws_tau"])
    row = bench.summary_table([out]).splitlines()[-1]
    assert row.startswith("| s | classification / small_cnn | 4 x 2 | n/a |")
