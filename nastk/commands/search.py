"""`nastk search`: from a validated config to a finished run: build plugins, open the store,
run the search, record how the run describes itself, write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import nastk
from nastk.build import build_components, build_objective, build_space_and_task
from nastk.commands.run_record import describe_run
from nastk.config import IDENTITY_EXCLUDES, SearchConfig
from nastk.errors import StoreError
from nastk.executors import open_executor
from nastk.objective import Objective
from nastk.search import Search
from nastk.space.search_space import SearchSpace
from nastk.store import (
    META_CONFIG,
    META_CURVES,
    META_OBJECTIVE,
    META_RENDERED,
    META_RUN,
    RunStore,
)
from nastk.strategies.base import Strategy
from nastk.trial import Trial


def objective_record(objective: Objective) -> dict[str, Any]:
    """An objective as store meta (read back with ``Objective.model_validate``)."""
    return objective.model_dump(mode="json")


def open_run_store(config: SearchConfig, run_dir: Path, resume: bool,
                   objective: Objective | None = None) -> RunStore:
    """Open (or create) the store, refusing to mix two different runs in one directory. A new
    run records its config, identity, resolved ``objective`` (built from the config's space and
    task when not given) and description in the store's meta."""
    store_path = run_dir / RunStore.FILENAME
    if resume and not store_path.is_file():
        raise StoreError(f"--resume: no run store at {store_path}; start the run without "
                         "--resume first")
    store = RunStore(store_path)
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
    identity = normalized_identity({k: v for k, v in identity.items()
                                    if k not in IDENTITY_EXCLUDES})
    if identity != config.identity():
        diff = sorted(k for k in set(identity) | set(config.identity())
                      if identity.get(k) != config.identity().get(k))
        store.close()
        raise StoreError(f"--resume: the config differs from the one {run_dir} was started with "
                         f"in {diff}; only budget, name, keep_checkpoints and executor may "
                         "change. Use the original config, or a new run_dir.")
    store.set_meta(META_CONFIG, config.model_dump(mode="json"))
    if store.get_meta(META_OBJECTIVE) is None or store.get_meta(META_RUN) is None:
        _describe(store, config, objective)  # a store written before runs described themselves
    return store


def normalized_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """A stored identity re-validated by this version's schema, so that settings added since
    the run was created (at their defaults, e.g. ``evaluator.train.init``) do not make an
    unchanged config look different; returned as stored if it no longer validates."""
    try:
        return SearchConfig.model_validate(identity).identity()
    except ValueError:
        return identity


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
    """Run (or resume) the search a config describes; writes store, checkpoints and report."""
    from nastk import report  # matplotlib is only needed once a run ends

    console = console or Console(stderr=True)
    components = build_components(config)  # fails on bad options before any file is written
    run_dir = config.resolved_run_dir()
    objective = components.objective
    store = open_run_store(config, run_dir, resume, objective)
    try:
        done_before = store.count()
        with open_executor(config, run_dir) as (executor, where):
            if executor is not None:
                console.print(f"executor: {where}", highlight=False)
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.fields[best]}"), console=console,
                          disable=not progress, transient=False) as bar:
                task_id = bar.add_task(f"search {config.name}", total=config.budget.trials,
                                       best="")

                def on_trial(trial: Trial, n_done: int, best: Trial | None) -> None:
                    text = ""
                    if best is not None and best.result is not None:
                        text = (f"best {objective.metric}="
                                f"{best.result.metrics[objective.metric]:.4g}")
                    bar.update(task_id, completed=n_done, best=text)

                search = Search(components.space, components.strategy, components.evaluator,
                                objective, store, config.budget,
                                checkpoint_dir=run_dir / "checkpoints" if config.keep_checkpoints
                                else None,
                                keep_checkpoints=config.keep_checkpoints, on_trial=on_trial,
                                executor=executor)
                bar.update(task_id, completed=min(store.count(), config.budget.trials))
                trials = search.run()
        if done_before and resume:
            console.print(f"resumed {run_dir}: {done_before} trials were already recorded")
        record_for_report(store, trials, components.strategy, components.space)
        report_path = report.write_report(run_dir, trials, objective,
                                          title=f"nastk run: {config.name}",
                                          meta=run_meta(config),
                                          curves=components.strategy.curves(),
                                          render=components.space.render)
    finally:
        store.close()
    return Outcome(run_dir, trials, objective, report_path, search.stop_reason,
                   components.space)
