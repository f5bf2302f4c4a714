"""The search loop: ask -> de-duplicate -> evaluate -> store -> tell, resumable from the store."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.errors import InvalidArchitectureError, RunStoppingError
from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.evaluation.base import Evaluator, format_error
from nastk.run.layout import (
    partial_state_name,
    partial_state_of,
    trial_checkpoint_name,
    trial_id_of_checkpoint,
)
from nastk.run.storage import IN_FLIGHT_META, Storage
from nastk.scheduling.fidelity import Fidelity, fidelity_of
from nastk.scheduling.scheduler import FinishReason, Job, Scheduler
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.strategies.base import Strategy


class Budget(BaseModel):
    """When a search stops."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(20, gt=0, description="distinct architectures to evaluate (under a "
                                               "scheduler: to start)")
    resource: float | None = Field(
        None, gt=0, description="under a scheduler: the resource (epochs, steps, a table's "
        "epochs) all candidates may spend together, every rung counted (a promoted candidate "
        "pays the difference); the run stops before a job that would exceed it")
    time_s: float | None = Field(None, gt=0, description="wall-clock limit for this session")
    max_duplicate_streak: int = Field(
        1000, gt=0, description="stop after this many proposals in a row that were all "
                                "evaluated before (the strategy has converged or the space is "
                                "exhausted)")
    max_failure_streak: int = Field(
        5, ge=1, description="stop when this many trials in a row failed with the same error "
                             "and none has succeeded yet (a broken evaluator, task or "
                             "environment fails every candidate)")


#: called after every finished trial with (trial, number finished, best trial so far)
TrialCallback = Callable[[Trial, int, "Trial | None"], None]
#: called after every rung a scheduler's candidate reached, with (candidate, its result at that
#: rung, the resource spent so far by the run)
RungCallback = Callable[["Candidate", Result, float], None]

#: the key of the saved state under a scheduler: {SCHEDULED: 1, "strategy": ..., "scheduler": ...}
SCHEDULED_STATE = "nastk_scheduled"


@dataclass(frozen=True)
class Candidate:
    """An architecture the search started: its ``running`` row is ``trial_id``; an evaluator
    that trains weights saves them to ``checkpoint`` (when set).

    Under a scheduler, a candidate is one rung of a trial: evaluate up to ``resource`` (rung
    ``rung``), continuing from ``state_in`` (the partial training after the previous rung,
    reached at ``previous``) when set, and writing the partial training to ``state_out``.
    """

    trial_id: int
    arch: Architecture
    checkpoint: Path | None
    resource: float | None = None
    rung: int | None = None
    previous: float = 0.0
    state_in: Path | None = None
    state_out: Path | None = None

    @property
    def cost(self) -> float:
        """The resource this evaluation spends (a rung: the difference to the previous)."""
        return 0.0 if self.resource is None else self.resource - self.previous


@runtime_checkable
class Executor(Protocol):
    """Runs a search's candidates elsewhere (e.g. on a Ray cluster, see :mod:`nastk.executors`).

    ``run`` drives the search until :meth:`Search.propose` returns ``None`` and every
    candidate it handed out is finished: it evaluates each :class:`Candidate` (concurrently,
    up to its own limit) and hands every result to :meth:`Search.record`, in this process.
    """

    def run(self, search: Search) -> None: ...


