"""The life of a search run, whoever starts it: open (or resume) its storage, hold its run
folder's lock, describe the run, run the search, write the report.

``nastk search``, ``nastk study``, a recipe's search stages and the Python API
(:func:`nastk.create_search`) all come here with a :class:`SearchSetup` (the live parts of
one search: space, strategy, evaluator, objective, budget, and what identifies the run). So a
run started from YAML and one started from Python resume, lock, describe themselves and report
the same way.

Storage is a run folder (a SQLite store, locked by this process while it is open), a
:class:`~nastk.run.storage.Storage` object, or nothing (an in-memory store). A new run records
its identity, config (when it came from one), objective and description in the store's meta
before its first trial; a run that already holds trials is continued only when asked
(``resume``), and only when its stored identity is this setup's: otherwise the differences are
named and nothing is written.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from nastk.core.errors import NastkError, RunStoppingError, StoreError
from nastk.core.objective import Objective
from nastk.core.result import Status
from nastk.core.trial import Trial
from nastk.core.version import __version__
from nastk.core.weights import clean_temp_files
from nastk.evaluation.base import Evaluator
from nastk.run.identity import HasIdentity, identity_differences
from nastk.run.layout import RunLayout
from nastk.run.lock import lock_run_dir
from nastk.run.loop import Budget, Search, TrialCallback
from nastk.run.signals import interrupt_name, stop_on_signals
from nastk.run.sqlite_store import (
    META_CONFIG,
    META_CURVES,
    META_INTERRUPTED,
    META_OBJECTIVE,
    META_RENDERED,
    META_RUN,
    RunStore,
    check_run_store,
)
from nastk.run.storage import Storage
from nastk.scheduling.scheduler import Scheduler
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy

if TYPE_CHECKING:
    from nastk.config.executors import ExecutorConfig
    from nastk.executors.worker import EvaluatorFactory
    from nastk.task.contract import Task

__all__ = ["Outcome", "SearchSetup", "StorageTarget", "execute", "open_storage",
           "record_for_report", "run_search", "tune_storage"]

#: where a run is kept: a run folder, a storage object, or ``None`` (in memory)
StorageTarget = str | Path | Storage | None

#: meta keys of a run's identity and provenance
META_IDENTITY = "identity"
#: a warm-started run's earlier tasks (:meth:`nastk.transfer.prior.TransferPrior.describe`)
META_WARM_START = "warm_start"
META_CREATED = "created"
META_VERSION = "nastk_version"


@dataclass
class SearchSetup:
    """The live parts of one search, however they were built (a config or Python code)."""

    name: str
    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator
    objective: Objective
    budget: Budget
    #: what a resumed run must share with the one stored (a config, or a fixed identity)
    identity: HasIdentity
    #: the run's description in the store (space, task, strategy, evaluator, seed, version)
    description: dict[str, Any]
    #: the config the run came from, as JSON data (``None`` for a search built in Python)
    config: dict[str, Any] | None = None
    task: Task | None = None
    keep_checkpoints: int = 3
    #: where candidates run (``None``: in this process)
    executor: ExecutorConfig | None = None
    #: what the executor's workers build the evaluator with (default: the evaluator itself)
    factory: EvaluatorFactory | None = None
    #: the settings the report's *Run* table lists
    report_meta: dict[str, Any] = field(default_factory=dict)
    #: stored identity keys older versions kept that are not compared
    identity_excludes: tuple[str, ...] = ()
    #: how far each candidate trains and which continue (``None``: the full budget each)
    scheduler: Scheduler | None = None
    #: called with the finished trials and the run folder once the search ends, before the
    #: report is written (e.g. timing a predicted-latency front on the device); an error in
    #: it is printed, and the report is written all the same
    after_search: Callable[[list[Trial], Path, Console], None] | None = None
    #: the earlier tasks a warm-started search starts from (their folders, sizes and data
    #: fingerprints), recorded in the store; a resume must find the same
    warm_start: dict[str, Any] | None = None

    def evaluator_factory(self) -> EvaluatorFactory:
        from nastk.executors.worker import InstanceFactory

        return self.factory if self.factory is not None else InstanceFactory(self.evaluator)


@dataclass
class Outcome:
    """What a search leaves behind."""

    #: the run folder (``None`` for a run kept in a storage object only)
    run_dir: Path | None
    trials: list[Trial]
    objective: Objective
    #: ``report.md`` (``None`` without a run folder)
    report: Path | None
    stop_reason: str
    space: SearchSpace


# -- storage ------------------------------------------------------------------------------------
def _describe(store: Storage, setup: SearchSetup) -> None:
    store.set_meta(META_OBJECTIVE, setup.objective.model_dump(mode="json"))
    store.set_meta(META_RUN, setup.description)


def _start(store: Storage, setup: SearchSetup, where: str) -> None:
    """Record a new run's identity and description (refusing a store with trials but no
    identity: not a run this version can continue)."""
    if store.count():
        raise StoreError(f"{where} holds trials but no config; use a new run_dir")
    store.set_meta(META_IDENTITY, setup.identity.identity())
    if setup.config is not None:
        store.set_meta(META_CONFIG, setup.config)
    store.set_meta(META_CREATED, time.time())
    store.set_meta(META_VERSION, __version__)
    if setup.warm_start is not None:
        store.set_meta(META_WARM_START, setup.warm_start)
    _describe(store, setup)


def _continue(store: Storage, setup: SearchSetup, where: str, resume: bool) -> None:
    """Check that a stored run may be continued by ``setup``; update its config."""
    if not resume:
        raise StoreError(f"{where} already holds a run. Pass --resume (resume=True) to "
                         "continue it, or choose another run_dir (--run-dir).")
    differs = identity_differences(store.get_meta(META_IDENTITY), setup.identity,
                                   excluded=setup.identity_excludes)
    if differs:
        raise StoreError(f"--resume: the config differs from the one {where} was started "
                         f"with {differs}. Only budget, name, keep_checkpoints and executor "
                         "may change. Use the original config, or a new run_dir.")
    stored = store.get_meta(META_WARM_START)
    if stored != setup.warm_start:
        raise StoreError(f"--resume: the warm-start sources of {where} changed since it started "
                         f"(recorded: {_sources_line(stored)}; now: "
                         f"{_sources_line(setup.warm_start)}), so the search would not continue "
                         "as it began. Restore those runs, or start a new run_dir.")
    if setup.config is not None:
        store.set_meta(META_CONFIG, setup.config)
    if store.get_meta(META_OBJECTIVE) is None or store.get_meta(META_RUN) is None:
        _describe(store, setup)  # a store written before runs described themselves


def _sources_line(described: dict[str, Any] | None) -> str:
    if not described:
        return "none"
    return ", ".join(f"{s['task']} ({s['architectures']} architectures, {s['digest']})"
                     for s in described.get("sources", []))


def _open_folder(run_dir: Path, resume: bool) -> RunStore:
    paths = RunLayout(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run_dir {run_dir} is a file, not a folder; choose another "
                         "--run-dir")
    if not resume:
        return RunStore(paths.store, lock=lock_run_dir(run_dir, create=True))
    check_run_store(paths.store)  # missing, empty, unreadable or foreign stores are named
    lock = lock_run_dir(run_dir)  # one live process per run folder (names the owner)
    try:
        # left by a write that died (e.g. disk full)
        removed = clean_temp_files(*paths.written_folders())
    except BaseException:
        lock.release()
        raise
    store = RunStore(paths.store, lock=lock)  # the lock is released by store.close()
    if removed:
        store.set_meta("cleaned_temp_files", [str(p) for p in removed])
    return store


def open_storage(setup: SearchSetup, storage: StorageTarget, *,
                 resume: bool) -> tuple[Storage, Path | None]:
    """The run's store and run folder: a run folder's SQLite store (locked until the store is
    closed), the given storage object, or a new in-memory store. A new run is described in it;
    a stored one is checked against ``setup`` (and continued only with ``resume``)."""
    if storage is None:
        from nastk.run.memory_store import MemoryStorage

        storage = MemoryStorage()
    if isinstance(storage, Storage):
        store, run_dir, where = storage, None, f"the storage {type(storage).__name__}"
    else:
        run_dir = Path(storage)
        store, where = _open_folder(run_dir, resume), f"run directory {run_dir}"
    try:
        if store.get_meta(META_IDENTITY) is None:
            _start(store, setup, where)
        else:
            _continue(store, setup, where, resume)
    except BaseException:
        if run_dir is not None:
            store.close()
        raise
    return store, run_dir


def record_for_report(store: Storage, trials: list[Trial], strategy: Strategy,
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


# -- running ------------------------------------------------------------------------------------
def run_search(setup: SearchSetup, store: Storage, run_dir: Path | None, *,
               executor: Any = None, where: str = "", resume: bool = False,
               console: Console | None = None, progress: bool = True,
               on_trial: TrialCallback | None = None) -> Outcome:
    """Run (or continue) the search in an opened store and write its report (into the run
    folder, when there is one). An interrupted run (Ctrl-C) still writes its report from what
    the store holds, then re-raises ``KeyboardInterrupt``."""
    from nastk import report  # matplotlib is only needed once a run ends
    from nastk.report.predictions import draw_best_predictions
    from nastk.report.progress import ProgressView, SearchProgress

    console = console or Console(stderr=True)
    objective = setup.objective
    done_before = store.count(Status.COMPLETE, Status.FAILED)
    paths = RunLayout(run_dir) if run_dir is not None else None
    checkpoints = paths.checkpoints if paths is not None and setup.keep_checkpoints else None
    if executor is not None:
        console.print(f"executor: {where}", highlight=False)
    search: Search | None = None

    def write(trials: list[Trial], interrupted: dict[str, Any] | None = None) -> Path | None:
        record_for_report(store, trials, setup.strategy, setup.space)
        store.set_meta(META_INTERRUPTED, interrupted)
        if run_dir is None:
            return None
        return report.write_report(run_dir, trials, objective, title=f"nastk run: {setup.name}",
                                   meta=setup.report_meta, curves=setup.strategy.curves(),
                                   render=setup.space.render, interrupted=interrupted,
                                   rungs=store.rungs())

    try:
        # handlers set after the executor connected (ray.init sets its own for SIGTERM)
        with stop_on_signals(), ProgressView(console, enabled=progress) as view:
            shown = SearchProgress(view, f"search {setup.name}", objective, on_trial=on_trial)
            search = Search(setup.space, setup.strategy, setup.evaluator, objective, store,
                            setup.budget, checkpoint_dir=checkpoints,
                            keep_checkpoints=setup.keep_checkpoints, on_trial=shown.trial,
                            on_rung=shown.rung, executor=executor, scheduler=setup.scheduler,
                            partial_dir=paths.partial if paths is not None else None)
            shown.start(search, done_before)
            trials = search.run()
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGHUP (nastk.run.signals)
        store.mark_interrupted()  # trials in flight: evaluated again on --resume
        finished = store.finished()
        write(finished, {"signal": interrupt_name(err), "finished": len(finished),
                         "at": time.strftime("%Y-%m-%d %H:%M:%S")})
        raise
    except RunStoppingError:  # a full disk, an unreadable data file: the run stops as it is
        with contextlib.suppress(NastkError, OSError):  # a full disk may refuse even this
            store.mark_interrupted()  # the candidates in flight run again on --resume
        raise
    if done_before and resume and run_dir is not None:
        console.print(f"resumed {run_dir}: {done_before} trials were already recorded")
    if run_dir is not None:
        draw_best_predictions(setup.task, setup.evaluator, trials, objective, run_dir,
                              checkpoints)
        if setup.after_search is not None:
            try:
                setup.after_search(trials, run_dir, console)
            except (NastkError, OSError, RuntimeError, ValueError) as err:
                console.print(f"warning: after the search: {err}", highlight=False)
    report_path = write(trials)
    return Outcome(run_dir, trials, objective, report_path, search.stop_reason, setup.space)


@contextlib.contextmanager
def tune_storage(run_dir: Path | None) -> Iterator[Path]:
    """Where Ray Tune keeps its files: ``RUN_DIR/ray``, or a temporary folder (removed
    afterwards) for a run without a run folder."""
    if run_dir is not None:
        yield RunLayout(run_dir).ray
        return
    with tempfile.TemporaryDirectory(prefix="nastk-tune-") as scratch:
        yield Path(scratch)


def execute(setup: SearchSetup, storage: StorageTarget, *, resume: bool = False,
            console: Console | None = None, progress: bool = True,
            on_trial: TrialCallback | None = None,
            before_run: Callable[[Storage], None] | None = None) -> Outcome:
    """The whole lifecycle: connect the executor (before anything is written), open the
    storage (a new run described, a stored one checked), run the search, write the report,
    close the storage (releasing the run folder's lock). ``before_run(store)`` is called once
    the store is open."""
    from nastk.executors import open_executor

    folder = Path(storage) if isinstance(storage, (str, Path)) else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise StoreError(f"run_dir {folder} is a file, not a folder; choose another "
                         "--run-dir")
    with tune_storage(folder) as tune_dir:
        with open_executor(setup.executor, setup.evaluator_factory(), setup.objective,
                           setup.evaluator, tune_dir) as (executor, where):
            store, run_dir = open_storage(setup, storage, resume=resume)
            try:
                if before_run is not None:
                    before_run(store)
                return run_search(setup, store, run_dir, executor=executor, where=where,
                                  resume=resume, console=console, progress=progress,
                                  on_trial=on_trial)
            finally:
                if run_dir is not None:
                    store.close()
