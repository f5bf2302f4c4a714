"""Opening a search run from its directory: what report, compare, export and path-filter fit
read. The config, trials, objective and the run's description come from the store alone;
plugins are built only when a caller asks (and a store written before runs described
themselves falls back to building its space and task for the objective)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nastk
from nastk.config.compose import build_objective, build_space_and_task
from nastk.config.schema import SearchConfig, parse_config
from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.core.trial import Trial
from nastk.run.sqlite_store import (
    META_CONFIG,
    META_CURVES,
    META_OBJECTIVE,
    META_RENDERED,
    META_RUN,
    RunStore,
)


def describe_run(config: SearchConfig) -> dict[str, Any]:
    """What a run is, as stored in its meta: space, task and strategy with their options, the
    evaluator kind, the seed and the nastk version that started it."""
    return {"space": config.space.model_dump(mode="json"),
            "task": config.task.model_dump(mode="json") if config.task else None,
            "strategy": config.strategy.model_dump(mode="json"),
            "evaluator": config.evaluator.kind, "seed": config.seed,
            "nastk_version": nastk.__version__}


@dataclass
class RunRecord:
    """A search run as its store records it."""

    run_dir: Path
    config: SearchConfig
    #: every trial, in evaluation order
    trials: list[Trial]
    objective: Objective
    #: space, task, strategy (with options), evaluator kind, seed, nastk version
    description: dict[str, Any]
    strategy_state: dict[str, Any] | None = None
    #: the strategy's learning curves saved at the end of the last session (None: not saved)
    curves: dict[str, list[float]] | None = None
    #: ``arch key -> rendered text`` saved at the end of the last session (None: not saved)
    rendered: dict[str, str] | None = None

    @property
    def finished(self) -> list[Trial]:
        """Complete and failed trials, in evaluation order."""
        return [t for t in self.trials if t.status in (Status.COMPLETE, Status.FAILED)]


def open_run(run_dir: str | Path) -> RunRecord:
    """The run in ``run_dir`` (a :class:`~nastk.core.errors.StoreError` when there is none)."""
    run_dir = Path(run_dir)
    with RunStore.open_existing(run_dir) as store:
        config = parse_config(store.get_meta(META_CONFIG), f"{run_dir}/store.sqlite:config")
        trials = store.trials()
        state = store.load_strategy_state()
        objective = store.get_meta(META_OBJECTIVE)
        description = store.get_meta(META_RUN)
        curves = store.get_meta(META_CURVES)
        rendered = store.get_meta(META_RENDERED)
        version = store.get_meta("nastk_version")
    if objective is not None:
        resolved = Objective.model_validate(objective)
    else:  # written before runs recorded their objective: resolve it from the task
        resolved = build_objective(config, build_space_and_task(config)[1])
    if description is None:
        description = {**describe_run(config), "nastk_version": version}
    return RunRecord(run_dir, config, trials, resolved, description, state, curves, rendered)
