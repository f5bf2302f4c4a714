"""The Python API: a search built from objects, run by the same engine as ``nastk search``.

>>> import nastk
>>> space = nastk.SearchSpace([nastk.IntRange("x", 0, 20), nastk.Categorical("op", ["a", "b"])])
>>> search = nastk.create_search(space, lambda arch: {"score": -(arch["x"] - 7) ** 2},
...                              objective="score", strategy="evolution", budget=25)
>>> best = search.optimize()  # doctest: +SKIP

A search has a space, an evaluator (an :class:`~nastk.evaluation.base.Evaluator`, or a plain
function ``arch -> metrics`` or ``arch -> (metrics, costs)``), an objective (what to maximise
or minimise), a strategy (an instance, or a registered name with options), a storage (a run
folder, a :class:`~nastk.run.storage.Storage`, or nothing: in memory), a budget and an
executor (in this process, or a Ray cluster). It is run, resumed, locked, described and
reported by :mod:`nastk.run.lifecycle`, exactly like a search started from a YAML config, and a
run folder it wrote is read back with :func:`load_run` (or ``nastk report``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from rich.console import Console

from nastk.config.executors import ExecutorConfig
from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.core.options import format_validation_error, options_of
from nastk.core.trial import Trial
from nastk.core.version import __version__
from nastk.evaluation.base import (
    Evaluator,
    ResourceFunctionEvaluator,
    as_evaluator,
    evaluator_identity,
)
from nastk.executors import evaluator_kind
from nastk.run.layout import RunLayout
from nastk.run.lifecycle import (
    SearchSetup,
    StorageTarget,
    open_storage,
    run_search,
    tune_storage,
)
from nastk.run.loop import Budget, TrialCallback
from nastk.run.record import RunRecord, open_run
from nastk.run.storage import Storage
from nastk.scheduling.config import SchedulerConfig, build_scheduler
from nastk.scheduling.fidelity import Fidelity, fidelity_of
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy
from nastk.transfer.use import WarmStartUse, warm_start_row, warm_start_strategy

if TYPE_CHECKING:
    from nastk.latency.predictor import LatencyPredictor

__all__ = ["SearchRun", "create_search", "load_run"]


class _Identity:
    """A fixed identity (a search built in Python has no config to derive it from)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = json.loads(json.dumps(data))  # as the store gives it back (lists, not tuples)

    def identity(self) -> dict[str, Any]:
        return self._data


def _class_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _options_of(obj: object) -> dict[str, Any]:
    options = getattr(obj, "options", None)
    return options.model_dump(mode="json") if hasattr(options, "model_dump") else {}


def _objective(objective: Objective | str | Mapping[str, Any] | None,
               direction: Literal["max", "min"] | None, costs: Sequence[str],
               task: Any) -> Objective:
    if isinstance(objective, Objective):
        if direction is not None or costs:
            raise ConfigError("objective: pass direction and costs inside the Objective, or "
                              "give the metric's name with direction=... and costs=...")
        return objective
    if isinstance(objective, Mapping):
        return Objective.model_validate({"direction": direction or "max", "costs": tuple(costs),
                                         **objective})
    metric = objective or (task.primary_metric if task is not None else None)
    if metric is None:
        raise ConfigError("objective: name the metric to optimise (a key of what the evaluator "
                          "returns), e.g. objective='accuracy' (and direction='min' for a loss)")
    default = task.direction if task is not None and objective is None else "max"
    return Objective(metric=metric, direction=direction or default, costs=tuple(costs))


def _strategy(strategy: Strategy | str, options: Mapping[str, Any] | None, space: SearchSpace,
              objective: Objective, seed: int) -> tuple[Strategy, str]:
    """The strategy and the name it is known by (registered, else its class)."""
    if isinstance(strategy, Strategy):
        if options:
            raise ConfigError("strategy_options: give options with a strategy's name, not with "
                              f"a strategy object ({type(strategy).__name__} has its own)")
        return strategy, registry.STRATEGIES.name_of(strategy) or _class_name(strategy)
    if not isinstance(strategy, str):
        raise TypeError(f"strategy: expected a registered name (one of "
                        f"{', '.join(registry.STRATEGIES.names())}) or a nastk Strategy, got "
                        f"{type(strategy).__name__}")
    return registry.instantiate(registry.STRATEGIES, strategy, options, space, objective,
                                seed=seed, where="strategy_options"), strategy


def _budget(budget: Budget | int | Mapping[str, Any]) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, int) and not isinstance(budget, bool):
        return Budget(trials=budget)
    if isinstance(budget, Mapping):
        return Budget.model_validate(dict(budget))
    raise TypeError(f"budget: expected a number of trials, a Budget or a mapping of its fields, "
                    f"got {type(budget).__name__}")


