"""Table-predicted against measured latency on this machine for ``ofa_mbv3`` (once-for-all's
MobileNetV3 plan, ``OFA_MBV3_OPTIONS``, with a pooling + 1000-class linear head) at two input
resolutions.

For each resolution: ``nastk.latency.profile`` times every unit (stem, each MBConv block
choice at its input size, final conv) and 20 whole networks (the smallest, the largest and 18
random ones, seed 0) for the correction, and, in the same interleaved rounds, 50 other random
architectures (seed 1), which the table then predicts: the table against networks measured
under the conditions it was profiled in. The 50 are then timed again, in two more batches one
after the other ("later": the fastest of the two), which shows how far this shared machine
drifts in a few minutes, and the two later batches' agreement (test-retest). Printed:
Spearman's rho and the mean absolute percentage error (MAPE) of the prediction, the coverage of
its 90 % intervals, the same for the plain table sum and for a FLOPs proxy (a line fitted from
FLOPs to latency on the same 20 networks), and the time to predict one architecture against the
time to measure one.

    python benchmarks/ofa_latency_table.py [--resolutions 160 224] [--backend cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import spearmanr
from torch import nn

from nastk.evaluation.cost import count_flops
from nastk.latency.backends import make_backend
from nastk.latency.predictor import LatencyPredictor
from nastk.latency.profile import profile_alongside, whole_networks
from nastk.search_spaces.ofa_mbv3 import OFA_MBV3_OPTIONS, OFAMobileNetV3Space

#: the 50 test networks are timed again this many times afterwards, batch after batch
BATCHES = 2


def model_of(space: OFAMobileNetV3Space, arch: object) -> nn.Module:
    """The body of ``arch`` with a classification head (pooling, linear to 1000 classes)."""
    body = space.build(arch, 3)
    return nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(body.out_channels, 1000)).eval()


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / true) * 100.0)


def one_resolution(res: int, backend_name: str, threads: object, n_test: int,
                   networks: int) -> dict[str, object]:
    space = OFAMobileNetV3Space(**OFA_MBV3_OPTIONS)
    shape = (3, res, res)
    backend = make_backend(backend_name, threads, repeats=20, warmup=5)
    rng = np.random.default_rng(1)
    fitted = {a.key for a in whole_networks(space, networks, seed=0)}
    test = []
    while len(test) < n_test:
        arch = space.sample(rng)
        if arch.key not in fitted and arch.key not in {a.key for a in test}:
            test.append(arch)
    models = [model_of(space, a) for a in test]
    t0 = time.perf_counter()
    # the test networks timed in the profile's own rounds: the table against networks measured
    # under the conditions it was profiled in
    table, together = profile_alongside(space, shape, lambda a: model_of(space, a), backend,
                                        alongside=[(m, shape) for m in models],
                                        networks=networks, seed=0)
    profile_s = time.perf_counter() - t0
    predictor = LatencyPredictor(table, space, shape)
    batches = []
    t = time.perf_counter()
    for _ in range(BATCHES):  # the same networks timed again afterwards, batch after batch
        batches.append([m.ms for m in backend.measure_all([(m, shape) for m in models])])
    measure_s = (time.perf_counter() - t) / (BATCHES * len(test))
    first, second = np.array(batches[0]), np.array(batches[1])
    later = np.min(np.array(batches), axis=0)
    y = np.array([m.ms for m in together])
    preds = [predictor.predict(a) for a in test]
    pred = np.array([p.ms for p in preds])
    raw = np.array([p.table_ms for p in preds])

    def coverage(ref: np.ndarray) -> float:
        return float(np.mean([p.low <= m <= p.high for p, m in zip(preds, ref, strict=True)]))

    # the FLOPs proxy: a line from FLOPs to latency fitted on the table's 20 networks
    fit_flops = [count_flops(model_of(space, space.validate(n.arch)), shape)
                 for n in table.networks]
    coef = np.polyfit(fit_flops, [n.measured_ms for n in table.networks], 1)
    flops = np.array([count_flops(model_of(space, a), shape) for a in test])
    proxy = np.polyval(coef, flops)
    reps = 200
    t = time.perf_counter()
    for _ in range(reps):
        for a in test:
            predictor.predict(a)
    predict_s = (time.perf_counter() - t) / (reps * len(test))
    return {
        "resolution": res, "backend": backend_name, "threads": backend.threads,
        "units": len(table.units), "networks": len(table.networks),
        "profile_s": profile_s, "loo_mape": table.correction.loo_mape,
        "measured_ms_range": [float(y.min()), float(y.max())],
        "rho": float(spearmanr(pred, y).statistic), "mape": mape(pred, y),
        "coverage": coverage(y),
        "rho_later": float(spearmanr(pred, later).statistic), "mape_later": mape(pred, later),
        "coverage_later": coverage(later),
        "drift": mape(later, y), "rho_drift": float(spearmanr(later, y).statistic),
        "retest_rho": float(spearmanr(first, second).statistic),
        "retest_diff": mape(first, second),
        "rho_table_sum": float(spearmanr(raw, y).statistic), "mape_table_sum": mape(raw, y),
        "rho_flops": float(spearmanr(flops, y).statistic), "mape_flops": mape(proxy, y),
        "predict_us": predict_s * 1e6, "measure_s": measure_s,
        "speedup": measure_s / predict_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[160, 224])
    parser.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "onnxruntime"])
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    threads = args.threads if args.threads == "auto" else int(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    rows = []
    for res in args.resolutions:
        r = one_resolution(res, args.backend, threads, args.test, args.networks)
        rows.append(r)
        print(json.dumps(r))
    print("\n| input | units | rho | MAPE | 90 % coverage | timed later: rho / MAPE / "
          "coverage | later vs same rounds: rho / diff | later retest: rho / diff | table sum "
          "rho / MAPE | FLOPs proxy rho / MAPE | measured ms | predict | measure | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: |")
    for r in rows:
        lo, hi = r["measured_ms_range"]
        print(f"| {r['resolution']}x{r['resolution']} ({r['backend']}, {r['threads']} "
              f"threads) | {r['units']} | {r['rho']:.3f} | {r['mape']:.1f} % | "
              f"{r['coverage'] * 100:.0f} % | {r['rho_later']:.3f} / {r['mape_later']:.1f} % / "
              f"{r['coverage_later'] * 100:.0f} % | {r['rho_drift']:.3f} / {r['drift']:.1f} % | "
              f"{r['retest_rho']:.3f} / {r['retest_diff']:.1f} % | {r['rho_table_sum']:.3f} / "
              f"{r['mape_table_sum']:.1f} % | {r['rho_flops']:.3f} / {r['mape_flops']:.1f} % | "
              f"{lo:.1f}-{hi:.1f} | {r['predict_us']:.0f} us | {r['measure_s']:.2f} s | "
              f"{r['speedup']:,.0f}x |")
    print(f"\nafter: load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
