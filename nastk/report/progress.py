"""Progress displays of nastk (search, supernet training, distillation), in one place.

:class:`ProgressView` shows jobs (``view.add``) and their updates (``view.update``): on a
terminal as live rich bars with the count, elapsed time, an ETA, a text field and the failures;
when the console is not a terminal (output to a log file, a pipe, a batch system) as plain
lines, one per update at most every ``interval_s`` seconds or every ``percent`` percent of the
job, flushed at once so ``tail -f`` shows them as they happen::

    search quickstart: 12/40 trials (30%), 0:00:31 elapsed, ETA 0:01:12, best accuracy=0.9861,
    failed 1 (last: ValueError: ...)

The ETA counts only the work done while the view watched: pass what was done before (a
resumed run's trials) as ``add(..., completed=k)``, or ``update(..., rebase=True)``.

:class:`SearchProgress` is a search's bar over a :class:`ProgressView`: trials against the
budget of trials, or, under a scheduler with a resource budget (``Budget.resource``), the
resource spent against it, updated after every rung; in line mode each rung is a line too::

    search quickstart: 37/200 epochs (18%), 0:00:31 elapsed, ETA 0:02:16, 9/40 trials,
    best accuracy=0.9861
    trial 7 rung 1 -> 9 epochs: accuracy=0.9412, promoted to rung 2 (27 epochs)

:func:`make_progress` is the bare rich :class:`~rich.progress.Progress` with the same columns.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from nastk.core.objective import Objective
    from nastk.core.result import Result
    from nastk.core.trial import Trial
    from nastk.run.loop import Candidate, Search, TrialCallback

__all__ = ["ProgressView", "SearchProgress", "make_progress", "short_error"]

#: characters of the last error a progress display keeps
ERROR_CHARS = 80

Clock = Callable[[], float]


def short_error(text: str | None, limit: int = ERROR_CHARS) -> str:
    """An error message on one line, cut to ``limit`` characters (``…`` marks the cut)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _hms(seconds: float) -> str:
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


@dataclass
class _Job:
    description: str
    total: float | None
    unit: str
    completed: float
    percent: float
    info: str = ""
    failed: int = 0
    last_error: str = ""
    t_start: float = 0.0
    #: the rate counts progress after (t_base, c_base) only
    t_base: float = 0.0
    c_base: float = 0.0
    #: when ``completed`` last grew
    t_last: float = 0.0
    printed_at: float = 0.0
    printed_completed: float = 0.0
    printed_state: tuple[Any, ...] | None = None
    rich_id: TaskID | None = None

    def state(self) -> tuple[Any, ...]:
        return (self.completed, self.total, self.info, self.failed, self.last_error)

    def eta(self, now: float) -> float | None:
        """Seconds left at ``now``, from the rate since the base; None when unknown."""
        if self.total is None:
            return None
        if self.completed >= self.total:
            return 0.0
        done = self.completed - self.c_base
        if done <= 0 or self.t_last <= self.t_base:
            return None
        per_unit = (self.t_last - self.t_base) / done
        return max(0.0, per_unit * (self.total - self.completed) - (now - self.t_last))

    def failures(self) -> str:
        if not self.failed:
            return ""
        last = f" (last: {self.last_error})" if self.last_error else ""
        return f"failed {self.failed}{last}"

    def line(self, now: float) -> str:
        count = _number(self.completed)
        if self.total is not None:
            count += f"/{_number(self.total)}"
        if self.unit:
            count += f" {self.unit}"
        if self.total:
            count += f" ({100.0 * self.completed / self.total:.0f}%)"
        parts = [count, f"{_hms(now - self.t_start)} elapsed"]
        if self.total is not None:
            eta = self.eta(now)
            parts.append(f"ETA {_hms(eta) if eta is not None else '?'}")
        if self.info:
            parts.append(" ".join(self.info.split()))
        if self.failed:
            parts.append(self.failures())
        return f"{self.description}: " + ", ".join(parts)


class EtaColumn(TimeRemainingColumn):
    """``ETA h:mm:ss`` of a :class:`ProgressView` job (the rate since the job's base, counting
    down between updates); rich's own estimate for tasks of other progress bars; nothing for
    a task without a total."""

    max_refresh = None

    def render(self, task: Any) -> Text:
        if task.total is None:
            return Text("", style="progress.remaining")
        job = task.fields.get("_job")
        if not isinstance(job, _Job):
            return Text("ETA ", style="dim") + super().render(task)
        eta = job.eta(task.get_time())
        return Text("ETA ", style="dim") + Text(_hms(eta) if eta is not None else "-:--:--",
                                                style="progress.remaining")