def _scheduler_config(scheduler: SchedulerConfig | str | Mapping[str, Any] | None
                      ) -> SchedulerConfig | None:
    if scheduler is None or isinstance(scheduler, SchedulerConfig):
        return scheduler
    if isinstance(scheduler, (str, Mapping)):
        try:
            return SchedulerConfig.model_validate(scheduler)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "scheduler",
                                                      schema=SchedulerConfig)) from None
    raise TypeError(f"scheduler: expected 'sh', 'asha', 'hyperband', a SchedulerConfig or a "
                    f"mapping of its fields, got {type(scheduler).__name__}")


def _executor(executor: ExecutorConfig | str | Mapping[str, Any] | None) -> ExecutorConfig | None:
    if executor is None or isinstance(executor, ExecutorConfig):
        return executor
    if isinstance(executor, (str, Mapping)):
        return ExecutorConfig.model_validate(executor)
    raise TypeError(f"executor: expected 'local', 'ray', an ExecutorConfig or a mapping of its "
                    f"fields, got {type(executor).__name__}")


class SearchRun:
    """A search built in Python, open on its storage: :meth:`optimize` runs it; the trials,
    the best one, the front and the report are read from its store. Holds the run folder's
    lock until :meth:`close` (or the end of a ``with`` block, or of the process)."""

    def __init__(self, setup: SearchSetup, store: Storage, run_dir: Path | None) -> None:
        self.setup = setup
        self.store = store
        self.run_dir = run_dir
        #: why the last :meth:`optimize` stopped
        self.stop_reason = ""
        self._closed = False

    def __repr__(self) -> str:
        where = self.run_dir if self.run_dir is not None else "in memory"
        return (f"SearchRun({self.setup.name!r}, {len(self.trials)} trials, "
                f"{self.setup.objective.metric} {self.setup.objective.direction}, {where})")

    # -- running ------------------------------------------------------------------------------
    def optimize(self, trials: int | None = None, *, time_s: float | None = None,
                 progress: bool = False, on_trial: TrialCallback | None = None) -> Trial | None:
        """Search until the run holds ``trials`` finished trials (default: the budget's; a
        larger number extends the run) or ``time_s`` seconds pass; returns the best trial.
        Candidates run on the search's executor; a repeated architecture is answered from
        the store. Killed at any point, a run folder's search continues exactly where it
        stopped when created again with ``resume=True``."""
        from nastk.executors import open_executor

        self._check_open()
        updates = {k: v for k, v in (("trials", trials), ("time_s", time_s)) if v is not None}
        budget = self.setup.budget.model_copy(update=updates) if updates else self.setup.budget
        budget = Budget.model_validate(budget.model_dump())  # the same checks as a config's
        setup = dataclasses.replace(self.setup, budget=budget)
        with tune_storage(self.run_dir) as storage_dir, open_executor(
                setup.executor, setup.evaluator_factory(), setup.objective, setup.evaluator,
                storage_dir) as (executor, where):
            outcome = run_search(setup, self.store, self.run_dir, executor=executor,
                                 where=where, resume=True,
                                 console=Console(stderr=True, quiet=not progress),
                                 progress=progress, on_trial=on_trial)
        self.stop_reason = outcome.stop_reason
        return self.best

    # -- results ------------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every trial of the run, in evaluation order."""
        return self.store.trials()

    def record(self) -> RunRecord:
        """The run as :func:`load_run` reads it (for a run kept in memory too)."""
        from nastk.run.sqlite_store import META_CURVES, META_RENDERED

        return RunRecord(self.run_dir, None, self.trials,
                         self.setup.objective, self.setup.description,
                         self.store.load_strategy_state(), self.store.get_meta(META_CURVES),
                         self.store.get_meta(META_RENDERED), rungs=self.store.rungs())

    @property
    def best(self) -> Trial | None:
        """The best successful trial by the objective (``None`` before one succeeded)."""
        return self.record().best

    def front(self) -> list[Trial]:
        """The Pareto front of the objective's metric and costs."""
        return self.record().front()

    def leaderboard(self, top: int = 10) -> list[dict[str, Any]]:
        """The ``top`` successful trials, best first."""
        return self.record().leaderboard(top)

    def write_report(self, out_dir: str | Path | None = None) -> Path:
        """Write ``report.md`` and its plots (default: into the run folder)."""
        return self.record().write_report(out_dir)

    # -- lifetime -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError(f"search {self.setup.name!r} is closed; create it again with "
                              "resume=True to continue it")

    def close(self) -> None:
        """Close the run folder's store and release its lock (a storage object given to
        :func:`create_search` stays open: it is the caller's)."""
        if not self._closed and self.run_dir is not None:
            self.store.close()
        self._closed = True

    def __enter__(self) -> SearchRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_search(space: SearchSpace | str, evaluator: Evaluator | Any, *,
                  objective: Objective | str | Mapping[str, Any] | None = None,
                  direction: Literal["max", "min"] | None = None, costs: Sequence[str] = (),
                  strategy: Strategy | str = "evolution",
                  strategy_options: Mapping[str, Any] | None = None,
                  space_options: Mapping[str, Any] | None = None,
                  storage: StorageTarget = None, budget: Budget | int | Mapping[str, Any] = 20,
                  executor: ExecutorConfig | str | Mapping[str, Any] | None = None,
                  seed: int = 0, name: str = "search", task: Any = None,
                  keep_checkpoints: int = 3, resume: bool = False,
                  scheduler: SchedulerConfig | str | Mapping[str, Any] | None = None,
                  warm_start: WarmStartUse | Mapping[str, Any] | None = None,
                  latency: str | Path | LatencyPredictor | None = None
                  ) -> SearchRun:
    """Create a search (or, with ``resume=True``, continue the one its storage holds).

    - ``space``: a :class:`~nastk.space.search_space.SearchSpace`, or a registered space's
      name (with ``space_options``).
    - ``evaluator``: an evaluator, or a function ``arch -> {metric: value}`` (or ``-> (metrics,
      costs)``); anything else is refused here, saying what was expected.
    - ``objective``: the metric to optimise (with ``direction`` and ``costs``), an
      :class:`~nastk.core.objective.Objective`, or ``None`` for the ``task``'s primary metric.
    - ``strategy``: a registered name (``evolution``, ``bo``, ``rl``, ...; ``nastk list``) with
      ``strategy_options``, or a strategy object.
    - ``storage``: a run folder (a SQLite store, locked while this search is open), a storage
      object, or ``None`` (in memory).
    - ``budget``: the number of distinct architectures to evaluate, or a
      :class:`~nastk.run.loop.Budget`.
    - ``executor``: ``None``/``"local"`` (this process), ``"ray"`` or an executor config
      (``{"kind": "ray", "mode": "actors", ...}``).
    - ``scheduler``: ``"sh"``, ``"asha"``, ``"hyperband"`` or a scheduler config
      (``{"kind": "hyperband", "reduction_factor": 3}``; see
      :class:`~nastk.scheduling.config.SchedulerConfig`): how far each candidate trains and
      which continue, over the evaluator's resource (a train evaluator's epochs; a function
      ``f(arch, resource)`` with ``max_resource``). With ``budget={"resource": N}`` the run
      spends at most N epochs (or steps) over all candidates and rungs.
    - ``warm_start``: ``{"from": [RUN_OR_STUDY_DIR, ...], "tasks": [...]}`` (see
      :class:`~nastk.transfer.use.WarmStartUse`): start from earlier runs' results, each
      earlier task weighted by how well its ranking agrees with this search's results so far
      (strategies ``evolution``, ``bo``, ``predictor_guided``).
    - ``latency``: a latency table (``nastk latency profile``) or a
      :class:`~nastk.latency.predictor.LatencyPredictor`: every candidate's ``latency_ms`` is
      the table's prediction for the ``task``'s input shape instead of a timing here (a cost
      the objective may name), as ``latency: {table}`` does in a config; needs an evaluator
      that builds models (a :class:`~nastk.evaluation.train.TrainEvaluator` or a
      weight-sharing one).

    A run folder that already holds a run is refused unless ``resume=True``; then its stored
    identity (space, strategy and options, evaluator, objective, seed) must be this one's, and
    the search continues exactly where it stopped (with ``resume=True`` and no run there yet,
    the run starts: a script run again after a kill picks up its own run).
    """
    if isinstance(space, str):
        space = registry.instantiate(registry.SEARCH_SPACES, space, space_options,
                                     where="space_options")
    elif not isinstance(space, SearchSpace):
        raise TypeError(f"space: expected a nastk SearchSpace or a registered space's name, got "
                        f"{type(space).__name__}")
    elif space_options:
        raise ConfigError("space_options: give options with a space's name, not with a space "
                          "object")
    sch_config = _scheduler_config(scheduler)
    if (sch_config is not None and sch_config.active and sch_config.max_resource is not None
            and fidelity_of(evaluator) is None and callable(evaluator)
            and not isinstance(evaluator, Evaluator)):
        ev: Evaluator = ResourceFunctionEvaluator(evaluator, Fidelity(
            "resource", sch_config.max_resource,
            min=min(sch_config.min_resource or 1.0, sch_config.max_resource)))
    else:
        ev = as_evaluator(evaluator)
    obj = _objective(objective, direction, costs, task)
    strat, strategy_name = _strategy(strategy, strategy_options, space, obj, seed)
    if strat.space is not space:
        raise ConfigError(f"strategy: {type(strat).__name__} searches another space "
                          f"({strat.space!r}); build it over this search's space")
    if strat.objective != obj:
        raise ConfigError(f"strategy: {type(strat).__name__} optimises {strat.objective}, "
                          f"this search {obj}; build it with the search's objective")
    latency_table = _use_latency(latency, ev, space, task)
    prior = None
    if warm_start is not None:
        use = (warm_start if isinstance(warm_start, WarmStartUse)
               else options_of(WarmStartUse, dict(warm_start), what="warm_start"))
        prior = warm_start_strategy(use, strat, "warm_start")
    ex = _executor(executor)
    run_budget = _budget(budget)
    try:
        sched = build_scheduler(sch_config, fidelity_of(ev), obj)
    except ValueError as err:
        raise ConfigError(f"scheduler: {err}") from None
    space_name = registry.SEARCH_SPACES.name_of(space)
    identity = {
        "kind": "python",
        "space": {"class": _class_name(space), "name": space.name, "options": _options_of(space),
                  "dimensions": space.spec()},
        "strategy": {"name": strategy_name, "options": _options_of(strat), "seed": strat.seed},
        "evaluator": evaluator_identity(ev),
        "objective": obj.model_dump(mode="json"),
        "task": None if task is None else {"name": getattr(task, "name", _class_name(task)),
                                           "options": _options_of(task)},
    }
    if sched is not None and sch_config is not None:  # absent without one: older runs match
        identity["scheduler"] = sch_config.model_dump(mode="json")
    if latency_table is not None:  # likewise absent without one
        identity["latency"] = latency_table
    description = {
        "space": {"name": space_name or space.name, "options": _options_of(space)},
        "task": identity["task"],
        "strategy": {"name": strategy_name, "options": _options_of(strat)},
        "evaluator": evaluator_kind(ev), "seed": strat.seed, "nastk_version": __version__,
    }
    setup = SearchSetup(
        name=name, space=space, strategy=strat, evaluator=ev, objective=obj, budget=run_budget,
        identity=_Identity(identity), description=description, task=task,
        keep_checkpoints=keep_checkpoints, executor=ex,
        report_meta={"space": description["space"]["name"], "strategy": strategy_name,
                     "evaluator": description["evaluator"], "seed": strat.seed,
                     "budget (trials)": run_budget.trials,
                     "executor": ex.kind if ex is not None else "local",
                     **({"scheduler": sched.describe()} if sched is not None else {}),
                     **warm_start_row(prior)},
        scheduler=sched, warm_start=prior.describe() if prior is not None else None)
    if resume and isinstance(storage, (str, Path)) and not RunLayout(Path(storage)).store.exists():
        resume = False  # nothing to continue yet: the run starts (a script run again after a kill)
    store, run_dir = open_storage(setup, storage, resume=resume)
    return SearchRun(setup, store, run_dir)


