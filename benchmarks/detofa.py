"""The DetOFA experiment: does classification pre-training, and then path-filter pruning, give a
better AP-vs-FLOPs front than a once-for-all baseline, at equal detection fine-tuning budget?

Three variants per seed, all on the detection defaults of ``examples/detofa.yaml`` (its space,
task, training and evaluator settings), written as one recipe per seed (``nastk recipe``, so a
killed benchmark resumes where it stopped):

- ``ofa``: the classification-pretrained supernet fine-tuned on detection for ``E`` epochs,
  unpruned (the once-for-all baseline);
- ``detofa``: the same pretrained supernet fine-tuned for ``E/2`` epochs, a path filter fitted
  on the weight-sharing AP50 of sampled paths, pruning every FLOPs bucket to ``keep_ratio``,
  then ``E/2`` more epochs on the kept paths only (``E`` epochs in all); the search runs over
  the pruned space;
- ``scratch``: no pre-training, ``E`` epochs unpruned.

Each variant ends with the same NSGA-II search by weight sharing (AP50 on the validation split
vs FLOPs, the same budget). Each front's networks are then scored on the **test** split (batch
norm recalibrated on training batches), and the benchmark prints, over the seeds (mean ± sample
std): the hypervolume of the test front (AP50 x normalised FLOPs, reference point AP50 = 0 and
the largest subnet's FLOPs), the best AP50 of the front, AP50 at matched FLOPs (the best front
point within 25%, 50% and 100% of the way from the smallest to the largest subnet's FLOPs),
and the FLOPs each variant needs to reach the baseline's best AP50 (relative to the baseline's
own).

    python benchmarks/detofa.py                       # 3 seeds, 2 in parallel
    python benchmarks/detofa.py --seeds 0 --epochs 4  # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "detofa.yaml"
VARIANTS = ("ofa", "detofa", "scratch")


def make_recipe(seed: int, epochs: int, trials: int, sample: int, keep_ratio: float,
                out: Path, threads: int) -> dict[str, Any]:
    """One recipe holding the three variants for ``seed``."""
    base = yaml.safe_load(EXAMPLE.read_text())
    defaults = copy.deepcopy(base["defaults"])
    defaults["training"]["num_threads"] = threads
    defaults["evaluator"]["supernet"]["num_threads"] = threads
    stages = {s["name"]: s for s in base["stages"]}
    half = max(1, epochs // 2)
    pretrain = copy.deepcopy(stages["pretrain"])

    def train(name: str, n: int, init: dict[str, Any] | None = None,
              path_filter: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg: dict[str, Any] = {"training": {"epochs": n}}
        if init is not None:
            cfg["training"]["init"] = init
        if path_filter is not None:
            cfg["path_filter"] = path_filter
        return {"name": name, "kind": "supernet_train", "config": cfg}

    def search(name: str, checkpoint: str, path_filter: dict[str, Any] | None = None
               ) -> dict[str, Any]:
        cfg: dict[str, Any] = {"strategy": {"name": "nsga2", "options": {"population": 12}},
                               "evaluator": {"supernet": {"checkpoint": checkpoint}},
                               "budget": {"trials": trials}}
        if path_filter is not None:
            cfg["path_filter"] = path_filter
        return {"name": name, "kind": "search", "config": cfg}

    body = {"from": "${pretrain.checkpoint}", "part": "body"}
    kept = {"file": "${detofa_filter.file}", "keep_ratio": keep_ratio, "n_samples": 200}
    return {
        "name": f"detofa_bench_s{seed}", "run_dir": str(out / f"seed_{seed}"), "seed": seed,
        "defaults": defaults,
        "stages": [
            pretrain,
            train("ofa_supernet", epochs, body),
            search("ofa_search", "${ofa_supernet.checkpoint}"),
            train("scratch_supernet", epochs),
            search("scratch_search", "${scratch_supernet.checkpoint}"),
            train("detofa_supernet", half, body),
            {"name": "detofa_sample", "kind": "search",
             "config": {"strategy": "random", "budget": {"trials": sample},
                        "evaluator": {"supernet": {"checkpoint":
                                                   "${detofa_supernet.checkpoint}"}}}},
            {"name": "detofa_filter", "kind": "path_filter_fit", "run": "${detofa_sample.run_dir}",
             "options": {"cost": "flops", "buckets": 4, "holdout": 0.25}},
            train("detofa_finetune", epochs - half,
                  {"from": "${detofa_supernet.checkpoint}", "part": "all"}, kept),
            search("detofa_search", "${detofa_finetune.checkpoint}", kept),
        ]}


def run_seed(recipe: dict[str, Any], log: Path, redo: str | None = None) -> int:
    path = Path(recipe["run_dir"]).with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as f:
        extra = ["--redo", redo] if redo else []
        return subprocess.call([sys.executable, "-m", "nastk.cli", "recipe", str(path),
                                "--no-progress", *extra], stdout=f, stderr=subprocess.STDOUT,
                               env=env, cwd=ROOT)


# -- analysis -----------------------------------------------------------------------------------
def front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (flops, ap) points no other point dominates (fewer or equal FLOPs and higher or
    equal AP, one strictly), by FLOPs."""
    out = []
    for f, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if not out or a > out[-1][1]:
            out.append((f, a))
    return out


