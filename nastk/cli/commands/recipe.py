"""`nastk recipe RECIPE.yaml`: run a chain of stages (supernet training, searches, path-filter
fits, exports) from one file, resumably; the format, the checks before anything runs and the
state are :mod:`nastk.pipelines.recipe`'s, what each stage runs is here.

How a stage that was cut off continues: a ``supernet_train`` stage resumes from its checkpoint
(``resume=True`` once ``supernet.pt`` exists: the last finished epoch), a ``search`` stage from
its store (``resume=True`` once ``store.sqlite`` exists: finished trials are kept and never
evaluated again); ``path_filter_fit`` and ``export`` are cheap and idempotent and simply run
again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nastk.cli.commands.export import export_front, export_run
from nastk.cli.commands.path_filter import fit_from_run
from nastk.cli.commands.supernet_train import train_supernet
from nastk.cli.console import results_console
from nastk.config.compose import build_space, build_task, import_plugins
from nastk.config.schema import PluginRef, SearchConfig, SupernetConfig
from nastk.core import registry
from nastk.core.errors import NastkError
from nastk.pipelines.recipe import (
    ExportOptions,
    PathFilterFitOptions,
    RecipeInterrupted,
    RecipeOutcome,
    ResolvedStage,
    StageRunner,
    load_recipe,
    run_recipe_stages,
)
from nastk.pipelines.search import run_search_config
from nastk.run import layout
from nastk.run.layout import RunLayout
from nastk.run.signals import exit_status, interrupt_name


# -- checks before anything runs ----------------------------------------------------------------
def _check_strategy(ref: PluginRef, source: str | None) -> None:
    """The strategy exists and its options validate, with the errors building it would raise
    (it is not built: that needs the run)."""
    registry.validated_options(registry.STRATEGIES, ref.name, ref.options,
                               where="strategy.options", source=source or "")


def check_stage(stage: ResolvedStage) -> None:
    """What can be checked before the recipe runs, beyond the schema: the plugins import and
    the space's, task's and strategy's options validate (nothing is trained or read)."""
    config = stage.config
    if config is None:
        return
    import_plugins(config.plugins)
    build_space(config.space, source=config.source)
    if config.task is not None:
        build_task(config.task, source=config.source)
    if isinstance(config, SearchConfig):
        _check_strategy(config.strategy, config.source)


# -- the stages ---------------------------------------------------------------------------------
def _supernet_train(stage: ResolvedStage, console: Console, progress: bool) -> dict[str, Any]:
    assert isinstance(stage.config, SupernetConfig)
    resume = RunLayout(stage.config.resolved_run_dir()).supernet_checkpoint.is_file()
    outcome = train_supernet(stage.config, resume=resume, console=console, progress=progress)
    if outcome.history:
        last = outcome.history[-1]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.startswith("val_"))
        console.print(f"{stage.name}: epoch {last['epoch']}: {shown}", highlight=False)
    return {"run_dir": outcome.run_dir, "checkpoint": outcome.checkpoint}


def _search(stage: ResolvedStage, console: Console, progress: bool) -> dict[str, Any]:
    assert isinstance(stage.config, SearchConfig)
    resume = RunLayout(stage.config.resolved_run_dir()).store.is_file()
    outcome = run_search_config(stage.config, resume=resume, console=console, progress=progress)
    objective = outcome.objective
    finished = [t for t in outcome.trials if t.result is not None]
    best = objective.best(finished, key=lambda t: objective.value(t.result))
    if best is None:
        failed = [t for t in finished if not t.result.ok]
        why = f"; the first failed with: {failed[0].result.error}" if failed else ""
        raise NastkError(f"stage {stage.name!r}: no trial of {outcome.run_dir} succeeded{why}")
    value = best.result.value(objective.metric)
    console.print(f"{stage.name}: {len(finished)} trials, best {objective.metric}={value:.4g} "
                  f"(trial {best.id}); report {outcome.report}", highlight=False)
    return {"run_dir": outcome.run_dir, "store": RunLayout(outcome.run_dir).store,
            "report": outcome.report, "best_trial": best.id, "best_score": value}