def _use_latency(latency: str | Path | LatencyPredictor | None, evaluator: Evaluator,
                 space: SearchSpace, task: Any) -> dict[str, Any] | None:
    """Give ``evaluator`` the latency predictor ``latency`` names; what the run's identity
    records of it (``None`` without one). Refuses, with the fix, an evaluator that builds no
    model and a table without a task (whose input shape it is for)."""
    if latency is None:
        return None
    from nastk.latency.predictor import LatencyPredictor, space_record

    if not hasattr(evaluator, "latency_predictor"):
        raise ConfigError(f"latency: a latency table predicts a model's latency, and the "
                          f"evaluator {type(evaluator).__name__} builds none; search with a "
                          "TrainEvaluator or a weight-sharing evaluator, or leave latency out")
    if isinstance(latency, LatencyPredictor):
        predictor = latency
        if space_record(predictor.space) != space_record(space):
            raise ConfigError(f"latency: the predictor is for space "
                              f"{space_record(predictor.space)}, not this search's "
                              f"{space_record(space)}; build it over the search's space")
    else:
        if task is None or not hasattr(task, "input_shape"):
            raise ConfigError("latency: a latency table is for a task's input shape; pass the "
                              "search's task (task=...)")
        predictor = LatencyPredictor.load(latency, space, task.input_shape, where="latency")
    evaluator.latency_predictor = predictor  # type: ignore[attr-defined]
    return {"device": predictor.table.device, "created": predictor.table.created,
            "input_shape": list(predictor.table.input_shape)}


def load_run(run_dir: str | Path) -> RunRecord:
    """A run folder read back from its store, without its plugins: ``.trials``, ``.best``,
    ``.front()``, ``.leaderboard()``, ``.write_report()``, ``.export()`` (architectures)."""
    return open_run(run_dir)
