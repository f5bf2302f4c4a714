"""`nastk compare`: finished runs' best-so-far curves grouped by strategy (mean ± std over
seeds). Each run's objective and trials come from its store; no plugin is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from nastk import report
from nastk.commands.run_record import open_run
from nastk.errors import NastkError
from nastk.objective import Objective


@dataclass
class GroupSummary:
    """One group of runs (e.g. all seeds of one strategy)."""

    name: str
    runs: list[Path]
    curves: list[list[tuple[int, float]]]
    final: list[float]  # best value each run reached

    @property
    def mean(self) -> float:
        return float(np.mean(self.final)) if self.final else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.final)) if self.final else float("nan")


def compare_runs(run_dirs: list[Path], by: Literal["strategy", "name"] = "strategy"
                 ) -> tuple[Objective, dict[str, GroupSummary]]:
    """Load each run's trials and group their best-so-far curves by strategy (or run name).
    All runs must optimise the same metric in the same direction."""
    if not run_dirs:
        raise NastkError("compare: give at least one run directory")
    groups: dict[str, GroupSummary] = {}
    objective: Objective | None = None
    for run_dir in run_dirs:
        record = open_run(run_dir)
        config, trials, obj = record.config, record.trials, record.objective
        if objective is None:
            objective = obj
        elif (obj.metric, obj.direction) != (objective.metric, objective.direction):
            raise NastkError(f"compare: {run_dir} optimises {obj.metric} ({obj.direction}) but "
                             f"{run_dirs[0]} optimises {objective.metric} "
                             f"({objective.direction}); compare runs of one objective")
        key = config.strategy.name if by == "strategy" else config.name
        group = groups.setdefault(key, GroupSummary(key, [], [], []))
        curve = report.best_so_far(trials, obj)
        group.runs.append(run_dir)
        group.curves.append(curve)
        if curve:
            group.final.append(curve[-1][1])
    assert objective is not None
    return objective, groups


def write_comparison(out_dir: Path, objective: Objective,
                     groups: dict[str, GroupSummary]) -> Path:
    """``compare.md`` (table) and ``compare.png`` (curves) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report.plot_compare({k: g.curves for k, g in groups.items()}, out_dir / "compare.png",
                        objective)
    best = max if objective.direction == "max" else min
    lines = [f"# Comparison: best {objective.metric} ({objective.direction})", "",
             "| group | runs | final best mean ± std | best run value |",
             "| --- | ---: | ---: | ---: |"]
    for g in groups.values():
        top = f"{best(g.final):.4f}" if g.final else "-"
        lines.append(f"| {g.name} | {len(g.runs)} | {g.mean:.4f} ± {g.std:.4f} | {top} |")
    lines += ["", "![best so far](compare.png)", ""]
    path = out_dir / "compare.md"
    path.write_text("\n".join(lines))
    return path