def make_progress(console: Console, *, fields: Sequence[str] = ("info",),
                  disable: bool = False, transient: bool = False,
                  get_time: Clock | None = None) -> Progress:
    """A rich progress display with nastk's columns: description, bar, done/total, elapsed
    time, ETA, then one text column per name in ``fields`` (each task must set them all in
    ``add_task``; they are shown as plain text, not markup)."""
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), EtaColumn()]
    for name in fields:
        style = "red" if name == "failures" else ""
        columns.append(TextColumn(f"{{task.fields[{name}]}}", markup=False, style=style))
    return Progress(*columns, console=console, disable=disable, transient=transient,
                    get_time=get_time, speed_estimate_period=3600.0)


_UNSET: Any = object()


class ProgressView:
    """Progress of one or more jobs: live bars on a terminal, plain lines otherwise.

    ``enabled=False`` shows nothing (``--no-progress``). ``line_mode`` (default: when
    ``console.is_terminal`` is false) prints a line for a job when ``interval_s`` seconds have
    passed since its last line, when it crossed a multiple of ``percent`` percent (0: never;
    jobs without a total never), when a failure was added, and when it completes, but never two
    lines within ``min_interval_s`` except the completing one; leaving the view prints the last
    state of each job not printed yet. ``clock`` is for tests.

    Use as a context manager; :meth:`add` returns the job id for :meth:`update`.
    """

    def __init__(self, console: Console, *, enabled: bool = True, line_mode: bool | None = None,
                 interval_s: float = 30.0, percent: float = 10.0, min_interval_s: float = 1.0,
                 transient: bool = False, clock: Clock | None = None) -> None:
        self.console = console
        self.enabled = enabled
        self.line_mode = (not console.is_terminal) if line_mode is None else line_mode
        self.interval_s = interval_s
        self.percent = percent
        self.min_interval_s = min_interval_s
        self.clock: Clock = clock or time.monotonic
        self._jobs: dict[int, _Job] = {}
        self._lock = threading.RLock()
        self._progress: Progress | None = None
        if enabled and not self.line_mode:
            self._progress = make_progress(console, fields=("info", "failures"),
                                           transient=transient, get_time=self.clock)

    # -- context ------------------------------------------------------------------------------
    def __enter__(self) -> ProgressView:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Print the jobs' last states (line mode) or stop the live display."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
            elif self.enabled:
                for job in self._jobs.values():
                    if job.printed_state != job.state():
                        self._print(job, self.clock())

    def refresh(self) -> None:
        """Redraw the bars now (terminal mode)."""
        if self._progress is not None:
            self._progress.refresh()

    # -- jobs ---------------------------------------------------------------------------------
    def add(self, description: str, total: float | None = None, *, completed: float = 0,
            unit: str = "", info: str = "", percent: float | None = None) -> int:
        """A new job of ``total`` units (None: unknown); ``completed`` were done before (not
        counted in the ETA); ``unit`` names them in lines (``trials``); ``percent`` overrides
        the view's for this job (0: lines by time only, e.g. a bar of steps within an epoch)."""
        with self._lock:
            now = self.clock()
            job = _Job(description, total, unit, float(completed),
                       self.percent if percent is None else percent, info=info, t_start=now,
                       t_base=now, c_base=float(completed), t_last=now, printed_at=now,
                       printed_completed=float(completed))
            job.printed_state = job.state()  # nothing new to print yet
            job_id = len(self._jobs)
            self._jobs[job_id] = job
            if self._progress is not None:
                job.rich_id = self._progress.add_task(escape(description), total=total,
                                                      completed=completed, info=info,
                                                      failures="", _job=job)
            return job_id

    def update(self, job_id: int, *, completed: float | None = None,
               advance: float | None = None, total: float | None = _UNSET,
               info: str | None = None, failed: int | None = None,
               last_error: str | None = None, rebase: bool = False) -> None:
        """Set a job's progress (``completed`` or ``advance``), ``total``, text ``info``,
        failure count and last error (shortened to one line). ``rebase``: the progress up to
        here was not made at the current rate (e.g. trials restored from a store)."""
        with self._lock:
            job = self._jobs[job_id]
            now = self.clock()
            before = job.completed
            new_failure = failed is not None and failed > job.failed
            if total is not _UNSET:
                job.total = total
            if advance is not None:
                job.completed += advance
            if completed is not None:
                job.completed = float(completed)
            if info is not None:
                job.info = info
            if failed is not None:
                job.failed = failed
            if last_error is not None:
                job.last_error = short_error(last_error)
            if rebase or job.completed < before:  # a jump, or a bar that starts over
                job.t_base, job.c_base, job.t_last = now, job.completed, now
                job.printed_completed = min(job.printed_completed, job.completed)
            elif job.completed > before:
                job.t_last = now
            if not self.enabled:
                return
            if self._progress is not None:
                assert job.rich_id is not None
                self._progress.update(job.rich_id, completed=job.completed, total=job.total,
                                      info=job.info, failures=job.failures())
            elif self._due(job, now, new_failure):
                self._print(job, now)

    def log(self, text: str) -> None:
        """Print ``text`` as a line of its own, flushed at once (line mode only: nothing on a
        terminal, whose bars stay as they are, nor when disabled)."""
        with self._lock:
            if not self.enabled or self._progress is not None:
                return
            self.console.print(" ".join(text.split()), markup=False, highlight=False,
                               emoji=False, soft_wrap=True)
            flush = getattr(self.console.file, "flush", None)
            if flush is not None:
                flush()

    def finish(self, job_id: int) -> None:
        """Print the job's last state now if it has not been (line mode)."""
        with self._lock:
            job = self._jobs[job_id]
            if self.enabled and self._progress is None and job.printed_state != job.state():
                self._print(job, self.clock())

    # -- lines --------------------------------------------------------------------------------
    def _due(self, job: _Job, now: float, new_failure: bool) -> bool:
        if job.state() == job.printed_state:
            return False
        if job.total is not None and job.completed >= job.total:
            return True  # the completing line is always printed
        if now - job.printed_at < self.min_interval_s:
            return False
        if now - job.printed_at >= self.interval_s or new_failure:
            return True
        if job.total and job.percent > 0:
            step = job.total * job.percent / 100.0
            return math.floor(job.completed / step + 1e-9) > math.floor(
                job.printed_completed / step + 1e-9)
        return False

    def _print(self, job: _Job, now: float) -> None:
        self.console.print(job.line(now), markup=False, highlight=False, emoji=False,
                           soft_wrap=True)
        flush = getattr(self.console.file, "flush", None)
        if flush is not None:
            flush()
        job.printed_at, job.printed_completed = now, job.completed
        job.printed_state = job.state()


