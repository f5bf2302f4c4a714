"""Search efficiency side by side: our strategies and Optuna's samplers on the same tables, seeds
and budget, in one run.

Tasks: NAS-Bench-201 on CIFAR-10, CIFAR-100 and ImageNet16-120 (the paper's protocol: the
search sees the 12-epoch validation accuracy, the figure is the incumbent's 200-epoch test
accuracy) and the seven TransNAS-Bench-101 micro tasks (the stored validation metric, which is
also the figure). Every search gets the same number of distinct queries; a repeated proposal is
answered from the cache and not counted.

Prints, per task and strategy: the incumbent's figure at 50 / 100 / 150 queries (mean +- sample
std over seeds), the paired two-sided Wilcoxon signed-rank test against the reference TPE at
each budget (seed i against seed i), the median number of queries to reach the task's target
(NB201: the published regularized-evolution accuracy; TransNAS-Bench-101: the table's top-1%
value), the strategy's own CPU seconds per search (its ask and tell calls only, one thread)
and its proposals of already-evaluated architectures per query. Then the verdict on the
targets of the issue: the strategy named by ``--ours`` against the reference in all 30
(task, budget) cells.

    python benchmarks/search_efficiency.py                      # everything, 30 seeds
    python benchmarks/search_efficiency.py --seeds 5 --tasks nb201/cifar10 --strategies bo \\
        optuna_tpe_mv

Needs the NB201 tables and the NAS-Bench-Suite-Zero TransNAS-Bench-101 dump in ../shared/data
(or $NASTK_NB201_DIR / $NASTK_TNB101_DIR), and Optuna for the peers (pip install -e ".[peers]").
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

NB201 = ("cifar10", "cifar100", "ImageNet16-120")
TNB101 = ("class_scene", "class_object", "jigsaw", "segmentsemantic", "room_layout",
          "normal", "autoencoder")
TASKS = [f"nb201/{d}" for d in NB201] + [f"tnb101/{t}" for t in TNB101]
#: published regularized-evolution test accuracies (NAS-Bench-201 paper, Table 5)
NB201_TARGET = {"cifar10": 93.92, "cifar100": 71.84, "ImageNet16-120": 45.54}

EVO = {"population": 10, "sample_size": 3}
#: name -> (registered strategy, options)
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "bo": ("bo", {}),
    "predictor_guided": ("predictor_guided", {"inner_options": EVO}),
    "rea": ("evolution", EVO),
    "reinforce": ("rl", {"algorithm": "reinforce"}),
    "random": ("random", {}),
    "optuna_tpe": ("optuna", {"sampler": "tpe"}),
    "optuna_tpe_mv": ("optuna", {"sampler": "tpe_multivariate"}),
    "optuna_gp": ("optuna", {"sampler": "gp"}),
}
DEFAULT_STRATEGIES = [s for s in STRATEGIES if s != "optuna_gp"]
BUDGETS = (50, 100, 150)


class _Timed:
    """A strategy whose ask and tell calls are timed (process CPU seconds). Its state passes
    through untimed: saving it is the store's cost, not the strategy's (``run_tabular``'s
    store keeps no state, so the search loop never asks for it)."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.space = strategy.space
        self.cpu = 0.0

    def state_dict(self) -> dict[str, Any]:
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state)

    def ask(self, n: int = 1) -> Any:
        c = time.process_time()
        try:
            return self.strategy.ask(n)
        finally:
            self.cpu += time.process_time() - c

    def tell(self, arch: Any, result: Any) -> None:
        c = time.process_time()
        try:
            self.strategy.tell(arch, result)
        finally:
            self.cpu += time.process_time() - c


def make_task(task: str) -> tuple[Any, str, str]:
    """(evaluator, search metric, report metric) of ``task``."""
    kind, name = task.split("/")
    if kind == "nb201":
        from nastk.search_spaces.nb201 import NB201Evaluator

        ev = NB201Evaluator(name)
        return ev, ev.SEARCH_METRIC, ev.REPORT_METRIC
    from nastk.search_spaces.tnb101 import TNB101Evaluator

    ev = TNB101Evaluator(name)
    return ev, ev.metric, ev.metric