def _path_filter_fit(stage: ResolvedStage, console: Console, progress: bool) -> dict[str, Any]:
    opts = stage.options
    assert isinstance(opts, PathFilterFitOptions) and stage.run is not None
    stage.dir.mkdir(parents=True, exist_ok=True)
    summary = fit_from_run(stage.run, stage.dir / layout.FILTER_FILE, cost=opts.cost,
                           n_buckets=opts.buckets, holdout=opts.holdout,
                           seed=stage.seed if opts.seed is None else opts.seed,
                           options=opts.filter or None)
    tau = (f"; held-out Kendall tau within {summary.cost} buckets {summary.bucket_tau:.3f}"
           if summary.n_holdout else "")
    console.print(f"{stage.name}: path filter fitted on {summary.n_train} trials{tau}: "
                  f"{summary.file}", highlight=False)
    return {"file": summary.file, "tau": summary.bucket_tau}


def _export(stage: ResolvedStage, console: Console, progress: bool) -> dict[str, Any]:
    opts = stage.options
    assert isinstance(opts, ExportOptions) and stage.run is not None
    if opts.front:
        exported = export_front(stage.run, stage.dir)
    else:
        exported = [export_run(stage.run, stage.dir, opts.trial)]
    for e in exported:
        for note in e.notes:
            console.print(f"note: {note}", highlight=False)
    console.print(f"{stage.name}: exported {len(exported)} trial(s) "
                  f"{[e.trial.id for e in exported]} into {stage.dir}", highlight=False)
    return {"dir": stage.dir, "trials": [e.trial.id for e in exported]}


def _summary(kind: str) -> Any:
    def text(out: dict[str, Any]) -> str:
        if kind == "supernet_train":
            return f"checkpoint {out['checkpoint']}"
        if kind == "search":
            return f"best {out['best_score']:.4g} (trial {out['best_trial']}); {out['report']}"
        if kind == "path_filter_fit":
            tau = out.get("tau")
            return f"{out['file']}" + (f" (tau {tau:.3f})" if tau is not None else "")
        return f"{len(out['trials'])} trial(s) -> {out['dir']}"

    return text


RUNNERS: dict[str, StageRunner] = {
    "supernet_train": StageRunner(_supernet_train, check_stage, _summary("supernet_train")),
    "search": StageRunner(_search, check_stage, _summary("search")),
    "path_filter_fit": StageRunner(_path_filter_fit, None, _summary("path_filter_fit")),
    "export": StageRunner(_export, None, _summary("export")),
}


def _check(stage: ResolvedStage) -> None:
    check = RUNNERS[stage.kind].check
    if check is not None:
        check(stage)


def run_recipe(path: str | Path, *, redo: str | None = None, until: str | None = None,
               only: str | None = None, console: Console | None = None,
               progress: bool = True) -> RecipeOutcome:
    """Load the recipe at ``path`` (every stage checked before anything runs), then run its
    stages in order, skipping finished ones and resuming a cut-off one; see
    :func:`nastk.pipelines.recipe.run_recipe_stages` for ``redo``, ``until`` and ``only``."""
    console = console or Console(stderr=True)
    plan = load_recipe(path, check=_check)
    return run_recipe_stages(plan, RUNNERS, redo=redo, until=until, only=only, console=console,
                             progress=progress)


def summary_table(outcome: RecipeOutcome, title: str = "recipe") -> Table:
    """Stages, status, wall time and key outputs, as a terminal table."""
    from nastk.report.formatting import format_duration

    table = Table(title=title, title_justify="left")
    for col in ("stage", "kind", "status", "wall time", "outputs"):
        table.add_column(col, justify="right" if col == "wall time" else "left")
    for row in outcome.stages:
        status = {"ran": "done", "skipped": "done (skipped)"}.get(row.status, row.status)
        wall = format_duration(row.wall_s) if row.wall_s is not None else "-"
        table.add_row(row.name, row.kind, status, wall, row.text)
    return table


# -- the command line ---------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk recipe RECIPE`: run the recipe and print its summary table and state file; on
    Ctrl-C, say where it stopped and how to continue (exit status 130)."""
    try:
        outcome = run_recipe(args.recipe, redo=args.redo, until=args.until, only=args.only,
                             console=console, progress=not args.no_progress)
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGHUP
        name = interrupt_name(err)
        where = (f" in stage {err.stage!r} ({name}); finished stages are recorded in "
                 f"{err.run_dir / layout.RECIPE_STATE}" if isinstance(err, RecipeInterrupted)
                 else f" ({name})")
        console.print(f"interrupted{where}; continue with `nastk recipe {args.recipe}` (it "
                      "skips finished stages and resumes the interrupted one)", highlight=False,
                      soft_wrap=True)
        return exit_status(err)
    out = results_console()
    out.print(summary_table(outcome, title=f"recipe {args.recipe}"))
    out.print(f"state: {outcome.state}")
    return 0
