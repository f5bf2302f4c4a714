"""Warm starts measured leave-one-task-out (issue 33, item 6).

For every task of a family (the seven TransNAS-Bench-101 micro tasks; NAS-Bench-201's three
data sets), the same strategy searches it cold and warm-started (``warm_start``, the
:mod:`nastk.transfer` prior) from the *other* tasks' earlier studies, on the same seeds and
budget. The earlier studies are real ``nastk study`` runs written first (regularized evolution,
3 seeds x 100 trials per task, seeds 1000-1002 so that none is a seed reported below), read
back through the same loader a config's ``warm_start: {from: [STUDY_DIR]}`` uses.

Per held-out task and strategy it prints the median number of queries to reach the table's
top-1 % value of the search metric (the 1st percentile of all its architectures; a search that
never reaches it within the budget counts as budget + 1 and is counted as censored), the
incumbent's value at 25 / 50 / 100 queries (mean +- sample std over seeds), and paired two-sided
Wilcoxon signed-rank tests, warm against cold, seed i against seed i, on the queries to target
and on the value at 50 queries. The verdict: on how many held-out tasks warm starts cut the
median queries to target by at least 30 %.

The negative case: class_scene warm-started from a study that *minimised* class_object's
accuracy, whose ranking runs against class_scene's, cold against warm.

    python benchmarks/warm_start_transfer.py                     # everything, 30 seeds
    python benchmarks/warm_start_transfer.py --seeds 5 --family tnb101 --strategies rea

Needs the NB201 tables and the NAS-Bench-Suite-Zero TransNAS-Bench-101 dump in ../shared/data
(or $NASTK_NB201_DIR / $NASTK_TNB101_DIR).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

TNB101 = ("class_scene", "class_object", "jigsaw", "segmentsemantic", "room_layout",
          "normal", "autoencoder")
NB201 = ("cifar10", "cifar100", "ImageNet16-120")
EVO = {"population": 10, "sample_size": 3}
#: name -> (registered strategy, options)
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "rea": ("evolution", EVO),
    "bo": ("bo", {}),
    "predictor_guided": ("predictor_guided", {"inner_options": EVO, "predictor": "ridge",
                                              "acquisition": "mean"}),
}
SOURCE_SEEDS = [1000, 1001, 1002]
SOURCE_TRIALS = 100
AT = (25, 50, 100)


def task_ref(family: str, task: str) -> dict[str, Any]:
    """A study task's space, evaluator and objective."""
    if family == "tnb101":
        from nastk.search_spaces.tnb101 import TASKS

        return {"space": {"name": "tnb101_micro"},
                "evaluator": {"kind": "function",
                              "function": f"nastk.search_spaces.tnb101:micro_{task}"},
                "objective": {"metric": TASKS[task][0]}}
    fn = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet16"}[task]
    return {"space": {"name": "nb201", "options": {"dataset": task}},
            "evaluator": {"kind": "function", "function": f"nastk.search_spaces.nb201:{fn}"},
            "objective": {"metric": "val_acc_12ep"}}


def label(task: str) -> str:
    return task.replace("ImageNet16-120", "imagenet16")


def source_study(family: str, out: Path, tasks: tuple[str, ...], name: str,
                 direction: str = "max") -> Path:
    """Run (or find finished) the earlier studies: rea on every task, 3 seeds x 100 trials."""
    from rich.console import Console

    from nastk.pipelines.study.config import StudyConfig
    from nastk.pipelines.study.runner import run_study

    study_tasks = []
    for t in tasks:
        ref = task_ref(family, t)
        ref["objective"] = {**ref["objective"], "direction": direction}
        study_tasks.append({"name": label(t), **ref, "budget": {"trials": SOURCE_TRIALS}})
    config = StudyConfig.model_validate({
        "name": name, "run_dir": str(out / name), "seeds": SOURCE_SEEDS, "tasks": study_tasks,
        "strategies": [{"name": "evolution", "label": "rea", "options": EVO}]})
    run_study(config, console=Console(stderr=True, quiet=True), progress=False)
    return out / name


def make_evaluator(family: str, task: str) -> tuple[Any, str, Any]:
    if family == "tnb101":
        from nastk.search_spaces.tnb101 import TNB101Evaluator

        ev = TNB101Evaluator(task)
        return ev, ev.metric, ev.bench.space
    from nastk.search_spaces.nb201 import NB201Evaluator

    ev = NB201Evaluator(task)
    return ev, ev.SEARCH_METRIC, ev.bench.space