def task_facts(task: str) -> dict[str, float]:
    """The task's optimum and target of the report metric."""
    kind, name = task.split("/")
    if kind == "nb201":
        from nastk.search_spaces.nb201 import NB201Bench

        return {"optimum": NB201Bench.load().optimum(name, "test200"),
                "target": NB201_TARGET[name]}
    from nastk.search_spaces.tnb101 import TNB101Bench

    bench = TNB101Bench.load()
    col = np.asarray(list(bench.column(name).values()))
    return {"optimum": bench.optimum(name), "target": float(np.nanquantile(col, 0.99))}


def run_one(task: str, name: str, seed: int, budget: int) -> dict[str, Any]:
    """One search; the incumbent's report metric after every query."""
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.tabular import run_tabular

    evaluator, metric, report = make_task(task)
    registered, options = STRATEGIES[name]
    objective = Objective(metric=metric)
    strategy = _Timed(registry.instantiate(registry.STRATEGIES, registered, options,
                                           evaluator.bench.space, objective, seed=seed))
    t0 = time.perf_counter()
    traj = run_tabular(strategy, evaluator, objective, budget, report)  # type: ignore[arg-type]
    curve = list(traj.incumbent_report)
    curve += curve[-1:] * (budget - len(curve))  # converged early: the incumbent stays
    return {"task": task, "strategy": name, "seed": seed, "curve": curve,
            "queries": traj.queries, "cpu_s": strategy.cpu,
            "seconds": time.perf_counter() - t0, "repeats": traj.duplicates}


def summarize(runs: list[dict[str, Any]], task: str, strategies: list[str], reference: str,
              facts: dict[str, float]) -> list[dict[str, Any]]:
    from nastk.pipelines.study.stats import wilcoxon_pairs
    from nastk.run.tabular import first_reach

    by = {s: sorted((r for r in runs if r["task"] == task and r["strategy"] == s),
                    key=lambda r: r["seed"]) for s in strategies}
    ref = by.get(reference, [])
    rows = []
    for s in strategies:
        mine = by[s]
        if not mine:
            continue
        curves = np.array([r["curve"] for r in mine], dtype=float)
        row: dict[str, Any] = {"strategy": s, "seeds": len(mine)}
        for b in BUDGETS:
            if b > curves.shape[1]:
                continue
            vals = curves[:, b - 1]
            cell: dict[str, Any] = {"mean": float(vals.mean()),
                                    "std": float(vals.std(ddof=1)) if len(vals) > 1 else math.nan}
            if ref and s != reference and len(ref) == len(mine):
                other = [r["curve"][b - 1] for r in ref]
                test = wilcoxon_pairs({s: list(vals), reference: other})[(s, reference)]
                cell.update(p=test["p"], diff=test["mean_diff"])
            row[str(b)] = cell
        reach = [first_reach(list(c), facts["target"]) for c in curves]
        censored = [curves.shape[1] + 1 if q is None else q for q in reach]
        row.update(median_to_target=float(np.median(censored)),
                   reached=int(sum(q is not None for q in reach)),
                   cpu_s=float(np.mean([r["cpu_s"] for r in mine])),
                   cpu_s_max=float(np.max([r["cpu_s"] for r in mine])),
                   repeats_per_query=float(np.mean([r["repeats"] / r["queries"]
                                                    for r in mine])))
        rows.append(row)
    return rows


def fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def print_task(task: str, rows: list[dict[str, Any]], reference: str, facts: dict[str, float],
               budget: int) -> None:
    digits = 4 if abs(facts["optimum"]) < 2 else 2
    print(f"\n## {task}: optimum {fmt(facts['optimum'], digits)}, target "
          f"{fmt(facts['target'], digits)}; p: paired Wilcoxon against {reference}")
    bs = [b for b in BUDGETS if b <= budget]
    head = (["strategy"] + [f"@{b} (mean +- std)" for b in bs] + [f"p@{b}" for b in bs]
            + ["queries to target (median; reached)", "CPU s/search", "repeats/query"])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["strategy"]]
        cells += [f"{fmt(r[str(b)]['mean'], digits)} +- {fmt(r[str(b)]['std'], digits)}"
                  for b in bs]
        for b in bs:
            c = r[str(b)]
            cells.append("-" if "p" not in c else
                         f"{c['p']:.3f} {'+' if c['diff'] > 0 else '-' if c['diff'] < 0 else '='}")
        med = r["median_to_target"]
        cells += [(f">{budget}" if med > budget else f"{med:.0f}") + f"; {r['reached']}/"
                  f"{r['seeds']}", f"{r['cpu_s']:.2f}", f"{r['repeats_per_query']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def verdict(results: dict[str, list[dict[str, Any]]], ours: str, reference: str,
            budget: int) -> dict[str, Any]:
    cells = at_least = better = 0
    worse_cells = []
    for task, rows in results.items():
        by = {r["strategy"]: r for r in rows}
        if ours not in by or reference not in by:
            continue
        for b in BUDGETS:
            if b > budget:
                continue
            mine, ref = by[ours][str(b)], by[reference][str(b)]
            cells += 1
            if mine["mean"] >= ref["mean"]:
                at_least += 1
                better += int(mine.get("p", 1.0) < 0.05 and mine["diff"] > 0)
            else:
                worse_cells.append(f"{task}@{b} ({mine['mean'] - ref['mean']:+.4g})")
    cpu = [r["cpu_s_max"] for rows in results.values() for r in rows if r["strategy"] == ours]
    return {"cells": cells, "at_least": at_least, "better_p05": better, "worse": worse_cells,
            "max_cpu_s": max(cpu) if cpu else math.nan}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                        choices=list(STRATEGIES))
    parser.add_argument("--ours", default="bo", choices=list(STRATEGIES))
    parser.add_argument("--reference", default="optuna_tpe_mv", choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed .. first-seed + seeds - 1 (e.g. 30: held-out "
                             "seeds for options chosen on 0-29)")
    parser.add_argument("--budget", type=int, default=max(BUDGETS))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("runs/search_efficiency"))
    args = parser.parse_args(argv)

    from nastk.search_spaces.nb201 import nb201_data_missing
    from nastk.search_spaces.tnb101 import tnb101_data_missing

    for task in args.tasks:
        missing = nb201_data_missing() if task.startswith("nb201") else tnb101_data_missing()
        if missing:
            print(missing, file=sys.stderr)
            return 2
    print("command: python benchmarks/search_efficiency.py " + " ".join(argv or sys.argv[1:]))
    jobs = [(t, s, seed, args.budget) for t in args.tasks for s in args.strategies
            for seed in range(args.first_seed, args.first_seed + args.seeds)]
    t0 = time.time()
    from nastk.run.tabular import run_jobs

    runs: list[dict[str, Any]] = run_jobs(run_one, jobs, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.json").write_text(json.dumps(runs))
    results = {}
    for task in args.tasks:
        facts = task_facts(task)
        rows = summarize(runs, task, args.strategies, args.reference, facts)
        print_task(task, rows, args.reference, facts, args.budget)
        results[task] = rows
    v = verdict(results, args.ours, args.reference, args.budget)
    (args.out / "results.json").write_text(json.dumps(
        {"seeds": args.seeds, "budget": args.budget, "reference": args.reference,
         "ours": args.ours, "results": results, "verdict": v}, indent=1))
    print(f"\n{len(jobs)} searches in {time.time() - t0:.0f} s on {args.workers} workers")
    if v["cells"]:
        print(f"{args.ours} against {args.reference}: mean at least the reference's in "
              f"{v['at_least']}/{v['cells']} (task, budget) cells, better with p < 0.05 in "
              f"{v['better_p05']}/{v['cells']} (target: all, and at least "
              f"{math.ceil(v['cells'] / 2)}); worst CPU per search {v['max_cpu_s']:.2f} s "
              "(target: <= 1 s)")
        if v["worse"]:
            print("  below the reference: " + ", ".join(v["worse"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
