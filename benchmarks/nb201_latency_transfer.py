"""Few-shot latency prediction on NAS-Bench-201's 27 device settings (HELP's latency tables in
``../shared/data/nasbench201-hardware``): each device held out in turn, the other 26 known;
10 or 20 architectures measured on the held-out device; Spearman's rho and the mean absolute
percentage error over all 15,625 architectures, for the transfer predictor
(``nastk.predictors.latency_transfer.DeviceTransfer``) and a per-device predictor trained from
scratch on the same samples (``FromScratch``). Each setting is repeated over 10 random draws of
the measured architectures (seeds 0..9); printed: the mean over draws per device, and the mean
over devices with the sample std over devices.

    python benchmarks/nb201_latency_transfer.py
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import numpy as np

from nastk.data.dirs import find_data_dir
from nastk.predictors.latency_transfer import DeviceTransfer, FromScratch, mape, spearman

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EXCLUDE = {"index", "arch_str", "eagle_desktop_cpu_i7_7820x_fp32"}  # not one of HELP's 27


def load() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Device names, latencies (15,625 x 27, ms) and the one-hot encoding (15,625 x 30)."""
    rel = "nasbench201-hardware/nb201_latency_ms.csv"
    path = find_data_dir(None, "NASTK_NB201_DIR", [rel], "NAS-Bench-201 latency tables",
                         f"Put {rel}") / rel
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    devices = [c for c in rows[0] if c not in EXCLUDE]
    lat = np.array([[float(r[d]) for d in devices] for r in rows])
    enc = np.zeros((len(rows), 30))
    for i, r in enumerate(rows):
        ops = [item.partition("~")[0] for item in r["arch_str"].replace("+", "").split("|")
               if item]
        for e, op in enumerate(ops):
            enc[i, e * 5 + OPS.index(op)] = 1.0
    return devices, lat, enc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--draws", type=int, default=10)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}")
    print("command: python benchmarks/nb201_latency_transfer.py")
    devices, lat, enc = load()
    lat = np.maximum(lat, 1e-6)  # a guard for log and MAPE (no latency here is 0)
    results: dict[tuple[str, int, str], tuple[float, float]] = {}
    for k in args.samples:
        for d, name in enumerate(devices):
            known = np.delete(lat, d, axis=1)
            per: dict[str, list[tuple[float, float]]] = {"transfer": [], "scratch": []}
            for seed in range(args.draws):
                rows = np.random.default_rng(seed).choice(len(lat), size=k, replace=False)
                for method, model in (("transfer", DeviceTransfer(known)),
                                      ("scratch", FromScratch(enc))):
                    pred = model.fit(rows, lat[rows, d]).predict()
                    per[method].append((spearman(pred, lat[:, d]), mape(pred, lat[:, d])))
            for method, vals in per.items():
                results[name, k, method] = (float(np.mean([v[0] for v in vals])),
                                            float(np.mean([v[1] for v in vals])))
    for k in args.samples:
        print(f"\n### {k} measured architectures ({args.draws} draws)\n")
        print("| device | transfer rho | transfer MAPE % | scratch rho | scratch MAPE % |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name in devices:
            t, s = results[name, k, "transfer"], results[name, k, "scratch"]
            print(f"| {name} | {t[0]:.3f} | {t[1]:.1f} | {s[0]:.3f} | {s[1]:.1f} |")
        for method in ("transfer", "scratch"):
            rho = [results[n, k, method][0] for n in devices]
            err = [results[n, k, method][1] for n in devices]
            print(f"\n{method}, mean over the {len(devices)} devices: rho "
                  f"{statistics.mean(rho):.3f} (std {statistics.stdev(rho):.3f}), MAPE "
                  f"{statistics.mean(err):.1f} % "
                  f"(std {statistics.stdev(err):.1f})")
    print(f"\nload at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
