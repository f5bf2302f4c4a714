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

:func:`make_progress` is the bare rich :class:`~rich.progress.Progress` with the same columns.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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

__all__ = ["ProgressView", "make_progress", "short_error"]

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
