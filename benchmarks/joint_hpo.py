"""Joint architecture + learning-rate search against architecture-only search (issue 33, item 4).

On the quickstart's task (classification, generated 16-class ``glyphs``) and the conditional
``small_cnn_flex`` space (depth 1-4 blocks, each block's width, kernel and expansion active only
below the depth), for each seed, two searches through the real pipeline
(:func:`nastk.pipelines.search.run_search_config` on ``examples/joint_search.yaml``, each in its
own temporary run folder), same strategy (regularized evolution, population 8, sample size 3),
same seed, same number of trials and epochs per candidate:

* joint: the space with its hyperparameter dimensions, ``lr`` in [1e-4, 3e-2] and
  ``weight_decay`` in [1e-6, 1e-2] (both log scale), each candidate trained with its own;
* architecture-only: ``hyperparameters: false``, every candidate trained with the quickstart's
  optimiser settings (adam, lr 0.005, weight decay 0).

Scored: the best validation accuracy among each search's trials. Printed: one row per seed,
mean and sample standard deviation of each, the paired differences (joint - architecture-only),
a Wilcoxon signed-rank test and a paired t-test on them (two-sided). Both arms skip the latency
measurement and the FLOPs cost (neither affects the accuracy); the runs of one seed go one
after the other, the arm that goes first alternating with the seed.

    python benchmarks/joint_hpo.py --seeds 0 1 2 3 4 5 6 7 --trials 16 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scipy import stats

from nastk.config.schema import load_config, parse_config
from nastk.pipelines.search import run_search_config
from nastk.run.sqlite_store import RunStore

ROOT = Path(__file__).resolve().parent.parent
ARMS = ("joint", "arch_only")


def config(arm: str, seed: int, trials: int, epochs: int, run_dir: Path) -> Any:
    """The joint_search example with the arm's space options, seed, budget and run folder."""
    data = load_config(ROOT / "examples" / "joint_search.yaml").model_dump(mode="json")
    data.update(name=f"{arm}_{seed}", run_dir=str(run_dir), seed=seed)
    data["space"]["options"] = {"hyperparameters": arm == "joint"}
    data["objective"]["costs"] = []
    train = data["evaluator"]["train"]
    train.update(epochs=epochs, latency=False, optimizer="adam", lr=0.005, weight_decay=0.0)
    data["budget"] = {"trials": trials}
    return parse_config(data)


def best_of(run_dir: Path) -> dict[str, Any]:
    """The run's best validation accuracy, its trial, architecture and training settings."""
    store = RunStore.open_existing(run_dir)
    trials = store.trials()
    store.close()
    done = [t for t in trials if t.result is not None and t.result.ok]
    best = max(done, key=lambda t: t.result.metrics["accuracy"])
    return {"best": float(best.result.metrics["accuracy"]), "trials": len(trials),
            "failed": len(trials) - len(done), "arch": dict(best.arch),
            "hyperparameters": best.result.info.get("hyperparameters", {})}


def run(arm: str, seed: int, trials: int, epochs: int, scratch: Path) -> dict[str, Any]:
    run_dir = scratch / f"{arm}_{seed}"
    t0 = time.perf_counter()
    run_search_config(config(arm, seed, trials, epochs, run_dir), progress=False)
    return {"arm": arm, "seed": seed, "wall_s": time.perf_counter() - t0, **best_of(run_dir)}


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The table, the means and the paired tests, as markdown lines."""
    by = {(r["arm"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    joint = [by["joint", s]["best"] for s in seeds]
    arch = [by["arch_only", s]["best"] for s in seeds]
    diffs = [a - b for a, b in zip(joint, arch, strict=True)]
    out = ["| seed | joint: best val acc | its lr, weight decay | architecture-only: best val "
           "acc | difference (joint - arch) | wall s (joint, arch) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for s, j, a, d in zip(seeds, joint, arch, diffs, strict=True):
        hp = by["joint", s]["hyperparameters"]
        out.append(f"| {s} | {j:.4f} | {hp.get('lr', float('nan')):.3g}, "
                   f"{hp.get('weight_decay', float('nan')):.3g} | {a:.4f} | {d:+.4f} | "
                   f"{by['joint', s]['wall_s']:.0f}, {by['arch_only', s]['wall_s']:.0f} |")

    def ms(xs: list[float]) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
        return f"{statistics.mean(xs):.4f} ± {sd:.4f}"

    out += ["", f"joint:             {ms(joint)} (mean ± sample std, {len(seeds)} seeds)",
            f"architecture-only: {ms(arch)}",
            f"paired difference: {ms(diffs)}; joint better on "
            f"{sum(d > 0 for d in diffs)}, worse on {sum(d < 0 for d in diffs)}, tied on "
            f"{sum(d == 0 for d in diffs)} of {len(diffs)} seeds"]
    if len(seeds) > 1 and any(d != 0 for d in diffs):
        w = stats.wilcoxon(joint, arch)
        t = stats.ttest_rel(joint, arch)
        out.append(f"Wilcoxon signed-rank (two-sided): W = {w.statistic:g}, p = {w.pvalue:.4g}")
        out.append(f"paired t-test (two-sided): t = {t.statistic:.3f}, p = {t.pvalue:.4g}")
    else:
        out.append("paired tests: not computed (fewer than 2 seeds or all differences zero)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--trials", type=int, default=16, help="candidates per search")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs per candidate")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"python {sys.version.split()[0]}")
    print(f"command: python benchmarks/joint_hpo.py --seeds {' '.join(map(str, args.seeds))} "
          f"--trials {args.trials} --epochs {args.epochs}", flush=True)
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nastk-joint-") as tmp:
        for i, seed in enumerate(args.seeds):
            for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):
                r = run(arm, seed, args.trials, args.epochs, Path(tmp))
                rows.append(r)
                print(json.dumps(r), flush=True)
    print()
    print("\n".join(summary(rows)))
    print(f"\ntotal wall {time.perf_counter() - t0:.0f} s, load at end "
          f"{os.getloadavg()[0]:.2f}")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
