"""From a validated config to a finished run: build plugins, run the search, write the report."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import nastk
from nastk import registry
from nastk.config import IDENTITY_EXCLUDES, SearchConfig
from nastk.errors import ConfigError, StoreError
from nastk.evaluation.base import Evaluator, FunctionEvaluator
from nastk.evaluation.train import TrainEvaluator
from nastk.objective import Objective
from nastk.space.search_space import SearchSpace
from nastk.store import RunStore
from nastk.strategies.base import Strategy
from nastk.task import Task
from nastk.trial import Trial


def import_plugins(modules: list[str]) -> None:
    """Import modules that register plugins (``plugins:`` in a config)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {name!r}: {err}. Is it installed or on "
                              "PYTHONPATH?") from err


def resolve_function(spec: str) -> Callable[..., Any]:
    """``package.module:attr`` -> the object."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"evaluator.function: cannot import {module_name!r}: {err}") from err
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"evaluator.function: module {module_name!r} has no {attr!r}") from None
    if not callable(fn):
        raise ConfigError(f"evaluator.function: {spec!r} is not callable")
    return fn


@dataclass
class Components:
    """Everything a search needs, built from a config."""

    space: SearchSpace
    task: Task | None
    objective: Objective
    strategy: Strategy
    evaluator: Evaluator


def build_space_and_task(config: SearchConfig) -> tuple[SearchSpace, Task | None]:
    """Import the config's plugins and instantiate its space and task (validating options)."""
    import_plugins(config.plugins)
    space = registry.instantiate(registry.SEARCH_SPACES, config.space.name, config.space.options,
                                 where="space.options")
    task = None
    if config.task is not None:
        task = registry.instantiate(registry.TASKS, config.task.name, config.task.options,
                                    where="task.options")
    return space, task


def build_objective(config: SearchConfig, task: Task | None) -> Objective:
    """The config's objective; metric and direction default to the task's primary metric."""
    metric = config.objective.metric or (task.primary_metric if task else None)
    direction = config.objective.direction or (task.direction if task else "max")
    return Objective(metric=metric, direction=direction, costs=tuple(config.objective.costs))


def build_evaluator(config: SearchConfig, space: SearchSpace, task: Task | None) -> Evaluator:
    """The evaluator ``config.evaluator`` describes (a supernet checkpoint is loaded here)."""
    if config.evaluator.kind == "function":
        assert config.evaluator.function is not None
        return FunctionEvaluator(resolve_function(config.evaluator.function))
    assert task is not None
    if config.evaluator.kind == "supernet":
        assert config.evaluator.supernet is not None
        return build_weight_sharing_evaluator(config, space, task)
    return TrainEvaluator(task, space, config.evaluator.train, seed=config.seed)


def build_components(config: SearchConfig) -> Components:
    """Instantiate the registered plugins a config names (validating their options)."""
    space, task = build_space_and_task(config)
    objective = build_objective(config, task)
    strategy = registry.instantiate(registry.STRATEGIES, config.strategy.name,
                                    config.strategy.options, space, objective, seed=config.seed,
                                    where="strategy.options")
    evaluator = build_evaluator(config, space, task)
    return Components(space, task, objective, strategy, evaluator)


def build_weight_sharing_evaluator(config: SearchConfig, space: SearchSpace,
                                   task: Task) -> Evaluator:
    """A :class:`WeightSharingEvaluator` over the supernet checkpoint a config names, refusing a
    checkpoint trained for another space or task."""
    import json

    from nastk.evaluation.weight_sharing import WeightSharingEvaluator
    from nastk.supernet.base import SupernetModel, SupernetSpace
    from nastk.supernet.training import load_supernet_weights, read_checkpoint

    ws = config.evaluator.supernet
    assert ws is not None and config.task is not None
    if not isinstance(space, SupernetSpace):
        raise ConfigError(f"evaluator.kind 'supernet': search space {config.space.name!r} has "
                          "no supernet (it is not a SupernetSpace); use a weight-sharing space "
                          "such as ofa_mbv3, or evaluator.kind 'train'")
    state = read_checkpoint(ws.checkpoint)
    trained_for = json.loads(state.get("identity", "{}") or "{}")
    wanted = {"space": config.space.model_dump(mode="json"),
              "task": config.task.model_dump(mode="json")}
    for key in ("space", "task"):
        if key in trained_for and trained_for[key] != wanted[key]:
            raise ConfigError(f"evaluator.supernet.checkpoint: {ws.checkpoint} was trained for "
                              f"{key} {trained_for[key]}, this config has {wanted[key]}; use "
                              "the same space and task as the supernet config")
    model = SupernetModel(space, task)
    load_supernet_weights(model, state["model"], str(ws.checkpoint))
    return WeightSharingEvaluator(model, ws, seed=config.seed)


def open_run_store(config: SearchConfig, run_dir: Path, resume: bool) -> RunStore:
    """Open (or create) the store, refusing to mix two different runs in one directory."""
    store_path = run_dir / RunStore.FILENAME
    if resume and not store_path.is_file():
        raise StoreError(f"--resume: no run store at {store_path}; start the run without "
                         "--resume first")
    store = RunStore(store_path)
    identity = store.get_meta("identity")
    if identity is None:
        if store.count():
            raise StoreError(f"{store_path} holds trials but no config; use a new run_dir")
        store.set_meta("identity", config.identity())
        store.set_meta("config", config.model_dump(mode="json"))
        store.set_meta("created", time.time())
        store.set_meta("nastk_version", nastk.__version__)
        return store
    if not resume:
        store.close()
        raise StoreError(f"run directory {run_dir} already holds a run. Pass --resume to "
                         "continue it, or choose another run_dir (--run-dir).")
    identity = {k: v for k, v in identity.items() if k not in IDENTITY_EXCLUDES}
    if identity != config.identity():
        diff = sorted(k for k in set(identity) | set(config.identity())
                      if identity.get(k) != config.identity().get(k))
        store.close()
        raise StoreError(f"--resume: the config differs from the one {run_dir} was started with "
                         f"in {diff}; only budget, name, keep_checkpoints and executor may "
                         "change. Use the original config, or a new run_dir.")
    store.set_meta("config", config.model_dump(mode="json"))
    return store


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
    store = open_run_store(config, run_dir, resume)
    try:
        from nastk.executors import open_executor
        from nastk.search import Search

        objective = components.objective
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
        report_path = report.write_report(run_dir, trials, objective,
                                          title=f"nastk run: {config.name}",
                                          meta=run_meta(config),
                                          curves=components.strategy.curves(),
                                          render=components.space.render)
    finally:
        store.close()
    return Outcome(run_dir, trials, objective, report_path, search.stop_reason,
                   components.space)
