"""`nastk search`: from a validated config to a finished run: build plugins, open the store,
run the search, record how the run describes itself, write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import nastk
from nastk.config.compose import build_components, build_objective, build_space_and_task
from nastk.config.schema import IDENTITY_EXCLUDES, SearchConfig
from nastk.core.errors import StoreError
from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.core.trial import Trial
from nastk.core.weights import clean_temp_files
from nastk.executors import open_executor
from nastk.report.predictions import draw_best_predictions
from nastk.report.progress import ProgressView
from nastk.run import identity as run_identity
from nastk.run.layout import RunLayout
from nastk.run.lock import lock_run_dir
from nastk.run.loop import Search
from nastk.run.record import describe_run
from nastk.run.sqlite_store import (
    META_CONFIG,
    META_CURVES,
    META_OBJECTIVE,
    META_RENDERED,
    META_RUN,
    RunStore,
    check_run_store,
)
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy


def objective_record(objective: Objective) -> dict[str, Any]:
    """An objective as store meta (read back with ``Objective.model_validate``)."""
    return objective.model_dump(mode="json")


def open_run_store(config: SearchConfig, run_dir: Path, resume: bool,
                   objective: Objective | None = None) -> RunStore:
    """Open (or create) the store, refusing to mix two different runs in one directory. A new
    run records its config, identity, resolved ``objective`` (built from the config's space and
    task when not given) and description in the store's meta."""
    store_path = RunLayout(run_dir).store
    if resume:
        if not store_path.exists():
            raise StoreError(f"--resume: no run store at {store_path}; start the run without "
                             "--resume first")
        check_run_store(store_path)  # empty, unreadable or foreign stores are named as such
        lock = lock_run_dir(run_dir)  # one live process per run folder (names the owner)
        try:
            # left by a write that died (e.g. disk full)
            removed = clean_temp_files(*RunLayout(run_dir).written_folders())
        except BaseException:
            lock.release()
            raise
        store = RunStore(store_path, lock=lock)  # the lock is released by store.close()
        if removed:
            store.set_meta("cleaned_temp_files", [str(p) for p in removed])
    else:
        store = RunStore(store_path, lock=lock_run_dir(run_dir, create=True))
    identity = store.get_meta("identity")
    if identity is None:
        if store.count():
            store.close()
            raise StoreError(f"{store_path} holds trials but no config; use a new run_dir")
        store.set_meta("identity", config.identity())
        store.set_meta(META_CONFIG, config.model_dump(mode="json"))
        store.set_meta("created", time.time())
        store.set_meta("nastk_version", nastk.__version__)
        _describe(store, config, objective)
        return store
    if not resume:
        store.close()
        raise StoreError(f"run directory {run_dir} already holds a run. Pass --resume to "
                         "continue it, or choose another run_dir (--run-dir).")
    differs = identity_differences(identity, config)
    if differs:
        store.close()
        raise StoreError(f"--resume: the config differs from the one {run_dir} was started with "
                         f"{differs}. Only budget, name, keep_checkpoints and executor may "
                         "change. Use the original config, or a new run_dir.")
    store.set_meta(META_CONFIG, config.model_dump(mode="json"))
    if store.get_meta(META_OBJECTIVE) is None or store.get_meta(META_RUN) is None:
        _describe(store, config, objective)  # a store written before runs described themselves
    return store


def identity_differences(stored: dict[str, Any], config: SearchConfig) -> str | None:
    """``None`` when a run's stored identity is ``config``'s (budget, name, run_dir,
    keep_checkpoints and executor aside), else the differences in words."""
    return run_identity.identity_differences(stored, config, excluded=IDENTITY_EXCLUDES)


def _describe(store: RunStore, config: SearchConfig, objective: Objective | None) -> None:
    if objective is None:
        objective = build_objective(config, build_space_and_task(config)[1])
    store.set_meta(META_OBJECTIVE, objective_record(objective))
    store.set_meta(META_RUN, describe_run(config))


def record_for_report(store: RunStore, trials: list[Trial], strategy: Strategy,
                      space: SearchSpace) -> None:
    """Save what the report needs from live plugins into the store's meta: the strategy's
    learning curves and the space's rendering of every trial's architecture, so the run can
    be reported after its plugins are gone."""
    curves = {name: [float(v) for v in values] for name, values in strategy.curves().items()}
    rendered = {}
    for t in trials:
        text = space.render(t.arch)
        if text is not None:
            rendered[t.arch.key] = text
    store.set_meta(META_CURVES, curves)
    store.set_meta(META_RENDERED, rendered)


@dataclass
class Outcome:
    """What `run_experiment` leaves behind."""

    run_dir: Path
    trials: list[Trial]
    objective: Objective
    report: Path
    stop_reason: str
    space: SearchSpace


def run_meta(config: SearchConfig) -> dict[str, Any]:
    """The settings the report's *Run* table lists."""
    return {"space": config.space.name, "task": config.task.name if config.task else "-",
            "strategy": config.strategy.name, "evaluator": config.evaluator.kind,
            "seed": config.seed, "budget (trials)": config.budget.trials,
            "executor": config.executor.kind}


def run_experiment(config: SearchConfig, *, resume: bool = False, console: Console | None = None,
                   progress: bool = True) -> Outcome:
    """Run (or resume) the search a config describes; writes store, checkpoints and report.

    Nothing is written until the run can start: plugins, options, the objective's metric and
    the task's data are checked first (:mod:`nastk.evaluation.preflight`), and a Ray cluster is
    connected
    to before the store is created. An interrupted run (Ctrl-C) still writes its report from
    what the store holds, then re-raises ``KeyboardInterrupt``."""
    console = console or Console(stderr=True)
    components = build_components(config)  # fails on bad options or data before any write
    run_dir = config.resolved_run_dir()
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run_dir {run_dir} is a file, not a folder; choose another "
                         "--run-dir")
    objective = components.objective
    with open_executor(config, run_dir) as (executor, where):
        store = open_run_store(config, run_dir, resume, objective)
        try:
            return _search(config, components, store, run_dir, executor, where, resume,
                           console, progress)
        finally:
            store.close()


