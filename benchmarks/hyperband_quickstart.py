"""Hyperband against full training on the quickstart's space and task, for equal wall time.

For each seed: the quickstart search as it ships (regularized evolution, 24 candidates, each
trained 6 epochs) runs first and takes T seconds; then the same strategy, seed and executor
(this process) under Hyperband (rungs 1, 3, 6 epochs; eta 3; sync brackets) with a time budget
of T. The objective is accuracy alone for both (the quickstart also reports FLOPs; here
promotion ranks by accuracy). A candidate trained under Hyperband to 6 epochs trains exactly
as under full training (the train evaluator continues from its partial training bit for bit),
so "best stand-alone accuracy" is the best validation accuracy among candidates trained the
full 6 epochs. Printed per seed: the best reached by each, and the time each took to reach the
full-training run's final best (Hyperband: None if it did not within T).

    python benchmarks/hyperband_quickstart.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from nastk.config.schema import load_config
from nastk.pipelines.search import run_search_config
from nastk.run.sqlite_store import RunStore

ROOT = Path(__file__).resolve().parent.parent
FULL_EPOCHS = 6.0


def curve(run_dir: Path) -> tuple[list[tuple[float, float]], float]:
    """``[(seconds since the run started, best full-training accuracy so far)]`` and the
    run's wall time (first start to last finish)."""
    store = RunStore.open_existing(run_dir)
    trials = store.trials()
    store.close()
    t0 = min(t.started for t in trials)
    t_end = max(t.finished or t.started for t in trials)
    best, out = -1.0, []
    for t in sorted((t for t in trials if t.finished), key=lambda t: t.finished):
        if t.result is None or not t.result.ok:
            continue
        if float(t.result.info.get("resource", FULL_EPOCHS)) < FULL_EPOCHS:
            continue  # trained less than the full budget: not a stand-alone accuracy
        acc = t.result.metrics["accuracy"]
        if acc > best:
            best = acc
            out.append((t.finished - t0, best))
    return out, t_end - t0


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, v in points if v >= target - 1e-12), None)


def run(seed: int, scratch: Path) -> dict[str, Any]:
    base = load_config(ROOT / "examples" / "quickstart.yaml").model_dump(mode="json")
    base["seed"] = seed
    base["objective"]["costs"] = []
    full_cfg = {**base, "run_dir": str(scratch / f"full_{seed}"), "name": f"full_{seed}"}
    from nastk.config.schema import parse_config

    run_search_config(parse_config(full_cfg), progress=False)
    full_pts, wall = curve(scratch / f"full_{seed}")
    hb_cfg = {**base, "run_dir": str(scratch / f"hb_{seed}"), "name": f"hb_{seed}",
              "scheduler": {"kind": "hyperband", "reduction_factor": 3},
              "budget": {"trials": 10_000, "time_s": wall}}
    run_search_config(parse_config(hb_cfg), progress=False)
    hb_pts, hb_wall = curve(scratch / f"hb_{seed}")
    target = full_pts[-1][1]
    return {"seed": seed, "wall_full_s": wall, "wall_hb_s": hb_wall,
            "best_full": target, "best_hb": hb_pts[-1][1] if hb_pts else None,
            "t_full_to_best": time_to(full_pts, target), "t_hb_to_best": time_to(hb_pts, target),
            "full_curve": full_pts, "hb_curve": hb_pts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print("command: python benchmarks/hyperband_quickstart.py --seeds "
          + " ".join(map(str, args.seeds)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="nastk-hb-") as tmp:
        for seed in args.seeds:
            r = run(seed, Path(tmp))
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if not k.endswith("curve")}),
                  flush=True)
    print("\n| seed | full training: best acc, time to it (s) | Hyperband: best acc | "
          "Hyperband: time to full's best (s) | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    ratios = []
    for r in rows:
        t_hb = r["t_hb_to_best"]
        ratio = r["t_full_to_best"] / t_hb if t_hb else None
        if ratio is not None:
            ratios.append(ratio)
        print(f"| {r['seed']} | {r['best_full']:.4f}, {r['t_full_to_best']:.0f} | "
              f"{r['best_hb']:.4f} | {'not reached' if t_hb is None else f'{t_hb:.0f}'} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} |")
    if len(ratios) > 1:
        print(f"\nspeed-up where reached: mean {statistics.mean(ratios):.2f}x, sample std "
              f"{statistics.stdev(ratios):.2f}, {len(ratios)} of {len(rows)} seeds")
    print(f"load at end {os.getloadavg()[0]:.1f}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
