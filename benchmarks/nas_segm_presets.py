"""nas-segm as published against our preset: the RL searches of examples/nas_segm_paper.yaml
(the paper's operations, controller preset and inner loop) and examples/segmentation_rl.yaml
(ours), same seeds, same number of candidates, each into a temporary folder; compared by the
best reward found (nas-segm's ``score`` on ``val``) and the mean reward of the last third of
the candidates, mean ± sample std over the seeds and a paired t-test over the seeds of the
per-seed difference (paper minus ours).

    python benchmarks/nas_segm_presets.py [--seeds 0 1 2] [--trials 24] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from nastk.config.schema import load_config, parse_config
from nastk.core.result import Status
from nastk.pipelines.search import run_search_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from saliency_self_kd import paired_t

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"ours": "segmentation_rl.yaml", "paper": "nas_segm_paper.yaml"}


def search(example: str, seed: int, trials: int, run_dir: Path) -> dict[str, float]:
    config = load_config(ROOT / "examples" / example)
    config = parse_config({**config.model_dump(), "seed": seed, "run_dir": run_dir,
                           "budget": {**config.budget.model_dump(), "trials": trials}},
                          ROOT / "examples" / example)
    t0 = time.perf_counter()
    outcome = run_search_config(config, console=Console(quiet=True), progress=False)
    elapsed = time.perf_counter() - t0
    trials_ = sorted(outcome.trials, key=lambda t: t.id)
    rewards = [t.result.metrics["score"] if t.status == Status.COMPLETE and t.result else None
               for t in trials_]
    ok = [r for r in rewards if r is not None]
    last = [r for r in rewards[len(rewards) - max(1, len(rewards) // 3):] if r is not None]
    return {"best": max(ok), "last_third": statistics.fmean(last) if last else float("nan"),
            "n": len(rewards), "failed": len(rewards) - len(ok), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=24,
                        help="candidates per search, the same for both presets")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in PRESETS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nas_segm_presets_") as tmp:
        for seed in args.seeds:
            for name, example in PRESETS.items():
                res = search(example, seed, args.trials, Path(tmp) / f"{name}_{seed}")
                results[name].append(res)
                print(f"seed {seed} {name}: best {res['best']:.4f}, last third "
                      f"{res['last_third']:.4f}, {res['n']} candidates ({res['failed']} failed),"
                      f" {res['seconds']:.0f} s", flush=True)
    print(f"\n{len(args.seeds)} seeds {args.seeds}, {args.trials} candidates per search, "
          f"{time.perf_counter() - t0:.0f} s; mean ± sample std; paired differences paper "
          "minus ours, t (dof {}), two-sided p".format(len(args.seeds) - 1))
    header = ["reward", "ours", "paper", "per-seed paper − ours", "mean diff ± std", "t", "p"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
    for key in ("best", "last_third", "seconds"):
        ours = [r[key] for r in results["ours"]]
        paper = [r[key] for r in results["paper"]]
        mean, sd, t, p = paired_t(ours, paper)
        fmt = "{:.1f}" if key == "seconds" else "{:.4f}"
        cells = [key, f"{fmt.format(statistics.fmean(ours))} ± "
                      f"{fmt.format(statistics.stdev(ours))}",
                 f"{fmt.format(statistics.fmean(paper))} ± "
                 f"{fmt.format(statistics.stdev(paper))}",
                 ", ".join(("{:+.1f}" if key == "seconds" else "{:+.4f}").format(y - x)
                           for x, y in zip(ours, paper, strict=True)),
                 f"{fmt.format(mean)} ± {fmt.format(sd)}", f"{t:.2f}", f"{p:.3f}"]
        print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