def target_of(family: str, task: str) -> float:
    """The table's top-1 % value of the search metric."""
    if family == "tnb101":
        from nastk.search_spaces.tnb101 import TNB101Bench

        col = np.asarray(list(TNB101Bench.load().column(task).values()), dtype=float)
    else:
        from nastk.search_spaces.nb201 import NB201Bench

        col = np.asarray(NB201Bench.load().column(task, "val12"), dtype=float)
    return float(np.nanquantile(col, 0.99))


_PRIORS: dict[tuple[Any, ...], Any] = {}


def prior_of(space: Any, sources: list[str], exclude: list[str], key: tuple[Any, ...]) -> Any:
    """The earlier tasks' prior, read once per process (its values are the same each time)."""
    from nastk.transfer.prior import TransferPrior
    from nastk.transfer.sources import read_sources

    if key not in _PRIORS:
        _PRIORS[key] = TransferPrior(space, read_sources([Path(p) for p in sources], space,
                                                         exclude=exclude))
    return _PRIORS[key]


def run_one(family: str, task: str, strategy: str, seed: int, budget: int,
            sources: list[str] | None, exclude: list[str]) -> dict[str, Any]:
    """One search, cold (``sources`` None) or warm-started; its incumbent after every query."""
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.tabular import run_tabular

    evaluator, metric, space = make_evaluator(family, task)
    registered, options = STRATEGIES[strategy]
    objective = Objective(metric=metric)
    s = registry.instantiate(registry.STRATEGIES, registered, options, space, objective,
                             seed=seed)
    if sources is not None:
        s.use_warm_start(prior_of(space, sources, exclude,
                                  (family, task, tuple(sources), tuple(exclude))))
    t0 = time.perf_counter()
    traj = run_tabular(s, evaluator, objective, budget)
    curve = list(traj.incumbent_report)
    curve += curve[-1:] * (budget - len(curve))
    return {"task": task, "strategy": strategy, "seed": seed, "warm": sources is not None,
            "curve": curve, "seconds": time.perf_counter() - t0}


def queries_to(curve: list[float], target: float) -> int:
    for i, v in enumerate(curve):
        if v >= target - 1e-9:
            return i + 1
    return len(curve) + 1