class SearchProgress:
    """A search's progress on a :class:`ProgressView`: pass :meth:`trial` as the search's
    ``on_trial`` and :meth:`rung` as its ``on_rung``, then call :meth:`start` with the
    :class:`~nastk.run.loop.Search` before it runs.

    Without a scheduler, or under one without a resource budget, the bar counts finished
    trials against ``budget.trials``. Under a scheduler with ``budget.resource``, it counts the
    resource spent by recorded rungs (the unit the evaluator's fidelity names, e.g. ``epochs``)
    against that budget, its ETA from the rate of that resource, the trials finished in its
    text; it moves after every rung. Under any scheduler, line mode also names every rung
    event on a line of its own: a rung whose candidate goes on or waits (``trial N rung k ->
    r epochs: metric=v, promoted to rung k+1 (r' epochs)``, ``..., waits for the rung's
    decision``), a candidate that finished (``trial N stopped at rung k (r epochs):
    metric=v``; ``completed``, ``failed``, or ``ended with the run`` when the run ended while
    it waited), and a waiting candidate a later rung's decision promoted (``trial N promoted
    from rung k to rung k+1 (r' epochs)``).

    ``on_trial`` is called after the bar with every finished trial, as the search's own.
    """

    def __init__(self, view: ProgressView, description: str, objective: Objective, *,
                 on_trial: TrialCallback | None = None) -> None:
        self.view = view
        self.description = description
        self.objective = objective
        self.on_trial = on_trial
        #: the bar's job id (set by :meth:`start`)
        self.job: int | None = None
        #: whether the bar counts the resource (else trials)
        self.by_resource = False
        self._search: Search | None = None
        self._trials_total = 0
        self._n_done = 0
        self._failed = 0
        self._last_error: str | None = None
        self._best = ""
        #: candidate -> its scheduler status when last seen (to name what a rung decided)
        self._status: dict[int, str] = {}

    def start(self, search: Search, done_before: int = 0) -> int:
        """Add the bar for ``search`` and return its job id. ``done_before``: the trials
        finished by earlier sessions; under a resource budget, the resource that the rungs in
        the search's store spent counts as done before (neither counts in the ETA)."""
        self._search = search
        budget = search.budget
        self._trials_total = budget.trials
        self._n_done = done_before
        self.by_resource = search.scheduler is not None and budget.resource is not None
        if self.by_resource:
            assert budget.resource is not None
            spent = sum(r.cost for r in search.store.rungs())
            unit = search.fidelity.name if search.fidelity is not None else "resource"
            description = (self.description if self.view.line_mode
                           else f"{self.description} ({unit})")
            self.job = self.view.add(description, total=budget.resource,
                                     completed=min(spent, budget.resource), unit=unit,
                                     info=self._text())
        else:
            self.job = self.view.add(self.description, total=budget.trials,
                                     completed=min(done_before, budget.trials), unit="trials")
        if search.scheduler is not None:
            self._status = {tid: str(t["status"]) for tid, t in search.scheduler.trials.items()}
        return self.job

    def trial(self, trial: Trial, n_done: int, best: Trial | None) -> None:
        """The search's ``on_trial``: count the finished trial, its failure and the best value
        on the bar; in line mode, a scheduled candidate's line says how it finished."""
        if trial.result is not None and not trial.result.ok:
            self._failed += 1
            self._last_error = trial.result.error
        self._n_done = n_done
        self._best = ""
        if best is not None and best.result is not None:
            value = best.result.value(self.objective.metric)
            self._best = f"best {self.objective.metric}={value:.4g}" if value is not None else ""
        if self.job is not None:
            if self.by_resource:
                self.view.update(self.job, info=self._text(), failed=self._failed,
                                 last_error=self._last_error)
            else:
                self.view.update(self.job, completed=n_done, info=self._best,
                                 failed=self._failed, last_error=self._last_error)
        if self._scheduled() and trial.result is not None and "scheduler" in trial.result.info:
            info = trial.result.info
            rung = int(info.get("rung", -1))
            reason = str(info["scheduler"])
            reason = "ended with the run" if reason == "budget" else reason
            what = (short_error(trial.result.error) if reason == "failed"
                    else self._value(trial.result))
            self.view.log(f"trial {trial.id} {reason} at rung {rung}{self._resource_of(rung)}: "
                          f"{what}")
            self._status[trial.id] = "done"
        if self.on_trial is not None:
            self.on_trial(trial, n_done, best)

    def rung(self, candidate: Candidate, result: Result, spent: float) -> None:
        """The search's ``on_rung``: move a resource bar to ``spent``; in line mode, name the
        rung (unless its candidate finished with it: :meth:`trial` named it) and the waiting
        candidates its decision promoted."""
        if self.job is not None and self.by_resource:
            self.view.update(self.job, completed=spent, info=self._text())
        sched = self._search.scheduler if self._search is not None else None
        if sched is None:
            return
        tid = candidate.trial_id
        status = str(sched.trials[tid]["status"]) if tid in sched.trials else ""
        if status != "done":
            rung = candidate.rung if candidate.rung is not None else -1
            resource = _number(candidate.resource) if candidate.resource is not None else "?"
            line = f"trial {tid} rung {rung} -> {resource}{self._unit()}: {self._value(result)}"
            if status in ("queued", "running"):
                line += f", promoted to rung {rung + 1}{self._resource_of(rung + 1)}"
            elif status == "paused":
                line += ", waits for the rung's decision"
            self.view.log(line)
        self._status[tid] = status
        for other, t in sched.trials.items():
            now = str(t["status"])
            if other != tid and self._status.get(other) == "paused" and now in ("queued",
                                                                                "running"):
                rung = int(t["rung"])
                self.view.log(f"trial {other} promoted from rung {rung} to rung {rung + 1}"
                              f"{self._resource_of(rung + 1)}")
            self._status[other] = now

    # -- text ---------------------------------------------------------------------------------
    def _scheduled(self) -> bool:
        return self._search is not None and self._search.scheduler is not None

    def _text(self) -> str:
        if not self.by_resource:
            return self._best
        trials = f"{self._n_done}/{self._trials_total} trials"
        return f"{trials}, {self._best}" if self._best else trials

    def _unit(self) -> str:
        fidelity = self._search.fidelity if self._search is not None else None
        return f" {fidelity.name}" if fidelity is not None else ""

    def _resource_of(self, rung: int) -> str:
        sched = self._search.scheduler if self._search is not None else None
        if sched is None or not 0 <= rung < len(sched.rungs):
            return ""
        return f" ({_number(sched.rungs[rung])}{self._unit()})"

    def _value(self, result: Result) -> str:
        if not result.ok:
            return f"failed: {short_error(result.error)}"
        value = result.value(self.objective.metric)
        return (f"{self.objective.metric}={value:.4g}" if value is not None
                else f"no {self.objective.metric}")