def _search(config: SearchConfig, components: Any, store: RunStore, run_dir: Path,
            executor: Any, where: str, resume: bool, console: Console,
            progress: bool) -> Outcome:
    from nastk import report  # matplotlib is only needed once a run ends

    objective = components.objective
    done_before = store.count(Status.COMPLETE, Status.FAILED)
    if executor is not None:
        console.print(f"executor: {where}", highlight=False)
    search: Search | None = None

    def write(trials: list[Trial]) -> Path:
        record_for_report(store, trials, components.strategy, components.space)
        return report.write_report(run_dir, trials, objective, title=f"nastk run: {config.name}",
                                   meta=run_meta(config), curves=components.strategy.curves(),
                                   render=components.space.render)

    try:
        with ProgressView(console, enabled=progress) as view:
            job = view.add(f"search {config.name}", total=config.budget.trials,
                           completed=min(done_before, config.budget.trials), unit="trials")
            failures: dict[str, Any] = {"n": 0, "last": None}

            def on_trial(trial: Trial, n_done: int, best: Trial | None) -> None:
                if trial.result is not None and not trial.result.ok:
                    failures["n"] += 1
                    failures["last"] = trial.result.error
                text = ""
                if best is not None and best.result is not None:
                    text = (f"best {objective.metric}="
                            f"{best.result.metrics[objective.metric]:.4g}")
                view.update(job, completed=n_done, info=text, failed=failures["n"],
                            last_error=failures["last"])

            search = Search(components.space, components.strategy, components.evaluator,
                            objective, store, config.budget,
                            checkpoint_dir=RunLayout(run_dir).checkpoints if config.keep_checkpoints
                            else None,
                            keep_checkpoints=config.keep_checkpoints, on_trial=on_trial,
                            executor=executor)
            trials = search.run()
    except KeyboardInterrupt:
        write(store.finished())  # what finished before the interrupt is reported
        raise
    if done_before and resume:
        console.print(f"resumed {run_dir}: {done_before} trials were already recorded")
    draw_best_predictions(components.task, components.evaluator, trials, objective, run_dir,
                          RunLayout(run_dir).checkpoints if config.keep_checkpoints else None)
    report_path = write(trials)
    return Outcome(run_dir, trials, objective, report_path, search.stop_reason,
                   components.space)


# -- the command line (appended while the run lifecycle above moves to nastk/run/; its imports
# are local so that this block stands on its own) ----------------------------------------------
import argparse  # noqa: E402


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk search CONFIG`: run (or resume) the search with the flags applied to the config,
    then print the leaderboard, the trial counts and where the store and report are. Exit
    status 1 when no trial succeeded; on Ctrl-C, say how to continue (130)."""
    from rich.markup import escape

    from nastk import report  # matplotlib is only needed once a run ends
    from nastk.cli.console import results_console
    from nastk.config.schema import load_config, parse_config
    from nastk.core.errors import ConfigError

    config = load_config(args.config)
    updates = {}
    if args.run_dir is not None:
        updates["run_dir"] = Path(args.run_dir)
    if args.trials is not None or args.time_s is not None:
        budget = config.budget.model_copy(update={
            k: v for k, v in (("trials", args.trials), ("time_s", args.time_s)) if v is not None})
        updates["budget"] = budget
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.executor is not None or args.address is not None:
        kind = args.executor or ("ray" if args.address is not None else config.executor.kind)
        if kind == "local" and args.address is not None:
            raise ConfigError(f"--address {args.address} is for the ray executor; drop it or "
                              "use --executor ray")
        changes: dict[str, object] = {"kind": kind}
        if args.address is not None:
            changes["address"] = args.address
        updates["executor"] = {**config.executor.model_dump(), **changes}
    if updates:
        config = parse_config({**config.model_dump(), **updates}, args.config)
    try:
        outcome = run_experiment(config, resume=args.resume, console=console,
                                 progress=not args.no_progress)
    except KeyboardInterrupt:
        again = ["nastk search", args.config, "--resume"]
        if args.run_dir is not None:
            again += ["--run-dir", args.run_dir]
        if args.trials is not None:
            again += ["--trials", str(args.trials)]
        paths = RunLayout(config.resolved_run_dir())
        console.print(f"interrupted: finished trials are kept in {paths.store}"
                      + (f", report {paths.report}" if paths.report.is_file()
                         else "") + f"; continue with `{' '.join(again)}`", highlight=False,
                      soft_wrap=True)
        return 130
    out = results_console()
    out.print(report.leaderboard_table(
        outcome.trials, outcome.objective, top=args.top, title=f"leaderboard: {config.name}",
        render=outcome.space.render))
    finished = [t for t in outcome.trials if t.result is not None]
    failed = [t for t in finished if not t.result.ok]
    out.print(f"{len(finished)} trials ({len(failed)} failed); stopped: "
              f"{outcome.stop_reason}")
    out.print(f"store:  {RunLayout(outcome.run_dir).store}")
    out.print(f"report: {outcome.report}")
    if len(failed) == len(finished):
        why = (f"; the first failed with: {escape(str(failed[0].result.error))}" if failed
               else "")
        console.print(f"[bold red]error:[/bold red] no trial succeeded{why}", highlight=False,
                      soft_wrap=True)
        return 1
    return 0
