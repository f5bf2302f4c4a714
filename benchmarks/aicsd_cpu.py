"""AICSD at CPU scale: a DeepLabV3+ MobileNetV2 student distilled from a DeepLabV3+ ResNet-18
teacher on the synthetic segmentation scenes with the method's terms (ICSD + pixel KD +
pairwise ASPP-to-ASPP distillation), its adaptive weighting (``alw: {schedule: aicsd}``) and
``reference_scale: aicsd``, against the same student trained with cross-entropy only (the
``nastk distill`` baseline: same seeds, initial weights and data order). Runs ``nastk distill``
on a generated config in a folder (the teacher is trained once there and reused), then prints
test (and val) mIoU per seed, mean ± sample std and a paired t-test over the seeds of the
per-seed difference (AICSD minus CE only).

    python benchmarks/aicsd_cpu.py [--seeds 0 1 2] [--epochs 4] [--teacher-epochs 6]
        [--size 32] [--pairwise 9500] [--pixel-kd 10] [--icsd 1] [--work DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from nastk.cli.main import main as nastk_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from saliency_self_kd import paired_t

TASK = {"dataset": "synthetic", "n_samples": 600, "num_classes": 5, "head": "deeplabv3plus",
        "head_channels": 32}
SPACE = {"name": "backbones", "options": {"output_stride": 8}}


def config(work: Path, args: argparse.Namespace) -> dict:
    train = {"epochs": args.epochs, "batch_size": 16, "optimizer": "sgd", "lr": args.lr,
             "lr_schedule": "poly", "momentum": 0.9, "weight_decay": 0.0005, "latency": False}
    return {
        "name": "aicsd_cpu", "run_dir": str(work / "run"),
        "task": {"name": "segmentation", "options": {**TASK, "size": args.size}},
        "student": {"space": SPACE, "arch": {"body": "mobilenet_v2"}},
        "teacher": {"space": SPACE, "arch": {"body": "resnet18"},
                    "checkpoint": str(work / "teacher.pt"),
                    "train": {**train, "epochs": args.teacher_epochs}},
        "losses": {"pairwise": args.pairwise, "pixel_kd": args.pixel_kd, "icsd": args.icsd},
        "pairwise": {"student": "aspp", "teacher": "aspp", "pool_scale": 0.5},
        "reference_scale": "aicsd",
        "alw": {"schedule": "aicsd", "with_gt": ["icsd"], "fading": ["pixel_kd"]},
        "train": train,
        "seeds": args.seeds, "splits": ["val", "test"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=32, help="scene side in pixels")
    parser.add_argument("--pairwise", type=float, default=9500.0)
    parser.add_argument("--pixel-kd", type=float, default=10.0)
    parser.add_argument("--icsd", type=float, default=1.0)
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the teacher and the run (default: a temporary one); "
                             "an existing teacher.pt there is reused")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aicsd_cpu_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        path = work / "aicsd_cpu.yaml"
        path.write_text(yaml.safe_dump(config(work, args), sort_keys=False))
        t0 = time.perf_counter()
        rc = nastk_main(["distill", str(path), "--no-progress", "--overwrite"])
        if rc:
            raise SystemExit(rc)
        record = json.loads((work / "run" / "distill.json").read_text())
    elapsed = time.perf_counter() - t0
    metric = record["metric"]
    print("\nteacher: " + ", ".join(f"{s} {v[metric]:.4f}" for s, v in record["teacher"].items()))
    for r in record["runs"]:
        terms = {k: round(v, 4) for k, v in (r.get("train_loss_terms") or {}).items()}
        print(f"seed {r['seed']} {r['mode']}: " + ", ".join(
            f"{s} {v[metric]:.4f}" for s, v in r["scores"].items()) + f"; loss terms {terms}")
    print(f"\n{len(args.seeds)} seeds {args.seeds}, student {args.epochs} epochs, {elapsed:.0f} s;"
          f" {metric}, mean ± sample std; paired differences AICSD minus CE only, "
          f"t (dof {len(args.seeds) - 1}), two-sided p")
    header = ["split", "CE only", "AICSD", "per-seed AICSD − CE", "mean diff ± std", "t", "p"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
    for split in ("test", "val"):
        by_seed = {(r["seed"], r["mode"]): r["scores"][split][metric] for r in record["runs"]}
        ce = [by_seed[(s, "baseline")] for s in args.seeds]
        kd = [by_seed[(s, "kd")] for s in args.seeds]
        mean, sd, t, p = paired_t(ce, kd)
        sd_ce = statistics.stdev(ce) if len(ce) > 1 else 0.0
        sd_kd = statistics.stdev(kd) if len(kd) > 1 else 0.0
        cells = [split, f"{statistics.fmean(ce):.4f} ± {sd_ce:.4f}",
                 f"{statistics.fmean(kd):.4f} ± {sd_kd:.4f}",
                 ", ".join(f"{y - x:+.4f}" for x, y in zip(ce, kd, strict=True)),
                 f"{mean:+.4f} ± {sd:.4f}", f"{t:.2f}", f"{p:.3f}"]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
