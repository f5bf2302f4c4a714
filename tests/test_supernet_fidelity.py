"""The supernet-fidelity benchmark end to end on a tiny supernet: its correlations equal scipy's
on the numbers it recorded, and its noise and spread figures are the stated formulas."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from nastk.cli import main

ROOT = Path(__file__).resolve().parents[1]
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 200, "image_size": 16,
                    "num_classes": 4}}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("supernet_fidelity",
                                                  ROOT / "benchmarks" / "supernet_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_and_its_correlations_are_scipys(bench, tmp_path, capsys):
    cfg = {"name": "fid", "run_dir": str(tmp_path / "fid"), "plugins": ["toy_supernet"],
           "space": "toy_supernet", "task": TASK,
           "training": {"epochs": 1, "batch_size": 32, "n_random": 1, "bn_calib_batches": 2,
                        "num_threads": 1}}
    path = tmp_path / "supernet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
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
