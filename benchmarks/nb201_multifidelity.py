"""Multi-fidelity NAS-Bench-201, charged in epochs (issue 30): Hyperband + ``bohb`` against
single-fidelity ``bo`` at 12 or at 200 epochs, under the same budget of training epochs.

NAS-Bench-201 answers at two fidelities, 12 and 200 epochs
(:class:`~nastk.search_spaces.nb201.NB201FidelityEvaluator`). Every method gets a total budget
of ``B`` epochs:

* ``mf``: ``bohb`` (falls back to ``bo`` when ``bohb`` is not registered) under Hyperband, rungs
  12 and 200, reduction factor 3, synchronous brackets (chosen once, a priori, not tuned on these
  seeds: the issue's rungs and the engine's default eta; with two rungs this gives Hyperband's
  two brackets, 3 candidates from 12 epochs (the best one promoted to 200, paying 188 more) and
  2 candidates from 200 epochs), ``Budget(trials=10**6, resource=B)``; the run stops before a
  rung that would exceed ``B``. The incumbent is :attr:`Search.best`: the best validation
  accuracy among the candidates that reached the highest fidelity reached.
* ``bo12``: single-fidelity ``bo`` querying at 12 epochs only, ``B // 12`` distinct queries,
  objective val12, incumbent by val12.
* ``bo200``: single-fidelity ``bo`` at 200 epochs only, ``B // 200`` queries, objective val200.

Reported: the incumbent's 200-epoch TEST accuracy (never used by any search), mean +- sample std
over seeds, and paired tests (scipy ``ttest_rel`` and ``wilcoxon``, two-sided) of ``mf`` against
``bo12`` and against ``bo200`` on the seeds all three finished. Every search runs the engine's
loop over a ``MemoryStorage(keep_strategy_state=False)`` (``run_tabular`` for the single-fidelity
ones), one thread per worker process (:func:`nastk.run.tabular.run_jobs`'s initialiser).

    python benchmarks/nb201_multifidelity.py --out /tmp/nb201_mf.json
    python benchmarks/nb201_multifidelity.py --datasets cifar100 --budgets 5000 --seeds 0-9
    python benchmarks/nb201_multifidelity.py --combine a.json b.json   # tables of saved runs

Jobs (one data set, budget and seed: all methods) run in a priority order (seeds in blocks of
ten, every cell's block before the next block), the JSON file is rewritten after each job, and
``--time-limit`` stops submitting new jobs after that many seconds, so a run cut short still
gives complete, paired seed blocks. Needs the tables in ../shared/data/nasbench201-tables (or
$NASTK_NB201_DIR).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
BUDGETS = (2000, 5000, 10000)
METHODS = ("mf", "bo12", "bo200")
#: the scheduler of ``mf``, fixed a priori (module docstring)
HYPERBAND = {"kind": "hyperband", "rungs": [12, 200], "reduction_factor": 3.0,
             "brackets": "sync"}
#: published anchors (test accuracy %, CIFAR-10 / CIFAR-100 / ImageNet16-120)
ANCHORS = {"MF-NAS (GECCO 2024)": (94.36, 73.51, 46.34),
           "RANK-NOSH (ICCV 2021)": (94.26, 73.51, 46.34)}


def _mf_strategy_name(requested: str) -> str:
    from nastk.core import registry

    try:
        names = set(registry.STRATEGIES.names())  # type: ignore[attr-defined]
    except AttributeError:
        names = set(registry.STRATEGIES)  # type: ignore[arg-type]
    return requested if requested in names else "bo"


class _AtResource:
    """The fidelity evaluator pinned to one resource (a single-fidelity search)."""

    def __init__(self, evaluator: Any, resource: float) -> None:
        self.evaluator, self.resource = evaluator, resource

    def evaluate(self, arch: Any, checkpoint: Path | None = None) -> Any:
        return self.evaluator.evaluate_at(arch, self.resource)


def run_mf(dataset: str, budget: int, seed: int, strategy_name: str,
           scheduler: dict[str, Any] | None = None) -> dict[str, Any]:
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.loop import Budget, Search
    from nastk.run.memory_store import MemoryStorage
    from nastk.scheduling.config import SchedulerConfig, build_scheduler
    from nastk.search_spaces.nb201 import NB201FidelityEvaluator

    ev = NB201FidelityEvaluator(dataset)
    objective = Objective(metric=ev.SEARCH_METRIC)
    sched = build_scheduler(SchedulerConfig(**(scheduler or HYPERBAND)), ev.fidelity, objective)
    strategy = registry.instantiate(registry.STRATEGIES, strategy_name, {}, ev.bench.space,
                                    objective, seed=seed)
    rung_costs: list[float] = []
    store = MemoryStorage(keep_strategy_state=False)
    search = Search(ev.bench.space, strategy, ev, objective, store,
                    Budget(trials=10**6, resource=budget), scheduler=sched,
                    on_rung=lambda cand, res, spent: rung_costs.append(cand.cost))
    t0, c0 = time.perf_counter(), time.process_time()
    search.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rungs = store.rungs()
    stored = sum(r.cost for r in rungs)
    if not (math.isclose(stored, search.spent) and math.isclose(sum(rung_costs), search.spent)
            and search.spent <= budget):
        raise RuntimeError(f"{dataset} B={budget} seed {seed}: rung costs {stored} / "
                           f"{sum(rung_costs)} != spent {search.spent} (budget {budget})")
    best = search.best
    assert best is not None and best.result is not None
    return {"method": "mf", "strategy": strategy_name, "scheduler": sched.describe(),  # type: ignore[union-attr]
            "test200": best.result.metrics[ev.REPORT_METRIC],
            "val": best.result.metrics[ev.SEARCH_METRIC],
            "resource": best.result.info.get("resource"),
            "nb201_index": best.result.info.get("nb201_index"),
            "spent": search.spent, "candidates": search.n_done,
            "rungs12": sum(1 for r in rungs if r.resource == 12),
            "rungs200": sum(1 for r in rungs if r.resource == 200),
            "stop_reason": search.stop_reason, "wall_s": wall, "cpu_s": cpu}


def run_single(dataset: str, budget: int, seed: int, resource: int) -> dict[str, Any]:
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.tabular import run_tabular
    from nastk.search_spaces.nb201 import NB201FidelityEvaluator

    ev = NB201FidelityEvaluator(dataset)
    objective = Objective(metric=ev.SEARCH_METRIC)
    strategy = registry.instantiate(registry.STRATEGIES, "bo", {}, ev.bench.space, objective,
                                    seed=seed)
    queries = budget // resource
    t0, c0 = time.perf_counter(), time.process_time()
    traj = run_tabular(strategy, _AtResource(ev, resource), objective, queries,
                       ev.REPORT_METRIC)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"method": f"bo{resource}", "strategy": "bo", "test200": traj.final_report,
            "queries": traj.queries, "spent": traj.queries * resource,
            "duplicates": traj.duplicates, "stop_reason": traj.stop_reason,
            "wall_s": wall, "cpu_s": cpu}


def run_job(dataset: str, budget: int, seed: int, methods: tuple[str, ...],
            mf_strategy: str, scheduler: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for m in methods:
        if m == "mf":
            r = run_mf(dataset, budget, seed, mf_strategy, scheduler)
        else:
            r = run_single(dataset, budget, seed, int(m[2:]))
        out.append({"dataset": dataset, "budget": budget, "seed": seed, **r})
    return out


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def _priority(jobs: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Seeds in blocks of ten; within a block CIFAR-100 first, larger budgets first."""
    order = {d: i for i, d in enumerate(("cifar100", "cifar10", "ImageNet16-120"))}
    return sorted(jobs, key=lambda j: (j[2] // 10, order.get(j[0], 9), -j[1], j[2]))


def _stats(x: list[float]) -> str:
    if not x:
        return "-"
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
    return f"{np.mean(x):.2f} ± {sd:.2f} (n={len(x)})"


def _pvalues(a: list[float], b: list[float]) -> tuple[float, float]:
    from scipy.stats import ttest_rel, wilcoxon

    if len(a) < 2:
        return math.nan, math.nan
    diff = np.asarray(a) - np.asarray(b)
    t = float(ttest_rel(a, b).pvalue) if np.any(diff != 0) else 1.0
    try:
        w = float(wilcoxon(a, b).pvalue) if np.any(diff != 0) else 1.0
    except ValueError:
        w = math.nan
    return t, w


def tables(rows: list[dict[str, Any]]) -> str:
    """Markdown: per data set and budget, each method's test accuracy, and the paired tests."""
    lines = ["| data set | budget (epochs) | mf: Hyperband + bohb | bo @12 ep | bo @200 ep | "
             "mf − bo12 (t / Wilcoxon p) | mf − bo200 (t / Wilcoxon p) | s per search "
             "(mf / bo12 / bo200) |", "|---|---|---|---|---|---|---|---|"]
    by: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["dataset"], r["budget"], r["method"]), {})[r["seed"]] = r
    for ds in DATASETS:
        for b in sorted({r["budget"] for r in rows}):
            cells = {m: by.get((ds, b, m), {}) for m in METHODS}
            if not any(cells.values()):
                continue
            col = [_stats([v["test200"] for v in cells[m].values()]) for m in METHODS]
            tests = []
            for other in ("bo12", "bo200"):
                seeds = sorted(set(cells["mf"]) & set(cells[other]))
                a = [cells["mf"][s]["test200"] for s in seeds]
                o = [cells[other][s]["test200"] for s in seeds]
                if len(seeds) < 2:
                    tests.append("-")
                    continue
                t, w = _pvalues(a, o)
                tests.append(f"{np.mean(np.subtract(a, o)):+.2f} ({t:.3g} / {w:.3g}; "
                             f"n={len(seeds)})")
            secs = " / ".join(f"{np.mean([v['wall_s'] for v in cells[m].values()]):.1f}"
                              if cells[m] else "-" for m in METHODS)
            lines.append(f"| {ds} | {b:,} | {' | '.join(col)} | {' | '.join(tests)} | "
                         f"{secs} |")
    return "\n".join(lines)