def hypervolume(points: list[tuple[float, float]], ref_flops: float) -> float:
    """Area dominated by a front of (flops, ap) points inside [0, ref_flops] x [0, inf), with
    FLOPs normalised by ``ref_flops`` (reference point: AP 0 at ``ref_flops``)."""
    from nastk.core.pareto import hypervolume as exact

    return exact([(1.0 - f / ref_flops, a) for f, a in points], (0.0, 0.0))


def best_within(points: list[tuple[float, float]], budget: float) -> float:
    inside = [a for f, a in points if f <= budget]
    return max(inside) if inside else math.nan


def flops_to_reach(points: list[tuple[float, float]], target: float) -> float:
    ok = [f for f, a in points if a >= target]
    return min(ok) if ok else math.nan


def test_front(run_dir: Path, checkpoint: Path) -> tuple[list[tuple[float, float]], dict]:
    """The validation front of a search run, re-scored on the test split by weight sharing."""
    from nastk.config.compose import build_space_and_task, build_weight_sharing_evaluator
    from nastk.config.schema import parse_config
    from nastk.run.record import open_run

    record = open_run(run_dir)
    cfg = record.config.model_dump(mode="json")
    cfg["evaluator"]["supernet"]["eval_split"] = "test"
    cfg["evaluator"]["supernet"]["checkpoint"] = str(checkpoint)
    cfg.pop("path_filter", None)
    config = parse_config(cfg, str(run_dir))
    space, task = build_space_and_task(config)
    evaluator = build_weight_sharing_evaluator(config, space, task)
    done = [t for t in record.trials if t.result is not None and t.result.ok]
    val = [(t.result.costs["flops"], t.result.metrics["ap50"], t) for t in done]
    on_front = set(front([(f, a) for f, a, _ in val]))
    points = []
    for f, a, t in val:
        if (f, a) in on_front:
            r = evaluator.evaluate(t.arch)
            points.append((r.costs["flops"], r.metrics["ap50"]))
    extremes = {}
    for name in ("smallest", "largest"):
        arch = getattr(space, name)()
        extremes[name] = evaluator.evaluate(arch).costs["flops"]
    return points, extremes


