"""Running a study: its searches one after another in this process, or many at once on Ray.

Each search is ``nastk search`` on its own run folder. A search whose store already holds its
budget of trials is skipped; one with a store short of it is resumed (the engine resumes it
exactly); the others start. So a study killed at any point continues where it stopped when
the same command runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from nastk.config.schema import IDENTITY_EXCLUDES, SearchConfig
from nastk.core.errors import NastkError, StoreError
from nastk.core.result import Status
from nastk.pipelines.search import run_search_config
from nastk.pipelines.study.config import StudyConfig, StudyRun
from nastk.report.progress import ProgressView
from nastk.run.identity import identity_differences
from nastk.run.layout import RunLayout
from nastk.run.sqlite_store import RunStore, UnstartedStoreError

__all__ = ["StudyOutcome", "run_state", "run_study"]


@dataclass
class StudyOutcome:
    config: StudyConfig
    runs: list[StudyRun]
    started: int  # searches run (started or resumed) by this call
    skipped: int  # searches already finished before it


def run_state(config: SearchConfig) -> str:
    """``done`` (the store holds the budget's trials), ``partial`` (a store short of it) or
    ``new`` (no store, or one whose run was cut short while it was being created: a study
    killed at that moment)."""
    path = RunLayout(config.resolved_run_dir()).store
    if not path.is_file():
        return "new"

    try:
        store = RunStore.open_existing(config.resolved_run_dir())
    except UnstartedStoreError:
        return "new"
    with store:
        n = store.count(Status.COMPLETE, Status.FAILED)
        converged = bool(store.get_meta("study_converged", False))
        identity = store.get_meta("identity")
    differs = (identity_differences(identity, config, excluded=IDENTITY_EXCLUDES)
               if identity is not None else None)
    if differs:  # a finished run of another config would be skipped and reported as this one
        raise StoreError(f"study run {config.resolved_run_dir()} was made by another config "
                         f"{differs}. Delete that folder to rerun it, or give the study another "
                         "run_dir.")
    return "done" if n >= config.budget.trials or converged else "partial"


def _run_one(config_data: dict[str, Any], source: str) -> None:
    """One search (also what a Ray worker runs); marks a run that stopped short of its budget
    (a converged strategy) so that a resumed study does not rerun it."""
    from nastk.config.schema import parse_config

    config = parse_config(config_data, source)
    resume = run_state(config) == "partial"
    outcome = run_search_config(config, resume=resume, console=Console(stderr=True, quiet=True),
                             progress=False)
    if len([t for t in outcome.trials if t.done]) < config.budget.trials:
        with RunStore.open_existing(config.resolved_run_dir()) as store:
            store.set_meta("study_converged", True)


def _preflight(pairs: list[tuple[StudyRun, SearchConfig]]) -> None:
    """Build every (task, strategy)'s components once, so that a bad plugin, option or metric
    stops the study before any search runs."""
    from nastk.config.compose import build_components

    seen: set[tuple[str, str]] = set()
    for run, config in pairs:
        if (run.task, run.strategy) in seen:
            continue
        seen.add((run.task, run.strategy))
        try:
            build_components(config)
        except NastkError as err:
            raise type(err)(f"study: task {run.task!r}, strategy {run.strategy!r}: {err}") \
                from None


def run_study(config: StudyConfig, *, console: Console | None = None, progress: bool = True,
              executor: str | None = None, source: str = "study") -> StudyOutcome:
    """Run every search of ``config`` that is not finished yet; see the module docstring."""
    console = console or Console(stderr=True)
    pairs = config.runs(source)
    _preflight(pairs)
    state = {run.config["run_dir"]: run_state(cfg) for run, cfg in pairs}
    todo = [(run, cfg) for run, cfg in pairs if state[run.config["run_dir"]] != "done"]
    skipped = len(pairs) - len(todo)
    kind = executor or config.executor.kind
    Path(config.resolved_run_dir()).mkdir(parents=True, exist_ok=True)
    with ProgressView(console, enabled=progress) as view:
        job = view.add(f"study {config.name}", total=len(pairs), completed=skipped,
                       unit="searches")
        if kind == "ray":
            _run_on_ray(config, todo, view, job, skipped, source)
        else:
            for i, (run, _) in enumerate(todo, start=1):
                _run_one(run.config, f"{source}: {run.task}/{run.strategy}/seed_{run.seed}")
                view.update(job, completed=skipped + i,
                            info=f"{run.task} / {run.strategy} / seed {run.seed}")
    return StudyOutcome(config, [r for r, _ in pairs], len(todo), skipped)


def _run_on_ray(config: StudyConfig, todo: list[tuple[StudyRun, SearchConfig]],
                view: ProgressView, job: int, skipped: int, source: str) -> None:
    import ray

    ex = config.executor
    started_here = not ray.is_initialized()
    if started_here:
        # no address: a Ray of this study's own ("local"), never a cluster that someone
        # started on this machine with `ray start` (Ray's default would join that one)
        ray.init(address=ex.address or "local", num_cpus=None if ex.address else ex.num_cpus,
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = ray.remote(num_cpus=ex.cpus_per_search, max_retries=0)(_run_one)
        futures = {remote.remote(run.config, f"{source}: {run.task}/{run.strategy}/seed_"
                                              f"{run.seed}"): run for run, _ in todo}
        pending = list(futures)
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            run = futures[ready[0]]
            try:
                ray.get(ready[0])
            except Exception as err:
                for f in pending:
                    ray.cancel(f, force=True)
                cause = getattr(err, "cause", None) or err
                raise NastkError(f"study: the search {run.task}/{run.strategy}/seed_"
                                 f"{run.seed} failed: {cause}") from None
            done += 1
            view.update(job, completed=skipped + done,
                        info=f"{run.task} / {run.strategy} / seed {run.seed}")
    finally:
        if started_here:
            ray.shutdown()
