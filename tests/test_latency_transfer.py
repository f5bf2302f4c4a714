"""Few-shot latency prediction for a new device: exact on constructed cases, and on
NAS-Bench-201's measured devices better than a per-device predictor from the same samples."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nastk.predictors.latency_transfer import DeviceTransfer, FromScratch, mape, spearman
from nastk.search_spaces.nb201 import nb201_data_missing


def test_a_device_that_is_a_known_one_rescaled_is_recovered_from_ten_samples():
    rng = np.random.default_rng(0)
    known = np.exp(rng.normal(size=(500, 6)))
    target = 2.5 * known[:, 3] ** 0.8  # log-affine in device 3
    rows = rng.choice(500, size=10, replace=False)
    model = DeviceTransfer(known).fit(rows, target[rows])
    assert 3 in model.chosen
    pred = model.predict()
    assert mape(pred, target) < 0.5 and spearman(pred, target) > 0.999


def test_from_scratch_recovers_an_additive_latency_per_operation():
    rng = np.random.default_rng(1)
    enc = np.eye(5)[rng.integers(0, 5, size=(400, 6))].reshape(400, 30)
    cost = rng.uniform(0.1, 2.0, size=30)
    target = np.exp(enc @ np.log1p(cost))
    rows = rng.choice(400, size=60, replace=False)
    pred = FromScratch(enc, alpha=1e-6).fit(rows, target[rows]).predict()
    assert mape(pred, target) < 1.0


def test_spearman_and_mape_by_hand():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == 1.0
    assert spearman(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == -1.0
    assert mape(np.array([110.0, 90.0]), np.array([100.0, 100.0])) == pytest.approx(10.0)


@pytest.mark.skipif(nb201_data_missing() is not None, reason=nb201_data_missing() or "")
def test_on_nb201_devices_transfer_beats_a_predictor_from_scratch():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nb201_latency_transfer import load

    devices, lat, enc = load()
    assert len(devices) == 27 and lat.shape == (15625, 27)
    lat = np.maximum(lat, 1e-6)
    for name in ("pixel3", "raspi4", "titanx_32"):
        d = devices.index(name)
        known = np.delete(lat, d, axis=1)
        wins = 0
        for seed in range(3):
            rows = np.random.default_rng(seed).choice(len(lat), size=10, replace=False)
            t = DeviceTransfer(known).fit(rows, lat[rows, d]).predict()
            s = FromScratch(enc).fit(rows, lat[rows, d]).predict()
            wins += spearman(t, lat[:, d]) > spearman(s, lat[:, d])
        assert wins >= 2, name