def compare(cold: list[dict[str, Any]], warm: list[dict[str, Any]], target: float,
            budget: int) -> dict[str, Any]:
    from scipy.stats import wilcoxon

    cold = sorted(cold, key=lambda r: r["seed"])
    warm = sorted(warm, key=lambda r: r["seed"])
    qc = np.array([queries_to(r["curve"], target) for r in cold])
    qw = np.array([queries_to(r["curve"], target) for r in warm])

    def p(a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 if np.all(a == b) else float(wilcoxon(a, b).pvalue)

    out: dict[str, Any] = {
        "median_cold": float(np.median(qc)), "median_warm": float(np.median(qw)),
        "censored_cold": int((qc > budget).sum()), "censored_warm": int((qw > budget).sum()),
        "p_queries": p(qc, qw)}
    out["cut"] = 1.0 - out["median_warm"] / out["median_cold"]
    for k in AT:
        if k > budget:
            continue
        vc = np.array([r["curve"][k - 1] for r in cold])
        vw = np.array([r["curve"][k - 1] for r in warm])
        out[f"at{k}"] = (float(vc.mean()), float(vc.std(ddof=1)), float(vw.mean()),
                         float(vw.std(ddof=1)))
        if k == 50:
            out["p_at50"] = p(vc, vw)
    return out


def print_rows(title: str, rows: list[tuple[str, str, dict[str, Any]]], budget: int,
               digits: int) -> None:
    print(f"\n{title}")
    head = ("| held-out task | strategy | median queries to top-1 % cold / warm (censored) | cut "
            "| p | " + " | ".join(f"value at {k} cold / warm" for k in AT if k <= budget)
            + " | p at 50 |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for task, strategy, c in rows:
        vals = " | ".join(f"{c[f'at{k}'][0]:.{digits}f} +- {c[f'at{k}'][1]:.{digits}f} / "
                          f"{c[f'at{k}'][2]:.{digits}f} +- {c[f'at{k}'][3]:.{digits}f}"
                          for k in AT if k <= budget)
        print(f"| {task} | {strategy} | {c['median_cold']:g} / {c['median_warm']:g} "
              f"({c['censored_cold']} / {c['censored_warm']}) | {100 * c['cut']:+.0f} % | "
              f"{c['p_queries']:.2g} | {vals} | {c.get('p_at50', float('nan')):.2g} |")


def print_verdict(verdict: list[tuple[str, str, float]], strategies: list[str]) -> None:
    print("\nverdict (warm start cuts the median queries to the top-1 % value by >= 30 %):")
    for strategy in strategies:
        mine = [(t, cut) for t, s, cut in verdict if s == strategy]
        met = sum(cut >= 0.30 for _, cut in mine)
        print(f"  {strategy}: {met} of {len(mine)} held-out tasks "
              + ", ".join(f"{t} {100 * cut:+.0f} %" for t, cut in mine))


def show(saved: dict[str, Any], budget: int) -> int:
    """The tables of a saved run (``--json``)."""
    verdict: list[tuple[str, str, float]] = []
    strategies: list[str] = []
    for family in ("tnb101", "nb201"):
        if family not in saved:
            continue
        rows = []
        for key, c in saved[family].items():
            task, strategy = key.rsplit("/", 1)
            rows.append((task, strategy, c))
            verdict.append((f"{family}/{task}", strategy, c["cut"]))
            if strategy not in strategies:
                strategies.append(strategy)
        print_rows(f"{family}: leave-one-task-out", rows, budget, 3)
    if "negative" in saved:
        print_rows("negative case: an anti-correlated source",
                   [("class_scene from minimised class_object", s, c)
                    for s, c in saved["negative"].items()], budget, 3)
    print_verdict(verdict, strategies)
    return 0


def main(argv: list[str] | None = None) -> int:
    from nastk.run.tabular import run_jobs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--family", choices=["tnb101", "nb201", "both"], default="both")
    ap.add_argument("--strategies", nargs="+", default=["rea", "bo"], choices=list(STRATEGIES))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_warm_start"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--show", type=Path, default=None,
                    help="print the tables of a --json file written before, running nothing")
    args = ap.parse_args(argv)
    if args.show is not None:
        return show(json.loads(args.show.read_text()), args.budget)
    t0 = time.perf_counter()
    families = ["tnb101", "nb201"] if args.family == "both" else [args.family]
    seeds = list(range(args.seeds))
    everything: dict[str, Any] = {}
    verdict: list[tuple[str, str, float]] = []
    for family in families:
        tasks = TNB101 if family == "tnb101" else NB201
        study = source_study(family, args.out, tasks, f"sources_{family}")
        jobs = []
        for task in tasks:
            for strategy in args.strategies:
                for seed in seeds:
                    jobs.append((family, task, strategy, seed, args.budget, None, []))
                    jobs.append((family, task, strategy, seed, args.budget, [str(study)],
                                 [label(task)]))
        results = run_jobs(run_one, jobs, args.workers)
        rows = []
        for task in tasks:
            target = target_of(family, task)
            for strategy in args.strategies:
                mine = [r for r in results if r["task"] == task and r["strategy"] == strategy]
                c = compare([r for r in mine if not r["warm"]], [r for r in mine if r["warm"]],
                            target, args.budget)
                c["target"] = target
                rows.append((label(task), strategy, c))
                verdict.append((f"{family}/{label(task)}", strategy, c["cut"]))
        everything[family] = {f"{t}/{s}": c for t, s, c in rows}
        print_rows(f"{family}: leave-one-task-out, {len(seeds)} seeds, budget {args.budget} "
                   f"queries, sources: rea studies of the other tasks ({len(SOURCE_SEEDS)} seeds x "
                   f"{SOURCE_TRIALS} trials each)", rows, args.budget, 3)
    if "tnb101" in families:  # the negative case
        anti = source_study("tnb101", args.out, ("class_object",), "anti_tnb101",
                            direction="min")
        jobs = []
        for strategy in args.strategies:
            for seed in seeds:
                jobs.append(("tnb101", "class_scene", strategy, seed, args.budget, None, []))
                jobs.append(("tnb101", "class_scene", strategy, seed, args.budget, [str(anti)],
                             []))
        results = run_jobs(run_one, jobs, args.workers)
        target = target_of("tnb101", "class_scene")
        rows = []
        for strategy in args.strategies:
            mine = [r for r in results if r["strategy"] == strategy]
            rows.append(("class_scene from minimised class_object", strategy,
                         compare([r for r in mine if not r["warm"]],
                                 [r for r in mine if r["warm"]], target, args.budget)))
        everything["negative"] = {s: c for _, s, c in rows}
        print_rows("negative case: an anti-correlated source", rows, args.budget, 3)
    print_verdict(verdict, args.strategies)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(everything, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
