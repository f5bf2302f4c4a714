"""Supernet training throughput on 1 and 2 data-parallel workers (Ray Train, CPU).

Trains the same compute-bound supernet (an ofa_mbv3 on 24x24 synthetic shapes, sandwich of
largest + smallest + 1 random subnet per step, one torch thread per worker) with the same
global batch on 1 worker and on N workers, each for ``--epochs`` epochs, and reads the
training throughput of the last epoch from the run's history (``images_per_s``: images of all
workers per second of training steps; evaluation and start-up excluded). The worker counts
run alternately ``--repeats`` times in one process, so the ratio compares like with like on
this machine. A 1-worker run in this process (no Ray) is the reference a user would
otherwise have.

    python benchmarks/supernet_scaling.py                  # 1 and 2 workers, 3 repeats
    python benchmarks/supernet_scaling.py --workers 1 2 --repeats 5 --epochs 3
    python benchmarks/supernet_scaling.py --sync-batchnorm --no-local  # global-batch BN

Target (issue 18): 2 workers at least 1.6x one worker on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 1.6


def supernet_config(run_dir: Path, workers: int, args: argparse.Namespace,
                    on_ray: bool) -> Any:
    from nastk.config.schema import SupernetConfig, parse_config

    train_images = args.steps * args.batch
    n_samples = round(train_images / 0.6) + 2  # the task keeps 60% for training
    data = {
        "name": "scaling", "run_dir": str(run_dir), "seed": 0,
        "space": {"name": "ofa_mbv3",
                  "options": {"stages": [16, 24, 32, 48, 64], "final_channels": 256}},
        "task": {"name": "classification",
                 "options": {"dataset": "synthetic", "n_samples": n_samples,
                             "image_size": args.image_size, "num_classes": 6}},
        "training": {"epochs": args.epochs, "batch_size": args.batch, "n_random": 1,
                     "bn_calib_batches": 1, "num_threads": 1, "workers": workers,
                     "sync_batchnorm": args.sync_batchnorm},
        "executor": {"kind": "ray" if on_ray else "local"},
    }
    return parse_config(data, "supernet_scaling", SupernetConfig)


def measure(run_dir: Path, workers: int, args: argparse.Namespace, on_ray: bool) -> dict:
    from nastk.cli.commands.supernet_train import train_supernet

    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = supernet_config(run_dir, workers, args, on_ray)
    started = time.perf_counter()
    outcome = train_supernet(cfg, progress=False)
    last = outcome.history[-1]
    return {"workers": workers, "ray": on_ray, "images_per_s": last["images_per_s"],
            "train_s": last["train_s"], "wall_s": time.perf_counter() - started,
            "epochs": len(outcome.history)}


def summary(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2, help="per run; the last one is measured")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per epoch")
    p.add_argument("--batch", type=int, default=64, help="global batch (all workers)")
    p.add_argument("--image-size", type=int, default=24)
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="training.sync_batchnorm true: batch norm over the global batch (one "
                        "all-reduce per layer and pass); default: each worker its shard")
    p.add_argument("--no-local", action="store_true",
                   help="skip the 1-worker run in this process")
    p.add_argument("--out", type=Path, default=Path("runs/supernet_scaling"))
    args = p.parse_args(argv)

    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    rows: list[dict] = []
    try:
        for rep in range(args.repeats):
            order = args.workers if rep % 2 == 0 else list(reversed(args.workers))
            plan = [(n, True) for n in order]
            if not args.no_local:
                plan.append((1, False))
            for n, on_ray in plan:
                row = measure(args.out / f"w{n}{'' if on_ray else '_local'}", n, args, on_ray)
                row["repeat"] = rep
                rows.append(row)
                print(f"repeat {rep}: {n} worker(s){'' if on_ray else ' in-process'}: "
                      f"{row['images_per_s']:.2f} images/s (epoch {row['epochs']}, "
                      f"{row['train_s']:.1f} s of steps, {row['wall_s']:.0f} s in all)",
                      flush=True)
    finally:
        ray.shutdown()

    def speeds(n: int, on_ray: bool = True) -> list[float]:
        return [r["images_per_s"] for r in rows if r["workers"] == n and r["ray"] == on_ray]

    base = speeds(1)
    print(f"\nsupernet_scaling: ofa_mbv3 [16,24,32,48,64] on {args.image_size}x"
          f"{args.image_size} shapes, global batch {args.batch}, {args.steps} steps/epoch, "
          f"{args.repeats} repeats (mean ± sample std), 1 torch thread per worker, batch norm "
          f"{'over the global batch' if args.sync_batchnorm else 'per worker shard'}")
    print(f"{'workers':>8} {'images/s':>14} {'x 1 worker':>14}")
    result: dict[str, Any] = {"rows": rows, "config": vars(args) | {"out": str(args.out)}}
    for n in args.workers:
        mine = speeds(n)
        ratios = [a / b for a, b in zip(mine, base, strict=False)]
        print(f"{n:>8} {summary(mine):>14} {summary(ratios):>14}")
        result[f"ratio_{n}"] = ratios
    if not args.no_local:
        local = speeds(1, on_ray=False)
        ratios = [a / b for a, b in zip(local, base, strict=False)]
        print(f"{'1 local':>8} {summary(local):>14} {summary(ratios):>14}")
    if 2 in args.workers and base:
        mean2 = statistics.mean(result["ratio_2"])
        verdict = "met" if mean2 >= TARGET else f"missed by {TARGET - mean2:.2f}"
        print(f"target: 2 workers >= {TARGET}x one worker: {mean2:.2f}x, {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
