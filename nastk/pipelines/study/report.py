"""A study's report: curves, final table, queries to target, leaderboard and paired tests, and
the hypervolume of multi-objective tasks.

Everything is read back from the runs' stores, so the report of a resumed study equals the
report of one that never stopped. Values are the task's report metric (default: the objective's
metric) of the incumbent, the best trial by the objective so far, oriented larger-is-better (a
minimised objective's values are negated).

A task whose objective names costs (``objective: {metric: ..., costs: [flops]}``) also gets each
run's hypervolume: of the objective vectors (the metric and the negated costs) of all its
finished trials, each entry normalised to [0, 1] between the worst and best value that any run of
the task reached, with the reference point 0.1 below the worst in every entry (so the extreme
points count); 1.21 would be a single point best in both of two objectives.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nastk.core.objective import Objective
from nastk.core.pareto import hypervolume
from nastk.pipelines.study.config import StudyConfig
from nastk.pipelines.study.stats import average_ranks, mean_normalised_regret, wilcoxon_pairs
from nastk.run import layout
from nastk.run.loop import Budget
from nastk.run.sqlite_store import META_OBJECTIVE, RunStore
from nastk.run.tabular import first_reach

__all__ = ["collect", "write_study_report"]


#: reference point of the normalised hypervolume, in every entry
HV_REFERENCE = -0.1


def axis_label(run_dir: Path, report_metric: str | None) -> str:
    """The y-axis label of a task's best-so-far curves: the report metric, and that it is
    negated when smaller is better (curves are oriented larger-is-better)."""
    with RunStore.open_existing(run_dir) as store:
        objective = Objective.model_validate(store.get_meta(META_OBJECTIVE))
    metric = report_metric or objective.metric
    return (f"best {metric} so far" if objective.direction == "max"
            else f"best -{metric} so far (negated: larger is better)")


def read_run(run_dir: Path, report_metric: str | None
             ) -> tuple[list[float], list[float], list[tuple[float, ...]]]:
    """The report metric of the incumbent after every finished trial of a run, the report
    metric of every trial that has one (both oriented larger-is-better), and, when the
    objective has costs, the objective vector of every usable trial."""
    with RunStore.open_existing(run_dir) as store:
        objective = Objective.model_validate(store.get_meta(META_OBJECTIVE))
        trials = store.finished()
    metric = report_metric or objective.metric
    sign = 1.0 if objective.direction == "max" else -1.0
    incumbent: float | None = None  # the best objective value so far
    best_value = math.nan
    curve, values, vectors = [], [], []
    for t in trials:
        judged = objective.value(t.result) if t.result is not None else None
        value = t.result.value(metric) if t.result is not None else None
        if value is not None:
            values.append(sign * value)
        if objective.better(judged, incumbent):
            incumbent = judged
            best_value = sign * value if value is not None else math.nan
        curve.append(best_value)
        vec = objective.vector(t.result) if objective.costs and t.result is not None else None
        if vec is not None:
            vectors.append(vec)
    return curve, values, vectors


def normalised_hypervolumes(fronts: dict[str, list[list[tuple[float, ...]]]]
                            ) -> dict[str, list[float]]:
    """``{strategy: [objective vectors of each seed's run]}`` -> each run's hypervolume after
    normalising every entry between the worst and best value of all runs (see the module's
    docstring)."""
    every = [v for runs in fronts.values() for vecs in runs for v in vecs]
    if not every:
        return {s: [math.nan] * len(runs) for s, runs in fronts.items()}
    arr = np.asarray(every, dtype=float)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(arr.shape[1], HV_REFERENCE)
    return {s: [hypervolume((np.asarray(vecs, dtype=float) - lo) / span, ref) if vecs
                else 0.0 for vecs in runs] for s, runs in fronts.items()}


def collect(config: StudyConfig) -> dict[str, Any]:
    """``{task: {"curves": {strategy: [curve per seed]}, "values": [...], "budget": n,
    "vectors": {strategy: [objective vectors per seed]}}}`` (vectors only for a task whose
    objective has costs); a curve that stopped short of the budget (a converged strategy) keeps
    its last value."""
    out: dict[str, Any] = {}
    for t in config.tasks:
        budget = Budget.model_validate(t.budget).trials  # as each of its searches reads it
        curves: dict[str, list[list[float]]] = {}
        vectors: dict[str, list[list[tuple[float, ...]]]] = {}
        values: list[float] = []
        for s in config.strategies:
            per_seed, vecs_per_seed = [], []
            for seed in config.seed_list():
                run_dir = config.run_dir_of(t.name, s.key, seed)
                if not (run_dir / layout.STORE_FILE).is_file():
                    raise FileNotFoundError(f"study run {run_dir} has no store yet; run the "
                                            "study first")
                curve, vals, vecs = read_run(run_dir, t.report_metric)
                if not curve:
                    raise ValueError(f"study run {run_dir} has no finished trial")
                curve = (curve + curve[-1:] * budget)[:budget]
                per_seed.append(curve)
                vecs_per_seed.append(vecs)
                values += vals
            curves[s.key] = per_seed
            vectors[s.key] = vecs_per_seed
        first = config.run_dir_of(t.name, config.strategies[0].key, config.seed_list()[0])
        out[t.name] = {"curves": curves, "values": values, "budget": budget,
                       "ylabel": axis_label(first, t.report_metric)}
        if t.objective.get("costs"):
            out[t.name]["vectors"] = vectors
    return out


def _target(task_cfg: Any, values: Sequence[float]) -> tuple[float, str]:
    if task_cfg.target is not None:
        return float(task_cfg.target), "given"
    return float(np.quantile(np.asarray(values, dtype=float), 0.99)), "top 1% of the study's " \
        "evaluations"


def summarize(config: StudyConfig, data: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the report (also written to ``study.json``)."""
    tasks: dict[str, Any] = {}
    finals: dict[str, dict[str, list[float]]] = {}
    hvs: dict[str, dict[str, list[float]]] = {}
    for t in config.tasks:
        d = data[t.name]
        target, why = _target(t, d["values"])
        rows = {}
        finals[t.name] = {}
        if "vectors" in d:
            hvs[t.name] = normalised_hypervolumes(d["vectors"])
        for s, per_seed in d["curves"].items():
            arr = np.asarray(per_seed, dtype=float)
            final = arr[:, -1]
            reach = [first_reach(list(c), target) for c in arr]
            censored = [d["budget"] + 1 if q is None else q for q in reach]
            finals[t.name][s] = final.tolist()
            rows[s] = {"mean": float(final.mean()),
                       "std": float(final.std(ddof=1)) if len(final) > 1 else math.nan,
                       "median_queries_to_target": float(np.median(censored)),
                       "reached": int(sum(q is not None for q in reach)),
                       "seeds": len(final)}
            if t.name in hvs:
                hv = np.asarray(hvs[t.name][s], dtype=float)
                rows[s]["hypervolume"] = float(hv.mean())
                rows[s]["hypervolume_per_seed"] = hv.tolist()
                rows[s]["hypervolume_std"] = (float(hv.std(ddof=1)) if len(hv) > 1
                                              else math.nan)
        pairs = wilcoxon_pairs(finals[t.name]) if len(config.seed_list()) > 1 else {}
        tasks[t.name] = {"budget": d["budget"], "target": target, "target_from": why,
                         "report_metric": t.report_metric, "ylabel": d.get("ylabel"),
                         "optimum": t.optimum, "strategies": rows,
                         "wilcoxon": [{"a": a, "b": b, **v} for (a, b), v in pairs.items()]}
    ranks = average_ranks(finals)
    regret = mean_normalised_regret(finals, {t.name: t.optimum for t in config.tasks},
                                    {t.name: t.worst for t in config.tasks})
    board = sorted(ranks, key=lambda s: (ranks[s], regret[s]))
    out = {"name": config.name, "seeds": config.seed_list(), "tasks": tasks,
           "leaderboard": [{"strategy": s, "average_rank": ranks[s],
                            "mean_normalised_regret": regret[s]} for s in board]}
    if hvs:
        hv_ranks = average_ranks(hvs)
        mean_hv = {s: float(np.mean([np.mean(per[s]) for per in hvs.values()]))
                   for s in hv_ranks}
        out["hypervolume_leaderboard"] = [
            {"strategy": s, "average_rank": hv_ranks[s], "mean_hypervolume": mean_hv[s]}
            for s in sorted(hv_ranks, key=lambda s: (hv_ranks[s], -mean_hv[s]))]
        out["hypervolume_tasks"] = list(hvs)  # in the config's order
    return out


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def markdown(config: StudyConfig, summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [f"# nastk study: {config.name}", "",
             f"{len(config.tasks)} tasks x {len(config.strategies)} strategies x {len(seeds)} "
             f"seeds ({seeds[0]}..{seeds[-1]}); values are each task's report metric of the "
             "incumbent (best by the objective so far), larger is better; std is the sample "
             "standard deviation over seeds.", "",
             "## Cross-task leaderboard", "",
             "Average rank over tasks (by the mean at the final budget; ties share ranks) and "
             "the mean normalised regret ((optimum - value) / (optimum - worst), per task "
             "against the true optimum and worst where the config gives them, else the best "
             "and worst value the study reached).", "",
             "| # | strategy | average rank | mean normalised regret |", "|---|---|---|---|"]
    for i, row in enumerate(summary["leaderboard"], start=1):
        lines.append(f"| {i} | {row['strategy']} | {row['average_rank']:.2f} | "
                     f"{row['mean_normalised_regret']:.4f} |")
    if "hypervolume_leaderboard" in summary:
        lines += ["", "## Hypervolume leaderboard", "",
                  "Over the tasks whose objective has costs "
                  f"({', '.join(summary['hypervolume_tasks'])}): "
                  "average rank by the mean hypervolume of each run's evaluated "
                  "architectures (metric and costs, each normalised to [0, 1] between the worst "
                  "and best value the task's runs reached; reference point "
                  f"{HV_REFERENCE} in every entry), and the mean hypervolume.", "",
                  "| # | strategy | average rank | mean hypervolume |", "|---|---|---|---|"]
        for i, row in enumerate(summary["hypervolume_leaderboard"], start=1):
            lines.append(f"| {i} | {row['strategy']} | {row['average_rank']:.2f} | "
                         f"{row['mean_hypervolume']:.4f} |")
    lines += ["", "![best-so-far curves](study_curves.png)", ""]
    for t in config.tasks:
        s = summary["tasks"][t.name]
        metric = t.report_metric or t.objective.get("metric") or "the objective"
        lines += [f"## {t.name}", "",
                  f"Report metric `{metric}`, budget {s['budget']} trials, target "
                  f"{_fmt(s['target'], 6)} ({s['target_from']})"
                  + (f", optimum {_fmt(t.optimum, 6)}" if t.optimum is not None else "") + ".",
                  "", "| strategy | final (mean +- std) | queries to target (median; reached) |",
                  "|---|---|---|"]
        multi = t.name in summary.get("hypervolume_tasks", [])
        if multi:
            lines[-2] += " hypervolume (mean +- std) |"
            lines[-1] += "---|"
        for name, r in s["strategies"].items():
            med = r["median_queries_to_target"]
            med_text = f">{s['budget']}" if med > s["budget"] else f"{med:.0f}"
            lines.append(f"| {name} | {_fmt(r['mean'], 6)} +- {_fmt(r['std'], 3)} | "
                         f"{med_text}; {r['reached']}/{r['seeds']} |"
                         + (f" {r['hypervolume']:.4f} +- {_fmt(r['hypervolume_std'], 3)} |"
                            if multi else ""))
        if s["wilcoxon"]:
            lines += ["", "Paired two-sided Wilcoxon signed-rank tests over seeds (final "
                      "values; mean difference first minus second):", "",
                      "| pair | mean difference | W | p |", "|---|---|---|---|"]
            for w in s["wilcoxon"]:
                lines.append(f"| {w['a']} vs {w['b']} | {_fmt(w['mean_diff'], 4)} | "
                             f"{_fmt(w['statistic'], 4)} | {_fmt(w['p'], 3)} |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(config: StudyConfig, data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(config.tasks)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, t in zip(axes.flat, config.tasks, strict=False):
        for s, per_seed in data[t.name]["curves"].items():
            arr = np.asarray(per_seed, dtype=float)
            x = np.arange(1, arr.shape[1] + 1)
            mean = np.nanmean(arr, axis=0)
            std = np.nanstd(arr, axis=0, ddof=1) if arr.shape[0] > 1 else np.zeros_like(mean)
            ax.plot(x, mean, label=s)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        if t.optimum is not None:
            ax.axhline(t.optimum, color="k", lw=0.8, ls="--")
        ax.set_title(t.name, fontsize=10)
        ax.set_xlabel("trials")
        ax.set_ylabel(data[t.name].get("ylabel", "best so far"), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{config.name}: best so far, mean +- std over {len(config.seed_list())} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_study_report(config: StudyConfig) -> tuple[Path, dict[str, Any]]:
    """Write ``report.md``, ``study_curves.png`` and ``study.json`` into the study's folder;
    returns the report's path and the summary (what ``study.json`` holds)."""
    root = config.resolved_run_dir()
    data = collect(config)
    summary = summarize(config, data)
    (root / layout.STUDY_JSON).write_text(json.dumps(summary, indent=1))
    plot_curves(config, data, root / layout.STUDY_CURVES_PNG)
    path = root / layout.REPORT_MD
    path.write_text(markdown(config, summary))
    return path, summary