class Search:
    """Drives one strategy over one space with one evaluator, recording into a :class:`Storage`
    (the SQLite :class:`~nastk.run.sqlite_store.RunStore`, or the in-memory
    :class:`~nastk.run.memory_store.MemoryStorage`).

    Every finished trial is written before the strategy is told; the strategy's state is saved
    with each tell and with each new trial's row (the state just after it proposed that trial),
    together with the list of trials then in flight. The saved state therefore always covers
    every trial in the store, so :meth:`run` on a store left by a process killed at any point
    continues exactly where it stopped: results stored but not told are told to the restored
    state, trials cut off mid-evaluation are evaluated again first (not proposed again), and
    the strategy proposes anew only what it proposed after its state was saved. An
    architecture already finished is never evaluated again (a repeated proposal is answered
    from the store).

    Without an ``executor`` candidates are evaluated one at a time in this process. With one,
    several are in flight at once (:meth:`propose` hands them out, :meth:`record` takes their
    results back). A proposal of an architecture in flight is told that one's result when it
    arrives.

    A run whose first ``budget.max_failure_streak`` trials all fail with the same error stops
    (see :attr:`stop_reason`): a broken evaluator or environment would fail every candidate.

    Over a store that keeps no strategy state (``store.keeps_strategy_state`` false) the
    strategy's ``state_dict()`` is never called, and the search cannot resume.
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Evaluator,
                 objective: Objective, store: Storage, budget: Budget,
                 checkpoint_dir: Path | None = None, keep_checkpoints: int = 3,
                 on_trial: TrialCallback | None = None,
                 executor: Executor | None = None, scheduler: Scheduler | None = None,
                 partial_dir: Path | None = None, on_rung: RungCallback | None = None
                 ) -> None:
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.objective = objective
        self.store = store
        self.budget = budget
        self.checkpoint_dir = checkpoint_dir
        self.keep_checkpoints = keep_checkpoints
        self.on_trial = on_trial
        self.executor = executor
        self.stop_reason: str = ""
        self.duplicates = 0
        self.n_done = 0
        self.best: Trial | None = None
        #: candidates handed out and not yet recorded, by trial id
        self.in_flight: dict[int, Candidate] = {}
        self._saved_in_flight: list[int] | None = None
        self._requeue: list[tuple[int, Architecture]] = []  # (interrupted trial id, arch)
        self._waiting: dict[str, list[Architecture]] = {}  # in-flight key -> repeat proposals
        self._streak = 0
        self._stopped = False
        self._t0 = time.monotonic()
        #: trials of the run recorded complete / failed (counted from the store by begin)
        self.n_complete = 0
        self.n_failed = 0
        self._failure_streak = 0  # failures in a row with one error, in this session
        self._failure_error: str | None = None
        self._unsaved = False  # the strategy was asked since its state was last saved
        #: the scheduler deciding how far each candidate trains (None: full budget each)
        self.scheduler = scheduler
        self.on_rung = on_rung
        self.fidelity: Fidelity | None = None
        if scheduler is not None:
            self.fidelity = fidelity_of(evaluator)
            if self.fidelity is None:
                raise ValueError(f"a scheduler needs an evaluator that declares a resource "
                                 f"(evaluate_at and fidelity); {type(evaluator).__name__} "
                                 "does not")
            if scheduler.rungs[-1] != self.fidelity.max:
                raise ValueError(f"the scheduler's last rung ({scheduler.rungs[-1]:g}) is not "
                                 f"the evaluator's full budget ({self.fidelity.max:g} "
                                 f"{self.fidelity.name})")
        self._partial_dir = partial_dir
        self._own_partial_dir = False
        #: resource spent by recorded rungs (this run, all sessions)
        self.spent = 0.0
        self._n_started = 0
        self._arch_of: dict[int, Architecture] = {}
        self._last: dict[int, tuple[int, float, Result]] = {}  # trial -> last rung recorded
        self._pending_job: Job | None = None  # a new candidate's job whose proposal repeated
        self._repeats: dict[str, int] = {}  # restored: repeats waiting, by architecture key

    # -- resume -------------------------------------------------------------------------------
    def restore(self) -> int:
        """Bring the strategy up to date with the store; returns the number of finished trials.

        ``running`` rows left by a dead process become ``interrupted`` (:meth:`begin` queues
        those the saved state covers to be evaluated first; a store of an earlier nastk, which
        saved the state only when told, has them proposed again); results recorded but not yet
        told are told now, to the state that proposed them.
        """
        self.store.mark_interrupted()
        state = self.store.load_strategy_state()
        if state is not None and self.scheduler is not None:
            if state.get(SCHEDULED_STATE) != 1:
                raise ValueError("this run's stored state was saved without a scheduler; "
                                 "resume it without one")
            self.scheduler.load_state_dict(state["scheduler"])
            self._repeats = {str(k): int(n) for k, n in state.get("waiting", {}).items()}
            state = state["strategy"]
        if state is not None:
            self.strategy.load_state_dict(state)
        if self.scheduler is not None:
            self._restore_scheduled()
        untold = self.store.untold()
        for trial in untold:
            assert trial.result is not None
            self.strategy.tell(trial.arch, trial.result)
        if untold:
            self.store.mark_told([t.id for t in untold], self._state())
        return self.store.count(Status.COMPLETE, Status.FAILED)

    def _restore_scheduled(self) -> None:
        """Bring the scheduler's view in line with the store: trials finished in the store are
        done, jobs handed out and not recorded are handed out again first, and the rungs
        recorded give the resource spent and each trial's last result."""
        sched = self.scheduler
        assert sched is not None
        trials = self.store.trials()
        self._arch_of = {t.id: t.arch for t in trials}
        for t in trials:
            if t.finished and t.id in sched.trials:
                sched.trials[t.id]["status"] = "done"
        done = {tid for tid, t in sched.trials.items() if t["status"] == "done"}
        sched.queue = [q for q in sched.queue if q[0] not in done]
        sched.issued = [q for q in sched.issued if q[0] not in done]
        sched.requeue_issued()
        self._last = {}
        self.spent = 0.0
        for r in self.store.rungs():
            self._last[r.trial_id] = (r.rung, r.resource, r.result)
            self.spent += r.cost
        self._n_started = len(trials)

    def begin(self) -> int:
        """Restore from the store, queue the trials a killed concurrent run left in flight, and
        reset the session's counters (budget clock, duplicate streak); returns the number of
        finished trials."""
        left_in_flight = set(self.store.get_meta(IN_FLIGHT_META, []) or [])
        self.n_done = self.restore()
        self._requeue = []
        self._pending_job = None
        if self.scheduler is not None:
            left_in_flight = set()  # the scheduler hands its lost jobs out again itself
        if left_in_flight:
            seen: set[str] = set()
            for t in self.store.trials():
                if (t.id in left_in_flight and t.status is Status.INTERRUPTED
                        and t.arch.key not in seen and self.store.lookup(t.arch) is None):
                    seen.add(t.arch.key)
                    self._requeue.append((t.id, t.arch))
        self.in_flight = {}
        self._saved_in_flight = None
        self._save_in_flight()
        self._waiting = {}
        if self.scheduler is not None:  # repeats of unfinished candidates wait for them
            for tid, t in self.scheduler.trials.items():
                if t["status"] != "done" and tid in self._arch_of:
                    arch = self._arch_of[tid]
                    self._waiting[arch.key] = [arch] * self._repeats.get(arch.key, 0)
            self._repeats = {}
        self.best = self._best(self.store.finished())
        self._t0 = time.monotonic()
        self._streak = 0
        self._stopped = False
        self._unsaved = False
        self.n_complete = self.store.count(Status.COMPLETE)
        self.n_failed = self.store.count(Status.FAILED)
        self._failure_streak, self._failure_error = 0, None
        self.stop_reason = "budget of trials reached"
        return self.n_done

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> list[Trial]:
        """Search until the budget is spent; returns every trial of the run."""
        self.begin()
        try:
            if self.executor is not None:
                self.executor.run(self)
            else:
                while (candidate := self.propose()) is not None:
                    self.record(candidate, self.evaluate_here(candidate))
            if self.scheduler is not None and not self.in_flight:
                self.finish_waiting()
                self._clean_partials()
        finally:
            if self._own_partial_dir and self._partial_dir is not None:
                shutil.rmtree(self._partial_dir, ignore_errors=True)
                self._partial_dir, self._own_partial_dir = None, False
        return self.store.trials()

    def propose(self) -> Candidate | None:
        """The next candidate to evaluate, its ``running`` row written; ``None`` once the
        search proposes nothing more (budget of trials or time reached, or a long streak of
        proposals that were all evaluated before; see :attr:`stop_reason`). Proposals of
        architectures already finished are answered from the store here."""
        if self.scheduler is not None:
            return self._propose_scheduled()
        while not self._stopped:
            if self.n_done + len(self.in_flight) >= self.budget.trials:
                return None
            if self.budget.time_s is not None and time.monotonic() - self._t0 > self.budget.time_s:
                self.stop_reason = f"time budget of {self.budget.time_s:g} s reached"
                self._stopped = True
                break
            arch = self._requeue.pop(0)[1] if self._requeue else self._ask()
            if self._answer_repeat(arch):
                continue
            self._streak = 0
            # the state just after this proposal is saved with its row (and the list of trials
            # in flight): a run killed from here on redoes this trial rather than asking anew
            pending = [*self.in_flight, *(tid for tid, _ in self._requeue)]
            state = self._state() if self._unsaved else None
            trial_id = self.store.start_trial(arch, state, pending)
            self._unsaved = False
            self._saved_in_flight = sorted([*pending, trial_id])
            ckpt = (self.checkpoint_dir / trial_checkpoint_name(trial_id)
                    if self.checkpoint_dir is not None else None)
            candidate = Candidate(trial_id, arch, ckpt)
            self.in_flight[trial_id] = candidate
            self._waiting[arch.key] = []
            return candidate
        return None

    def _answer_repeat(self, arch: Architecture) -> bool:
        """Whether ``arch`` was proposed before: then it is answered (the stored result told
        and the state saved, or, while it is being evaluated, told when that result is
        recorded) and counted towards the duplicate streak, which stops the search once long
        enough."""
        cached = self.store.lookup(arch)
        if cached is None and arch.key not in self._waiting:
            return False
        if cached is not None:
            assert cached.result is not None
            self.strategy.tell(arch, cached.result)
            state = self._state()
            if state is not None:
                self.store.save_strategy_state(state)
            self._unsaved = False
        else:  # in flight: told when that evaluation is recorded
            self._waiting[arch.key].append(arch)
        self.duplicates += 1
        self._streak += 1
        if self._streak >= self.budget.max_duplicate_streak:
            self.stop_reason = (f"{self._streak} proposals in a row were already "
                                "evaluated (space exhausted or strategy converged)")
            self._stopped = True
        return True

    def _save_in_flight(self) -> None:
        """List the trials whose proposal the saved strategy state covers but which are not
        finished (in flight, or left in flight by a killed run and not yet redone), for the next
        resume to evaluate first."""
        pending = sorted([*self.in_flight, *(tid for tid, _ in self._requeue)])
        if pending != self._saved_in_flight:
            self.store.set_meta(IN_FLIGHT_META, pending)
            self._saved_in_flight = pending

    def _state(self) -> dict[str, Any] | None:
        """The strategy's state to save (with the scheduler's, under one), or ``None`` when the
        store keeps none."""
        if not self.store.keeps_strategy_state:
            return None
        if self.scheduler is not None:  # repeats waiting for an unfinished candidate, too
            return {SCHEDULED_STATE: 1, "strategy": self.strategy.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "waiting": {k: len(v) for k, v in self._waiting.items() if v}}
        return self.strategy.state_dict()

    # -- under a scheduler --------------------------------------------------------------------
    def _partial(self, trial_id: int, rung: int) -> Path | None:
        """Where candidate ``trial_id``'s partial training after ``rung`` is kept (``None``
        when the evaluator does not resume)."""
        if self.fidelity is None or not self.fidelity.resumable or rung < 0:
            return None
        if self._partial_dir is None:
            self._partial_dir = Path(tempfile.mkdtemp(prefix="nastk-partial-"))
            self._own_partial_dir = True
        return self._partial_dir / partial_state_name(trial_id, rung)

    def _clean_partials(self) -> None:
        """Remove the partial trainings no rung will continue from: of finished candidates,
        and older than a candidate's last recorded rung (left by a process killed before it
        removed them)."""
        if self._partial_dir is None or not self._partial_dir.is_dir() or self.scheduler is None:
            return
        for path in self._partial_dir.iterdir():
            parsed = partial_state_of(path)
            if parsed is None:
                continue
            tid, rung = parsed
            t = self.scheduler.trials.get(tid)
            last = self._last.get(tid, (-1, 0.0, None))[0]
            if t is None or t["status"] == "done" or rung < last:
                path.unlink(missing_ok=True)

    def _in_flight_cost(self) -> float:
        return sum(c.cost for c in self.in_flight.values())

    def _propose_scheduled(self) -> Candidate | None:
        """:meth:`propose` under a scheduler: a promotion (or a job lost with a killed
        process) first, else a new candidate from the strategy, each one rung."""
        sched = self.scheduler
        assert sched is not None
        while not self._stopped:
            if self.budget.time_s is not None and time.monotonic() - self._t0 > self.budget.time_s:
                self.stop_reason = f"time budget of {self.budget.time_s:g} s reached"
                self._stopped = True
                break
            job = self._pending_job
            self._pending_job = None
            can_start_new = self._n_started < self.budget.trials
            if job is None and not can_start_new and sched.open_runs():
                self._finish_now(sched.close())
            if job is None:
                job = sched.next_job(can_start_new)
            if job is None:
                if not self.in_flight:
                    self.stop_reason = ("budget of trials reached" if sched.trials
                                        else self.stop_reason)
                return None
            if (self.budget.resource is not None
                    and self.spent + self._in_flight_cost() + job.cost
                    > self.budget.resource + 1e-9):
                if job.trial_id is not None:  # not handed out after all
                    sched.issued.remove([job.trial_id, job.rung])
                    sched.queue.insert(0, [job.trial_id, job.rung])
                    sched.trials[job.trial_id]["status"] = "queued"
                self.stop_reason = (f"resource budget of {self.budget.resource:g} "
                                    f"{self.fidelity.name if self.fidelity else ''} reached "
                                    f"({self.spent:g} spent)")
                self._stopped = True
                break
            if job.trial_id is not None:
                return self._start_job(job.trial_id, job)
            arch = self._ask()
            if self._answer_repeat(arch):
                self._pending_job = job  # the job waits for a proposal that is new
                continue
            self._streak = 0
            trial_id = self.store.count() + 1  # the id start_trial gives (numbered from 1)
            sched.started(trial_id, job)
            pending = [*self.in_flight]
            got = self.store.start_trial(arch, self._state(), pending)
            if got != trial_id:
                raise RuntimeError(f"the store numbered a new trial {got}, expected {trial_id}")
            self._unsaved = False
            self._saved_in_flight = sorted([*pending, trial_id])
            self._arch_of[trial_id] = arch
            self._waiting[arch.key] = []
            self._n_started += 1
            return self._candidate(trial_id, job)
        return None

    def _start_job(self, trial_id: int, job: Job) -> Candidate:
        """Hand out a promotion (or a job lost with a killed process) of ``trial_id``."""
        pending = sorted([*self.in_flight, trial_id])
        self.store.restart_trial(trial_id, self._state(), pending)
        self._saved_in_flight = pending
        return self._candidate(trial_id, job)

    def _candidate(self, trial_id: int, job: Job) -> Candidate:
        arch = self._arch_of[trial_id]
        ckpt = (self.checkpoint_dir / trial_checkpoint_name(trial_id)
                if self.checkpoint_dir is not None else None)
        prev_rung = self._last[trial_id][0] if trial_id in self._last else -1
        state_in = self._partial(trial_id, prev_rung) if job.previous > 0 else None
        candidate = Candidate(trial_id, arch, ckpt, job.resource, job.rung, job.previous,
                              state_in, self._partial(trial_id, job.rung))
        self.in_flight[trial_id] = candidate
        return candidate

    def _final(self, trial_id: int, reason: FinishReason) -> Result:
        """Candidate ``trial_id``'s result as the run keeps it: its last rung's, with how far
        it trained and why it stopped (``info``: ``resource``, ``rung``, ``scheduler``;
        ``early_stopped`` below the full budget)."""
        rung, resource, res = self._last[trial_id]
        full = self.fidelity.max if self.fidelity is not None else resource
        info = {**res.info, "resource": resource, "rung": rung, "scheduler": reason}
        if self.fidelity is not None:
            info["resource_unit"] = self.fidelity.name
        if resource < full:
            info["early_stopped"] = True
        return Result(res.status, res.metrics, res.costs, res.error, res.duration_s, info)

    def _record_rung(self, candidate: Candidate, result: Result) -> Trial:
        """Record one rung: the rung row, the candidates that finished with it (one write),
        then tell the strategy their final results."""
        sched = self.scheduler
        assert sched is not None and candidate.rung is not None and candidate.resource is not None
        tid = candidate.trial_id
        result = self.objective_checked(result)
        result = Result(result.status, result.metrics, result.costs, result.error,
                        result.duration_s, {**result.info, "resource": candidate.resource,
                                            "rung": candidate.rung})
        self.strategy.tell_fidelity(candidate.arch, candidate.resource, result)
        finished = sched.reported(tid, candidate.rung, result)
        self._last[tid] = (candidate.rung, candidate.resource, result)
        finals = {t: self._final(t, reason) for t, reason in finished}
        self.in_flight.pop(tid, None)
        pending = sorted(self.in_flight)
        self.store.record_rung(tid, candidate.rung, candidate.resource, candidate.cost, result,
                               finals, self._state(), pending)
        self._saved_in_flight = pending
        self.spent += candidate.cost
        if candidate.state_in is not None:
            candidate.state_in.unlink(missing_ok=True)
        trial = self._tell_finals(finals, candidate.checkpoint)
        if self.on_rung is not None:
            self.on_rung(candidate, result, self.spent)
        return trial if trial is not None else Trial(tid, candidate.arch, Status.PAUSED, None,
                                                     0.0, None)

    def _tell_finals(self, finals: dict[int, Result], checkpoint: Path | None = None
                     ) -> Trial | None:
        """Tell the strategy the final results just stored, save its state, count them."""
        last: Trial | None = None
        if not finals:
            return None
        for tid, final in finals.items():
            arch = self._arch_of[tid]
            self.strategy.tell(arch, final)
            for repeat in self._waiting.pop(arch.key, []):
                self.strategy.tell(repeat, final)
        self.store.mark_told(list(finals), self._state(), in_flight=sorted(self.in_flight))
        for tid, final in finals.items():
            partial = self._partial(tid, self._last[tid][0])
            if partial is not None:
                partial.unlink(missing_ok=True)
            self.n_done += 1
            self._count_outcome(final)
            trial = Trial(tid, self._arch_of[tid], final.status, final, 0.0, time.time())
            if self._better_incumbent(trial):
                self.best = trial
            self._prune_checkpoints()
            if self.on_trial is not None:
                self.on_trial(trial, self.n_done, self.best)
            last = trial
        return last

    def _finish_now(self, finished: list[tuple[int, FinishReason]]) -> None:
        """Store and tell the final results of candidates a scheduler ended outside a rung."""
        finals = {tid: self._final(tid, reason) for tid, reason in finished}
        for tid, final in finals.items():
            self.store.finish_trial(tid, final)
        self._tell_finals(finals)

    def finish_waiting(self) -> None:
        """The run is over: end every candidate still waiting for a rung's decision or a
        promotion, with its last rung's result."""
        if self.scheduler is None:
            return
        ids = self.scheduler.finish_all()
        self._finish_now([(tid, "budget") for tid in ids if tid in self._last])

    def _better_incumbent(self, trial: Trial) -> bool:
        """Whether ``trial`` beats the incumbent: under a scheduler, a candidate trained further
        wins, then the objective decides."""
        value = self._value(trial)
        if value is None:
            return False
        if self.best is None:
            return True
        if self.scheduler is not None:
            mine, theirs = _resource(trial), _resource(self.best)
            if mine != theirs:
                return mine > theirs
        return self.objective.better(value, self._value(self.best))

    def _ask(self) -> Architecture:
        self._unsaved = True  # asking changes the strategy's state (RNG, pending proposals)
        arch = self.strategy.ask(1)[0]
        try:
            return self.space.validate(arch)
        except InvalidArchitectureError as err:
            raise InvalidArchitectureError(
                f"strategy {type(self.strategy).__name__} proposed an invalid architecture: "
                f"{err}") from None

    def evaluate_here(self, candidate: Candidate) -> Result:
        """Evaluate a candidate in this process; an evaluator that raises gives a failed
        result, except for a :class:`~nastk.core.errors.RunStoppingError` (a full disk, an
        unreadable data file), which stops the run (the candidate is not at fault, and a
        resumed run evaluates it again)."""
        t_start = time.perf_counter()
        try:
            if candidate.resource is not None:
                return self.evaluator.evaluate_at(  # type: ignore[attr-defined]
                    candidate.arch, candidate.resource, checkpoint=candidate.checkpoint,
                    state=candidate.state_in, state_out=candidate.state_out)
            return self.evaluator.evaluate(candidate.arch, checkpoint=candidate.checkpoint)
        except RunStoppingError:
            raise
        except Exception as err:  # evaluators should not raise; a plugin still might
            return Result.failed(format_error(err), duration_s=time.perf_counter() - t_start)

    def record(self, candidate: Candidate, result: Result) -> Trial:
        """Store a candidate's result, then tell the strategy (and save its state). A result
        without the objective's metric (or one of its costs) is recorded as failed, naming what
        is missing and what the result holds."""
        if candidate.rung is not None:
            return self._record_rung(candidate, result)
        result = self.objective_checked(result)
        self.store.finish_trial(candidate.trial_id, result)
        self.strategy.tell(candidate.arch, result)
        for repeat in self._waiting.pop(candidate.arch.key, []):
            self.strategy.tell(repeat, result)
        self.in_flight.pop(candidate.trial_id, None)
        pending = sorted([*self.in_flight, *(tid for tid, _ in self._requeue)])
        self.store.mark_told([candidate.trial_id], self._state(), in_flight=pending)
        self._unsaved = False
        self._saved_in_flight = pending
        self.n_done += 1
        self._count_outcome(result)
        trial = Trial(candidate.trial_id, candidate.arch, result.status, result, 0.0, time.time())
        value = self.objective.value(result)
        if value is not None and (self.best is None
                                  or self.objective.better(value, self._value(self.best))):
            self.best = trial
        self._prune_checkpoints()
        if self.on_trial is not None:
            self.on_trial(trial, self.n_done, self.best)
        return trial

    def objective_checked(self, result: Result) -> Result:
        """``result``, or a failed one when it lacks what the objective scores."""
        if not result.ok:
            return result
        metric = self.objective.metric
        problems = []
        if metric not in result.metrics and metric not in result.costs:
            problems.append(f"no {metric!r} (the objective's metric); it has metrics "
                            f"{sorted(result.metrics)}" + (f" and costs {sorted(result.costs)}"
                                                          if result.costs else ""))
        missing = [c for c in self.objective.costs
                   if c not in result.costs and c not in result.metrics]
        if missing:
            problems.append(f"no cost {missing} (objective.costs); it has costs "
                            f"{sorted(result.costs)}")
        if not problems:
            return result
        return Result.failed("the result has " + "; ".join(problems), result.costs,
                             result.duration_s, metrics=result.metrics)

    def _count_outcome(self, result: Result) -> None:
        """Count a recorded result; stop once ``budget.max_failure_streak`` trials in a row
        failed with the same error while none has succeeded (nothing will)."""
        if result.status is Status.COMPLETE:
            self.n_complete += 1
            self._failure_streak = 0
            return
        self.n_failed += 1
        if result.error == self._failure_error:
            self._failure_streak += 1
        else:
            self._failure_error, self._failure_streak = result.error, 1
        k = self.budget.max_failure_streak
        if self.n_complete == 0 and self._failure_streak >= k and not self._stopped:
            self._stopped = True
            if self._failure_streak == self.n_done:
                self.stop_reason = (f"the first {k} trials all failed with the same error: "
                                    f"{result.error}; fix it and rerun (nothing succeeded)")
            else:
                self.stop_reason = (f"the last {k} trials all failed with the same error: "
                                    f"{result.error}; fix it and rerun (none of the "
                                    f"{self.n_done} trials succeeded)")

    def _best(self, trials: list[Trial]) -> Trial | None:
        if self.scheduler is not None:  # among the successful ones trained furthest
            trials = [t for t in trials if self._value(t) is not None]
            if trials:
                top = max(_resource(t) for t in trials)
                trials = [t for t in trials if _resource(t) == top]
        return self.objective.best(trials, key=self._value)

    def _value(self, trial: Trial) -> float | None:
        return self.objective.value(trial.result) if trial.result is not None else None

    def _prune_checkpoints(self) -> None:
        """Keep the checkpoints of the ``keep_checkpoints`` best trials only."""
        if self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return
        files = {tid: p for p in self.checkpoint_dir.iterdir()
                 if (tid := trial_id_of_checkpoint(p)) is not None}
        if len(files) <= self.keep_checkpoints:
            return
        done = {t.id: t for t in self.store.finished() if t.id in files and t.result is not None}
        scores = {i: self.objective.score(t.result) for i, t in done.items()}  # type: ignore[arg-type]
        # under a scheduler a candidate trained further ranks first (its weights are final)
        reached = {i: _resource(t) if self.scheduler is not None else 0.0
                   for i, t in done.items()}
        ranked = sorted(files, key=lambda i: (scores.get(i) is not None,
                                              reached.get(i, float("-inf")),
                                              scores.get(i) or 0.0), reverse=True)
        for tid in ranked[self.keep_checkpoints:]:
            files[tid].unlink(missing_ok=True)


def _resource(trial: Trial) -> float:
    """How far a scheduler's candidate trained (its final result's ``info.resource``; a
    candidate without one trained fully)."""
    if trial.result is None:
        return float("-inf")
    r = trial.result.info.get("resource")
    return float("inf") if r is None else float(r)