def ceilings() -> str:
    from nastk.search_spaces.nb201 import NB201Bench

    bench = NB201Bench.load()
    out = []
    for ds in DATASETS:
        val = bench.column(ds, "val200")
        test = bench.column(ds, "test200")
        i = int(np.nanargmax(val))
        out.append(f"{ds}: best val200 = index {i} ({val[i]:.2f}), its test200 {test[i]:.2f}; "
                   f"best test200 in the table {np.nanmax(test):.2f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    p.add_argument("--seeds", default="0-29", help="e.g. 0-29 or 0,1,2 or 0-9,20-29")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--mf-strategy", default="bohb")
    p.add_argument("--scheduler", default=None,
                   help="mf's scheduler as JSON (default: the a-priori Hyperband, eta 3); "
                        "e.g. '{\"kind\": \"sh\", \"rungs\": [12, 200], "
                        "\"reduction_factor\": 16}'")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="worker processes, one thread each (default: the cores this process "
                        "may use)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds after which no new job starts (running ones finish)")
    p.add_argument("--out", type=Path, default=None, help="write every search's result here "
                   "(JSON, rewritten after each job)")
    p.add_argument("--combine", nargs="+", type=Path, default=None,
                   help="print the tables of saved JSON files (no search runs)")
    args = p.parse_args(argv)

    print(f"command: python {' '.join(sys.argv)}")
    print(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; machine: "
          f"{platform.node()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable); "
          f"load average at start {os.getloadavg()}")
    if args.combine:
        rows = [r for f in args.combine for r in json.loads(f.read_text())["rows"]]
        print(tables(rows))
        print(ceilings())
        return

    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from nastk.run.tabular import _one_thread
    from nastk.search_spaces.nb201 import canonical_dataset

    mf_strategy = _mf_strategy_name(args.mf_strategy)
    if mf_strategy != args.mf_strategy:
        print(f"strategy {args.mf_strategy!r} is not registered: mf uses {mf_strategy!r}")
    scheduler = json.loads(args.scheduler) if args.scheduler else HYPERBAND
    print(f"mf: {mf_strategy} under {scheduler}")
    datasets = [canonical_dataset(d) for d in args.datasets]
    jobs = _priority([(d, b, s) for d in datasets for b in args.budgets
                      for s in _seeds(args.seeds)])
    methods = tuple(m for m in METHODS if m in args.methods)
    rows: list[dict[str, Any]] = []
    meta = {"command": " ".join(sys.argv), "started": dt.datetime.now(dt.UTC).isoformat(),
            "load_start": os.getloadavg(), "machine": platform.node(),
            "hyperband": scheduler, "mf_strategy": mf_strategy, "workers": args.workers}
    t0 = time.time()

    def save() -> None:
        if args.out is not None:
            meta["load_now"] = os.getloadavg()
            meta["elapsed_s"] = time.time() - t0
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
            tmp.replace(args.out)

    skipped: list[tuple[str, int, int]] = []
    with ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
        todo = list(jobs)
        running: set[Any] = set()
        while todo or running:
            while todo and len(running) < args.workers:
                if args.time_limit is not None and time.time() - t0 > args.time_limit:
                    skipped, todo = todo, []
                    break
                running.add(pool.submit(run_job, *todo.pop(0), methods, mf_strategy,
                                        scheduler))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                rows += fut.result()
            save()
            n = len({(r["dataset"], r["budget"], r["seed"]) for r in rows})
            print(f"  {n}/{len(jobs)} jobs ({time.time() - t0:.0f} s, load "
                  f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat()
    meta["skipped_jobs"] = len(skipped)
    save()
    print(f"elapsed {time.time() - t0:.0f} s on {args.workers} workers; load average at end "
          f"{os.getloadavg()}")
    if skipped:
        print(f"REDUCED: the time limit ({args.time_limit:g} s) left {len(skipped)} of "
              f"{len(jobs)} jobs (data set, budget, seed) unrun; n per cell is in the table")
    print(tables(rows))
    print(ceilings())


if __name__ == "__main__":
    main()
