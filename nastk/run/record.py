"""A finished (or running) search run read back from its folder: what ``nastk report``,
``compare``, ``export`` and ``path-filter fit`` read, and what :func:`nastk.load_run` gives a
Python user.

The trials, objective, description, learning curves, rendered architectures and (for a
scheduled run) the rungs come from the store alone, so a run can be read, ranked, reported
and its architectures exported without its plugins (its space, task, strategy or
evaluator). The config is there for runs started from one (``None`` for a search built in
Python); plugins are built only when a caller asks (and a store written before runs
described themselves falls back to building its space and task for the objective).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nastk.core.errors import NastkError
from nastk.core.objective import Objective
from nastk.core.pareto import pareto_front
from nastk.core.result import Status
from nastk.core.trial import Trial
from nastk.core.weights import write_atomic
from nastk.run import layout
from nastk.run.sqlite_store import (
    META_CONFIG,
    META_CURVES,
    META_INTERRUPTED,
    META_OBJECTIVE,
    META_RENDERED,
    META_RUN,
    RunStore,
)
from nastk.run.storage import RungRecord

if TYPE_CHECKING:
    from nastk.config.schema import SearchConfig

__all__ = ["RunRecord", "arch_record", "open_run"]


@dataclass
class RunRecord:
    """A search run as its store records it."""

    #: the run folder (``None``: a run kept in memory, see :meth:`nastk.api.SearchRun.record`)
    run_dir: Path | None
    #: the config the run was started from (``None``: a search built in Python)
    config: SearchConfig | None
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
    #: set when the last session was stopped by a signal: ``{"signal", "at", "finished"}``
    interrupted: dict[str, Any] | None = None
    #: a scheduled run's rung rows, in the order recorded (empty without a scheduler)
    rungs: list[RungRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.config is not None:
            return self.config.name
        return self.run_dir.name if self.run_dir is not None else "search"

    def _folder(self, out_dir: str | Path | None, default: str = "") -> Path:
        if out_dir is not None:
            return Path(out_dir)
        if self.run_dir is None:
            raise NastkError("this run is kept in memory: give the folder to write into")
        return self.run_dir / default if default else self.run_dir

    @property
    def finished(self) -> list[Trial]:
        """Complete and failed trials, in evaluation order."""
        return [t for t in self.trials if t.status in (Status.COMPLETE, Status.FAILED)]

    @property
    def best(self) -> Trial | None:
        """The best successful trial by the run's objective (the first one on ties)."""
        return self.objective.best(self.finished, key=lambda t: (
            self.objective.value(t.result) if t.result is not None else None))

    def front(self) -> list[Trial]:
        """The Pareto front of the objective's metric and costs (the best trial alone when it
        has no costs), by the first cost, then by metric."""
        return pareto_front(self.finished, self.objective)

    def render(self, arch: Any) -> str | None:
        """The space's text of an architecture, as saved with the run (``None``: not saved)."""
        return (self.rendered or {}).get(arch.key)

    def leaderboard(self, top: int = 10) -> list[dict[str, Any]]:
        """The ``top`` successful trials, best first (rows of
        :func:`nastk.report.leaderboard`)."""
        from nastk.report import leaderboard

        return leaderboard(self.trials, self.objective, top=top, render=self.render)

    def report_meta(self) -> dict[str, Any]:
        """The settings the report's *Run* table lists."""
        if self.config is not None:
            return self.config.report_meta()
        d = self.description
        named = {k: (v.get("name") if isinstance(v, dict) else v or "-")
                 for k, v in d.items() if k in ("space", "task", "strategy")}
        return {**named, "evaluator": d.get("evaluator", "-"), "seed": d.get("seed", "-")}

    def write_report(self, out_dir: str | Path | None = None) -> Path:
        """Write ``report.md`` and its plots into ``out_dir`` (default: the run folder) from the
        store alone; returns the report's path."""
        from nastk.report import write_report

        return write_report(self._folder(out_dir), self.trials, self.objective,
                            title=f"nastk run: {self.name}", meta=self.report_meta(),
                            curves=self.curves, render=self.render,
                            interrupted=self.interrupted, rungs=self.rungs)

    def export(self, out_dir: str | Path | None = None, *, front: bool = False) -> list[Path]:
        """Write the best trial's architecture (with ``front``, every trial on the Pareto
        front's) as ``arch.json`` into ``out_dir/trial_<id>/`` (default ``run_dir/export``)
        and, with ``front``, ``front.json`` listing them; returns the files written. No plugin
        is needed (the trained model is exported by ``nastk export``, which builds it)."""
        chosen = self.front() if front else [t for t in [self.best] if t is not None]
        if not chosen:
            raise NastkError(f"{self.run_dir or 'the run'} has no successful trial to export")
        out = self._folder(out_dir, "export")
        written = []
        for trial in chosen:
            folder = out / layout.trial_folder_name(trial.id)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / layout.ARCH_JSON
            write_atomic(path, (json.dumps(arch_record(self, trial), indent=2) + "\n").encode())
            written.append(path)
        if front:
            doc = {"run_dir": str(self.run_dir), "objective": self.objective.model_dump(
                mode="json"), "points": [arch_record(self, t) for t in chosen]}
            path = out / layout.FRONT_JSON
            write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
            written.append(path)
        return written


def arch_record(run: RunRecord, trial: Trial) -> dict[str, Any]:
    """A trial as ``arch.json`` holds it: architecture, key, trial id, metrics, costs, the
    run's space and task (name and options) and its folder."""
    assert trial.result is not None
    if run.config is not None:
        space: Any = run.config.space.model_dump()
        task: Any = run.config.task.model_dump() if run.config.task else None
    else:
        space, task = run.description.get("space"), run.description.get("task")
    return {"arch": trial.arch.as_dict(), "arch_key": trial.arch.key, "trial": trial.id,
            "metrics": trial.result.metrics, "costs": trial.result.costs, "space": space,
            "task": task, "run_dir": str(run.run_dir) if run.run_dir is not None else None}


def open_run(run_dir: str | Path) -> RunRecord:
    """The run in ``run_dir`` (a :class:`~nastk.core.errors.StoreError` when there is none)."""
    run_dir = Path(run_dir)
    with RunStore.open_existing(run_dir) as store:
        config_data = store.get_meta(META_CONFIG)
        trials = store.trials()
        state = store.load_strategy_state()
        objective = store.get_meta(META_OBJECTIVE)
        description = store.get_meta(META_RUN)
        curves = store.get_meta(META_CURVES)
        rendered = store.get_meta(META_RENDERED)
        interrupted = store.get_meta(META_INTERRUPTED)
        version = store.get_meta("nastk_version")
        rungs = store.rungs()
    config = None
    if config_data is not None:
        from nastk.config.schema import parse_config

        config = parse_config(config_data, f"{run_dir}/{layout.STORE_FILE}:config")
    if objective is not None:
        resolved = Objective.model_validate(objective)
    elif config is not None:  # written before runs recorded their objective: from the task
        from nastk.config.compose import build_objective, build_space_and_task

        resolved = build_objective(config, build_space_and_task(config)[1])
    else:
        raise NastkError(f"{run_dir}: the run records neither its objective nor a config")
    if description is None:
        description = ({**config.describe(), "nastk_version": version} if config is not None
                       else {"nastk_version": version})
    return RunRecord(run_dir, config, trials, resolved, description, state, curves, rendered,
                     interrupted, rungs)
