"""nastk: a task-agnostic neural-architecture-search toolkit.

What a Python user programs against, one example each (the heavier names are imported when
first used, so ``import nastk`` stays light):

- :func:`create_search` / :class:`SearchRun`: a search from a space, an evaluator or a plain
  function, an objective, a strategy, a storage, a budget and an executor::

      search = nastk.create_search(space, lambda a: {"acc": a["x"] / 9}, objective="acc",
                                   strategy="evolution", storage="runs/x", budget=20)
      best = search.optimize()          # search.trials, search.front(), search.write_report()

- :func:`load_run`: a finished run folder, without its plugins::

      run = nastk.load_run("runs/x"); run.best; run.front(); run.write_report(); run.export()

- :class:`SearchSpace` and its dimensions :class:`Categorical`, :class:`IntRange`,
  :class:`StageList`, :class:`CellDAG`; :class:`Architecture` (what a space holds)::

      space = nastk.SearchSpace([nastk.IntRange("x", 0, 9), nastk.Categorical("op", ["a", "b"])])
      arch = space.sample(numpy.random.default_rng(0)); arch["x"]; arch.key

- :class:`Objective`: the metric, its direction and costs::

      nastk.Objective(metric="loss", direction="min", costs=("flops",))

- :class:`Result` / :class:`Status` / :class:`Trial`: what an evaluation gives and a run holds::

      nastk.Result.complete({"acc": 0.9}, {"params": 1e5}); trial.result.metrics["acc"]

- :class:`Budget`: when a search stops::

      nastk.Budget(trials=100, time_s=3600)

- :class:`Evaluator` (the protocol), :class:`FunctionEvaluator`, :class:`TrainEvaluator` and
  :class:`TrainConfig`: scoring an architecture by a function, or by training it on a task::

      nastk.TrainEvaluator(task, space, nastk.TrainConfig(epochs=6, lr=5e-3), seed=0)

- :class:`Task`: the task contract (data, head, loss, metrics); built-in tasks by name::

      task = nastk.registry.instantiate(nastk.registry.TASKS, "classification", {})

- :class:`Strategy`: the ask/tell base of every strategy (a user's own subclasses it)::

      class Sweep(nastk.Strategy): ...   # ask(n), tell(arch, result), state_dict()

- :class:`Storage`, :class:`MemoryStorage`, :class:`RunStore`: where a run is kept::

      nastk.create_search(..., storage=nastk.MemoryStorage())

- :class:`ExecutorConfig`: where candidates run (this process, or a Ray cluster)::

      nastk.create_search(..., executor={"kind": "ray", "mode": "actors", "actors": 4})

- :class:`SchedulerConfig`: successive halving, ASHA or Hyperband over the evaluator's epochs,
  in one line::

      nastk.create_search(..., scheduler="hyperband", budget={"trials": 200, "resource": 300})

- ``registry``: the plugin registries (``SEARCH_SPACES``, ``TASKS``, ``STRATEGIES``,
  ``PREDICTORS``)::

      nastk.registry.STRATEGIES.register("sweep", Sweep)

- Errors: :class:`NastkError` (every nastk error), :class:`ConfigError`,
  :class:`InvalidArchitectureError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nastk.core import cpus as _cpus  # noqa: F401  (first: OpenMP's wait policy before torch)
from nastk.core import registry
from nastk.core.errors import ConfigError, InvalidArchitectureError, NastkError
from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.core.version import __version__
from nastk.space import (
    Architecture,
    Categorical,
    CellDAG,
    IntRange,
    SearchSpace,
    StageList,
)

if TYPE_CHECKING:
    from nastk.api import SearchRun, create_search, load_run
    from nastk.config.executors import ExecutorConfig
    from nastk.evaluation.base import Evaluator, FunctionEvaluator
    from nastk.evaluation.train import TrainConfig, TrainEvaluator
    from nastk.run.loop import Budget
    from nastk.run.memory_store import MemoryStorage
    from nastk.run.sqlite_store import RunStore
    from nastk.run.storage import Storage
    from nastk.scheduling.config import SchedulerConfig
    from nastk.strategies.base import Strategy
    from nastk.task.contract import Task

#: names imported on first use: name -> module
_LAZY = {
    "SearchRun": "nastk.api", "create_search": "nastk.api", "load_run": "nastk.api",
    "ExecutorConfig": "nastk.config.executors",
    "Evaluator": "nastk.evaluation.base", "FunctionEvaluator": "nastk.evaluation.base",
    "TrainConfig": "nastk.evaluation.train", "TrainEvaluator": "nastk.evaluation.train",
    "Budget": "nastk.run.loop", "MemoryStorage": "nastk.run.memory_store",
    "RunStore": "nastk.run.sqlite_store", "Storage": "nastk.run.storage",
    "SchedulerConfig": "nastk.scheduling.config",
    "Strategy": "nastk.strategies.base", "Task": "nastk.task.contract",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nastk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Architecture", "Budget", "Categorical", "CellDAG", "ConfigError", "Evaluator",
           "ExecutorConfig", "FunctionEvaluator", "IntRange", "InvalidArchitectureError",
           "MemoryStorage", "NastkError", "Objective", "Result", "RunStore", "SchedulerConfig",
           "SearchRun", "SearchSpace", "StageList", "Status", "Storage", "Strategy", "Task",
           "TrainConfig", "TrainEvaluator", "Trial", "__version__", "create_search", "load_run",
           "registry"]
