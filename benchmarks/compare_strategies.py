"""Compare search strategies on NAS-Bench-201 against the published numbers.

Every strategy gets the same budget of distinct queries. The search signal is the 12-epoch
validation accuracy; the figure reported is the 200-epoch test accuracy of the incumbent (the
best architecture by that signal), as in the NAS-Bench-201 paper. Prints, per dataset, the final
test accuracy (mean +- std over seeds) beside the published figure, the regret (optimum - test
accuracy of the incumbent) along the search, and how many queries each strategy needs to reach
the published regularized-evolution accuracy; writes regret-curve plots and a JSON file.

The paper gave its searchers a simulated training-time budget, not a number of queries, so the
published figures are compared with ours only at a *calibrated* budget: from the table's order
statistics, the exact expected test accuracy of random search's incumbent after n distinct
queries (:func:`nastk.run.tabular.expected_random_incumbent`), and the smallest n at which it
reaches the published random-search mean (93 / 83 / 72 queries for CIFAR-10 / CIFAR-100 /
ImageNet16-120). Every search runs to the larger of ``--budget`` and that n; the table at the
calibrated budget carries the published figures and random search's exact expectation, the
table at ``--budget`` carries ours only. Standard deviations are sample ones (ddof 1). Each
table also gives a search's CPU seconds (the process's, strategy and table look-ups together,
one thread) and its proposals of already-evaluated architectures per query.

    python benchmarks/compare_strategies.py                       # 3 datasets x 6 strategies
    python benchmarks/compare_strategies.py --seeds 5 --datasets cifar10 --strategies random rea

Needs the tables in ../shared/data/nasbench201-tables (or $NASTK_NB201_DIR).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# published test accuracies (mean +- std), NAS-Bench-201 paper (Dong & Yang, ICLR 2020), Table 5
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "cifar10": {"random": (93.70, 0.36), "reinforce": (93.85, 0.37), "rea": (93.92, 0.30)},
    "cifar100": {"random": (71.04, 1.07), "reinforce": (71.71, 1.09), "rea": (71.84, 0.99)},
    "ImageNet16-120": {"random": (44.57, 1.25), "reinforce": (45.24, 1.18),
                       "rea": (45.54, 1.03)},
}
OPTIMUM = {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}

EVO = {"population": 10, "sample_size": 3}
#: name -> (registered strategy, options, objective costs)
STRATEGIES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "random": ("random", {}, ()),
    "rea": ("evolution", EVO, ()),
    "reinforce": ("rl", {"algorithm": "reinforce"}, ()),
    "nsga2": ("nsga2", {}, ("flops",)),
    "predictor_guided": ("predictor_guided", {"inner_options": EVO}, ()),
    "path_filter": ("path_filter_search", {"warmup": 30, "keep_ratio": 0.25,
                                           "inner_options": EVO}, ()),
}
CHECKPOINTS = (10, 25, 50, 100, 150, 200, 300)


def run_one(dataset: str, name: str, seed: int, budget: int) -> dict[str, Any]:
    """One search; returns the incumbent's test accuracy after every query."""
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.tabular import run_tabular
    from nastk.search_spaces.nb201 import NB201Evaluator

    strategy_name, options, costs = STRATEGIES[name]
    evaluator = NB201Evaluator(dataset)
    objective = Objective(metric=evaluator.SEARCH_METRIC, costs=costs)
    strategy = registry.instantiate(registry.STRATEGIES, strategy_name, options,
                                    evaluator.bench.space, objective, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    traj = run_tabular(strategy, evaluator, objective, budget, evaluator.REPORT_METRIC)
    cpu = time.process_time() - c0
    curve = list(traj.incumbent_report)
    # a strategy that converged (1000 repeated proposals in a row) stops early: its incumbent
    # stays what it is for the rest of the budget
    curve += curve[-1:] * (budget - len(curve))
    return {"dataset": dataset, "strategy": name, "seed": seed, "incumbent_test": curve,
            "queries": traj.queries, "seconds": time.perf_counter() - t0, "cpu_s": cpu,
            "repeats": traj.duplicates}


def summarize(runs: list[dict[str, Any]], dataset: str, budget: int) -> list[dict[str, Any]]:
    """Per strategy, the figures after the first ``budget`` queries of each search."""
    from nastk.run.tabular import first_reach

    rows = []
    target = PUBLISHED[dataset]["rea"][0]
    for name in STRATEGIES:
        mine = [r for r in runs if r["dataset"] == dataset and r["strategy"] == name]
        if not mine:
            continue
        curves = np.array([r["incumbent_test"][:budget] for r in mine], dtype=float)
        finals = curves[:, -1]
        reach = [first_reach(list(c), target) for c in curves]
        censored = np.array([budget + 1 if q is None else q for q in reach], dtype=float)
        regret = OPTIMUM[dataset] - curves
        rows.append({
            "strategy": name, "seeds": len(mine), "mean": float(finals.mean()),
            "std": float(finals.std(ddof=1)) if len(finals) > 1 else math.nan,
            "published": PUBLISHED[dataset].get(name),
            "regret": float(OPTIMUM[dataset] - finals.mean()),
            "regret_at": {c: float(regret[:, c - 1].mean()) for c in CHECKPOINTS if c <= budget},
            "reached": int(sum(q is not None for q in reach)),
            "median_queries_to_rea": float(np.median(censored)),
            "mean_queries_to_rea": float(censored.mean()),
            "mean_regret_curve": regret.mean(axis=0).tolist(),
            "seconds": float(np.mean([r["seconds"] for r in mine])),
            "cpu_s": float(np.mean([r.get("cpu_s", math.nan) for r in mine])),
            # proposals of architectures already evaluated, over the whole search
            "repeats_per_query": float(np.mean([r.get("repeats", math.nan) / r["queries"]
                                                for r in mine])),
            "stopped_early": int(sum(r["queries"] < budget for r in mine)),
            "budget": budget,
        })
    return rows


def print_table(dataset: str, rows: list[dict[str, Any]], budget: int,
                expected_random: float | None = None) -> None:
    """The table at ``budget`` queries; with ``expected_random`` (the budget is the calibrated
    one) the published figures and random search's exact expectation stand beside ours."""
    target = PUBLISHED[dataset]["rea"][0]
    what = ("the calibrated budget: random search's expectation "
            f"{expected_random:.2f} matches the published {PUBLISHED[dataset]['random'][0]:.2f}"
            if expected_random is not None else "not comparable with the published figures")
    print(f"\n## {dataset}: optimum {OPTIMUM[dataset]:.2f}, budget {budget} queries ({what})")
    cps = [c for c in CHECKPOINTS if c <= budget]
    head = (["strategy", "test acc (ours, mean +- sample std)", "published", "regret"]
            + [f"regret@{c}" for c in cps]
            + [f"queries to {target:.2f} (median; reached)", "s/run", "CPU s/run",
               "repeats/query"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        pub = r["published"] if expected_random is not None else None
        pub_text = f"{pub[0]:.2f} +- {pub[1]:.2f}" if pub else "-"
        median = r["median_queries_to_rea"]
        median_text = f">{budget}" if median > budget else f"{median:.0f}"
        cells = ([r["strategy"], f"{r['mean']:.2f} +- {r['std']:.2f}", pub_text,
                  f"{r['regret']:.2f}"]
                 + [f"{r['regret_at'][c]:.2f}" for c in cps]
                 + [f"{median_text}; {r['reached']}/{r['seeds']}", f"{r['seconds']:.1f}",
                    f"{r['cpu_s']:.2f}", f"{r['repeats_per_query']:.2f}"])
        print("| " + " | ".join(cells) + " |")
    early = [f"{r['strategy']} ({r['stopped_early']})" for r in rows if r["stopped_early"]]
    if early:
        print(f"converged before the budget (1000 repeated proposals in a row), seeds: "
              f"{', '.join(early)}")


def plot(dataset: str, rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        curve = np.asarray(r["mean_regret_curve"])
        ax.plot(np.arange(1, len(curve) + 1), np.maximum(curve, 1e-3), label=r["strategy"])
    ax.set_yscale("log")
    ax.set_xlabel("queries (distinct architectures)")
    ax.set_ylabel("regret of the incumbent's test accuracy (points)")
    ax.set_title(f"NAS-Bench-201 {dataset}: mean regret over {rows[0]['seeds']} seeds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


CALIBRATION_POINTS = (10, 25, 50, 75, 100, 150, 200)


def calibration(datasets: list[str], max_n: int = 1000) -> dict[str, dict[str, Any]]:
    """Per dataset, the exact expected test accuracy of random search's incumbent after n
    queries (from the table's order statistics) and the smallest n at which it reaches the
    published random-search figure: the budget at which the paper's searchers are matched."""
    from nastk.run.tabular import calibrated_budget, expected_random_incumbent
    from nastk.search_spaces.nb201 import NB201Bench

    bench = NB201Bench.load()
    out: dict[str, dict[str, Any]] = {}
    for d in datasets:
        search, report = bench.column(d, "val12"), bench.column(d, "test200")
        n_star = calibrated_budget(search, report, PUBLISHED[d]["random"][0], max_n)
        points = sorted(set(CALIBRATION_POINTS) | ({n_star, n_star - 1} if n_star else set()))
        out[d] = {"budget": n_star, "published_random": PUBLISHED[d]["random"][0],
                  "expected": {n: expected_random_incumbent(search, report, n)
                               for n in points if n >= 1}}
    return out


def print_calibration(calib: dict[str, dict[str, Any]]) -> None:
    print("\n## Calibrated budgets: expected test accuracy of random search's incumbent")
    points = list(CALIBRATION_POINTS)
    print("| dataset | published random | calibrated budget | "
          + " | ".join(f"E@{n}" for n in points) + " |")
    print("|" + "---|" * (3 + len(points)))
    for d, c in calib.items():
        n = c["budget"]
        at = (f"{n} (E {c['expected'][n]:.3f}; E@{n - 1} {c['expected'][n - 1]:.3f})"
              if n else "not reached")
        print(f"| {d} | {c['published_random']:.2f} | {at} | "
              + " | ".join(f"{c['expected'][p]:.2f}" for p in points) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PUBLISHED),
                        choices=list(PUBLISHED))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget", type=int, default=150, help="distinct queries per search")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("runs/compare_strategies"),
                        help="folder for the plots and the JSON results")
    args = parser.parse_args(argv)

    from nastk.search_spaces.nb201 import nb201_data_missing

    missing = nb201_data_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    print("command: python benchmarks/compare_strategies.py " + " ".join(argv or sys.argv[1:]))
    calib = calibration(args.datasets)
    print_calibration(calib)
    budget = max([args.budget] + [c["budget"] for c in calib.values() if c["budget"]])
    jobs = [(d, s, seed, budget) for d in args.datasets for s in args.strategies
            for seed in range(args.seeds)]
    t0 = time.time()
    from nastk.run.tabular import run_jobs

    runs: list[dict[str, Any]] = run_jobs(run_one, jobs, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(runs))
    results: dict[str, Any] = {}
    for d in args.datasets:
        n_star = calib[d]["budget"]
        at_calibrated = summarize(runs, d, n_star) if n_star else []
        if at_calibrated:
            print_table(d, at_calibrated, n_star, calib[d]["expected"][n_star])
        rows = summarize(runs, d, args.budget)
        print_table(d, rows, args.budget)
        results[d] = {"calibrated_budget": n_star, "at_calibrated": at_calibrated,
                      "at_budget": rows}
        plot(d, rows if budget == args.budget else summarize(runs, d, budget),
             args.out / f"regret_{d}.png")
    (args.out / "results.json").write_text(json.dumps(
        {"budget": args.budget, "seeds": args.seeds, "calibration": calib,
         "results": results}, indent=1))
    print(f"\n{len(jobs)} searches in {time.time() - t0:.0f} s on {args.workers} workers; "
          f"plots and results.json in {args.out}")
    for d in args.datasets:
        n_star = calib[d]["budget"]
        for r in results[d]["at_calibrated"]:
            pub = PUBLISHED[d].get(r["strategy"])
            if pub is not None:
                verdict = "matches or beats" if r["mean"] >= pub[0] else "is below"
                print(f"{d} at {n_star} queries: our {r['strategy']} {r['mean']:.2f} +- "
                      f"{r['std']:.2f} {verdict} the published {pub[0]:.2f} +- {pub[1]:.2f}")
    finals = [r["mean"] for v in results.values() for r in v["at_budget"]]
    return 0 if not math.isnan(sum(finals)) else 1


if __name__ == "__main__":
    sys.exit(main())