def analyse(out: Path, seeds: list[int]) -> dict[str, Any]:
    rows: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    fronts: dict[str, Any] = {}
    for seed in seeds:
        base = out / f"seed_{seed}"
        per: dict[str, list[tuple[float, float]]] = {}
        extremes: dict[str, float] = {}
        for v in VARIANTS:
            ckpt = base / ("detofa_finetune" if v == "detofa" else f"{v}_supernet") / "supernet.pt"
            per[v], extremes = test_front(base / f"{v}_search", ckpt)
            fronts[f"{v}_s{seed}"] = per[v]
        lo, hi = extremes["smallest"], extremes["largest"]
        target = max(a for _, a in per["ofa"])
        base_flops = flops_to_reach(per["ofa"], target)
        for v in VARIANTS:
            pts = per[v]
            r = rows[v]
            r.setdefault("hv", []).append(hypervolume(pts, hi))
            r.setdefault("best", []).append(max(a for _, a in pts))
            for q in (0.25, 0.5, 1.0):
                r.setdefault(f"ap@{q}", []).append(best_within(pts, lo + q * (hi - lo)))
            r.setdefault("flops_ratio", []).append(flops_to_reach(pts, target) / base_flops)
            r.setdefault("front_size", []).append(len(pts))
    return {"rows": rows, "fronts": fronts}


def fmt(values: list[float], digits: int = 3) -> str:
    x = np.array(values, dtype=float)
    ok = x[np.isfinite(x)]
    if len(ok) == 0:
        return "not reached"
    miss = f" ({len(x) - len(ok)} not reached)" if len(ok) < len(x) else ""
    sd = f" ± {np.std(ok, ddof=1):.{digits}f}" if len(ok) > 1 else ""
    return f"{np.mean(ok):.{digits}f}{sd}{miss}"


def table(result: dict[str, Any], n: int) -> str:
    rows = result["rows"]
    head = ("| variant | hypervolume | best AP50 | AP50 @ 25% FLOPs | AP50 @ 50% FLOPs | "
            "AP50 @ 100% FLOPs | FLOPs to reach OFA's best AP50 (x OFA's) | front size |")
    lines = [head, "|" + " --- |" * 8]
    for v in VARIANTS:
        r = rows[v]
        lines.append(f"| {v} | {fmt(r['hv'])} | {fmt(r['best'])} | {fmt(r['ap@0.25'])} | "
                     f"{fmt(r['ap@0.5'])} | {fmt(r['ap@1.0'])} | {fmt(r['flops_ratio'], 2)} | "
                     f"{fmt(r['front_size'], 1)} |")
    lines.append(f"\n{n} seeds; mean ± sample std. Hypervolume: AP50 x (1 - FLOPs / largest "
                 "subnet's FLOPs), reference point (AP50 0, the largest subnet's FLOPs).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=8, help="detection fine-tuning epochs (E)")
    p.add_argument("--trials", type=int, default=48, help="NSGA-II trials per variant")
    p.add_argument("--sample", type=int, default=40, help="paths sampled for the path filter")
    p.add_argument("--keep-ratio", type=float, default=0.5)
    p.add_argument("--parallel", type=int, default=2, help="seeds run at once (1 thread each)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_detofa")
    p.add_argument("--redo", default=None, metavar="STAGE",
                   help="run STAGE and every later one again (e.g. detofa_sample after changing "
                        "--sample; the baselines, which come first, are kept)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = 1 if args.parallel > 1 else 2
    t0 = time.time()
    recipes = [make_recipe(s, args.epochs, args.trials, args.sample, args.keep_ratio, args.out,
                           threads) for s in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        codes = list(pool.map(lambda r: run_seed(r, args.out / f"{r['name']}.log", args.redo),
                              recipes))
    if any(codes):
        print(f"a recipe failed (exit codes {codes}); see the logs in {args.out}")
        return 1
    result = analyse(args.out, args.seeds)
    (args.out / f"result_sample{args.sample}.json").write_text(
        json.dumps(result, indent=1, default=float))
    print(table(result, len(args.seeds)))
    print(f"\nwall time {time.time() - t0:.0f} s; E = {args.epochs} epochs, {args.trials} "
          f"NSGA-II trials, {args.sample} sampled paths, keep_ratio {args.keep_ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
