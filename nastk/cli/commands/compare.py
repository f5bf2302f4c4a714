"""`nastk compare`: finished runs' best-so-far curves grouped by strategy or run name (mean ±
sample std over the runs, distinct seeds counted). Each run's objective, seed and trials come
from its store; no plugin is built."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console
from rich.table import Table

from nastk import report
from nastk.cli.console import results_console
from nastk.core.errors import NastkError
from nastk.core.objective import Objective
from nastk.report.plots import GROUPINGS, runs_text
from nastk.run import layout
from nastk.run.record import open_run

Grouping = Literal["strategy", "name"]


@dataclass
class GroupSummary:
    """One group of runs (e.g. all seeds of one strategy)."""

    name: str
    runs: list[Path]
    curves: list[list[tuple[int, float]]]
    final: list[float]  # best value each run reached (runs with a successful trial)
    #: each run's seed, from its stored description (None: not recorded)
    seeds: list[int | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Runs the statistics are over: those with a successful trial."""
        return len(self.final)

    @property
    def mean(self) -> float:
        return float(np.mean(self.final)) if self.final else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) of the final values; NaN for fewer than 2."""
        return float(np.std(self.final, ddof=1)) if len(self.final) > 1 else float("nan")

    @property
    def distinct_seeds(self) -> list[int]:
        return sorted({s for s in self.seeds if s is not None})

    @property
    def repeated_seeds(self) -> dict[int, list[Path]]:
        """Seeds used by more than one run of the group, with those runs."""
        by_seed: dict[int, list[Path]] = {}
        for run, seed in zip(self.runs, self.seeds, strict=False):
            if seed is not None:
                by_seed.setdefault(seed, []).append(run)
        return {s: r for s, r in sorted(by_seed.items()) if len(r) > 1}

    def stats_text(self) -> str:
        """``0.9012 ± 0.0123 (n=3)``; ``0.9012 (n=1)`` without a std; ``- (n=0)``."""
        if not self.final:
            return "- (n=0)"
        if len(self.final) == 1:
            return f"{self.mean:.4f} (n=1)"
        return f"{self.mean:.4f} ± {self.std:.4f} (n={self.n})"


def compare_runs(run_dirs: list[Path], by: Grouping = "strategy"
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
        seed = (record.description or {}).get("seed", config.seed)
        group.runs.append(Path(run_dir))
        group.curves.append(curve)
        group.seeds.append(int(seed) if seed is not None else None)
        if curve:
            group.final.append(curve[-1][1])
    assert objective is not None
    return objective, groups


def default_out_dir(run_dirs: list[Path]) -> Path:
    """``<common parent of the run directories>/comparison`` (absolute)."""
    if not run_dirs:
        raise NastkError("compare: give at least one run directory")
    parents = [str(Path(d).resolve().parent) for d in run_dirs]
    return Path(os.path.commonpath(parents)) / "comparison"


def seed_notes(groups: dict[str, GroupSummary]) -> list[str]:
    """One sentence per group whose runs repeat a seed (they are not independent samples)."""
    notes = []
    for g in groups.values():
        for seed, runs in g.repeated_seeds.items():
            names = ", ".join(str(r) for r in runs)
            notes.append(f"{g.name}: {len(runs)} runs use seed {seed} ({names}); they count "
                         "as one seed, and the std over runs understates the spread over seeds")
    return notes


def summary_table(objective: Objective, groups: dict[str, GroupSummary],
                  by: Grouping = "strategy") -> Table:
    """The comparison as a terminal table: group, runs, distinct seeds, mean ± std (n)."""
    table = Table(title=f"best {objective.metric} ({objective.direction}), runs grouped by "
                        f"{GROUPINGS.get(by, by)}")
    table.add_column(GROUPINGS.get(by, by))
    for col in ("runs", "seeds", "final best mean ± std (n)"):
        table.add_column(col, justify="right")
    for g in groups.values():
        table.add_row(g.name, str(len(g.runs)), str(len(g.distinct_seeds)), g.stats_text())
    return table


def write_comparison(out_dir: Path | None, objective: Objective,
                     groups: dict[str, GroupSummary], *, by: Grouping = "strategy") -> Path:
    """``compare.md`` (table) and ``compare.png`` (curves) in ``out_dir`` (None: the
    :func:`default_out_dir` of the groups' runs, beside them). Returns the markdown's path."""
    if out_dir is None:
        out_dir = default_out_dir([r for g in groups.values() for r in g.runs])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.plot_compare({k: g.curves for k, g in groups.items()}, out_dir / layout.COMPARE_PNG,
                        objective, group_by=by, seeds={k: g.seeds for k, g in groups.items()})
    grouping = GROUPINGS.get(by, by)
    lines = [f"# Comparison: best {objective.metric} ({objective.direction}), runs grouped by "
             f"{grouping}", "",
             f"| {grouping} | runs | seeds | final best mean ± std (n) | best run value |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for g in groups.values():
        best = objective.best(g.final)
        top = f"{best:.4f}" if best is not None else "-"
        lines.append(f"| {g.name} | {len(g.runs)} | {len(g.distinct_seeds)} | "
                     f"{g.stats_text()} | {top} |")
    lines += ["", "*seeds* counts distinct seeds; the std is the sample standard deviation "
              "(n - 1) of the runs' final best values, over the n runs with a successful "
              "trial."]
    notes = seed_notes(groups)
    if notes:
        lines += ["", "Runs repeating a seed:", "", *(f"- {n}" for n in notes)]
    lines += ["", "The solid curves are the mean best so far over a group's runs as far as all "
              "of them go (band: ± std); where runs end (tick), a dotted line continues with the "
              "mean of the runs still going.", "", "![best so far](compare.png)", ""]
    path = out_dir / layout.COMPARE_MD
    path.write_text("\n".join(lines))
    return path


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk compare RUN_DIR...`: write the comparison, print its summary table and notes."""
    objective, groups = compare_runs([Path(d) for d in args.run_dirs], by=args.by)
    path = write_comparison(Path(args.out) if args.out else None, objective, groups, by=args.by)
    out = results_console()
    out.print(summary_table(objective, groups, by=args.by))
    for note in seed_notes(groups):
        console.print(f"note: {note}", highlight=False)
    out.print(f"comparison: {path}")
    return 0


__all__ = ["GroupSummary", "compare_runs", "default_out_dir", "run", "runs_text", "seed_notes",
           "summary_table", "write_comparison"]
