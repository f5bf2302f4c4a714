"""nastk.report.progress: one progress display for search, supernet training and distillation; plain
lines (with ETA, rate-limited, flushed at once) when the console is not a terminal."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from nastk.report.progress import ProgressView, make_progress


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class FlushCounter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.flushed_text: list[str] = []

    def flush(self) -> None:
        self.flushes += 1
        self.flushed_text.append(self.getvalue())


def log_console(file: io.StringIO | None = None) -> Console:
    return Console(file=file if file is not None else io.StringIO(), force_terminal=False,
                   width=200)


def lines(console: Console) -> list[str]:
    return [line for line in console.file.getvalue().splitlines() if line.strip()]


def test_line_mode_prints_progress_with_elapsed_eta_info_and_failures():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=30, percent=10) as view:
        assert view.line_mode
        job = view.add("search quickstart", total=40, unit="trials")
        clock.advance(31)
        view.update(job, completed=12, info="best accuracy=0.9861", failed=1,
                    last_error="ValueError: bad shape\n  Traceback line two")
    out = lines(console)
    assert out, "no line printed"
    first = out[0]
    assert first.startswith("search quickstart: 12/40 trials")
    assert "0:00:31 elapsed" in first
    # 12 trials in 31 s: 28 more take 28 * 31/12 = 72.3 s
    assert "ETA 0:01:12" in first
    assert "best accuracy=0.9861" in first
    assert "failed 1 (last: ValueError: bad shape Traceback line two)" in first
    assert "\x1b[" not in console.file.getvalue()  # plain text, no escape codes


def test_line_mode_flushes_each_line_immediately():
    clock = FakeClock()
    file = FlushCounter()
    console = log_console(file)
    view = ProgressView(console, clock=clock, interval_s=5, percent=0)
    with view:
        job = view.add("epochs", total=10)
        clock.advance(6)
        view.update(job, completed=1)
        assert "epochs: 1/10" in file.getvalue()
        assert file.flushes >= 1 and "epochs: 1/10" in file.flushed_text[-1]


def test_line_mode_rate_limits_by_time_and_percent():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=20, percent=25,
                      min_interval_s=0) as view:
        job = view.add("search s", total=100, unit="trials")
        for n in range(1, 101):
            clock.advance(1)  # one trial a second
            view.update(job, completed=n)
    printed = [int(re.match(r"search s: (\d+)/100 trials", line).group(1))
               for line in lines(console)]
    # 20 s after the last line (20, 45, 70, 95), each 25 % step (25, 50, 75), the end (100)
    assert printed == [20, 25, 45, 50, 70, 75, 95, 100]


def test_line_mode_time_limit_without_percent():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=10, percent=0) as view:
        job = view.add("steps", total=None, unit="steps")
        for n in range(1, 36):
            clock.advance(1)
            view.update(job, completed=n)
    printed = [line for line in lines(console) if line.startswith("steps:")]
    # at 10, 20, 30 s, and the last state when the view closes
    assert [re.match(r"steps: (\d+) steps", p).group(1) for p in printed] == \
        ["10", "20", "30", "35"]
    assert "ETA" not in printed[0]  # no total, no ETA
    assert "0:00:10 elapsed" in printed[0]


def test_line_mode_min_interval_caps_lines_per_second():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=60, percent=1,
                      min_interval_s=5) as view:
        job = view.add("fast", total=1000)
        for n in range(1, 500):
            clock.advance(0.01)  # 5 s in all
            view.update(job, completed=n)
    assert len(lines(console)) <= 3


def test_resumed_work_does_not_count_in_the_eta():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=1, percent=0, min_interval_s=0) as view:
        job = view.add("search r", total=40, completed=30, unit="trials")  # 30 done before
        clock.advance(20)
        view.update(job, completed=32)  # 2 trials in 20 s: 8 more take 80 s
    assert "ETA 0:01:20" in lines(console)[0]


def test_rebase_excludes_a_jump_from_the_rate():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=1, percent=0, min_interval_s=0) as view:
        job = view.add("search r", total=40, unit="trials")
        clock.advance(5)
        view.update(job, completed=30, rebase=True)
        clock.advance(10)
        view.update(job, completed=31)  # 1 trial in 10 s: 9 more take 90 s
    assert "ETA 0:01:30" in lines(console)[-1]


def test_disabled_view_prints_nothing():
    console = log_console()
    with ProgressView(console, enabled=False) as view:
        job = view.add("x", total=3)
        view.update(job, completed=3, info="done")
    assert console.file.getvalue() == ""


def test_terminal_mode_renders_bar_eta_and_failures():
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with ProgressView(console, clock=clock) as view:
        assert not view.line_mode
        job = view.add("search quickstart", total=40, unit="trials")
        clock.advance(31)
        view.update(job, completed=12, info="best accuracy=0.9861", failed=2,
                    last_error="ValueError: [bad] shape")
        steps = view.add("steps", total=None)
        view.update(steps, completed=5)
        view.refresh()
    text = console.file.getvalue()
    assert "search quickstart" in text and "12/40" in text
    assert "0:01:12" in text  # the ETA column
    assert "0:00:31" in text  # elapsed
    assert "best accuracy=0.9861" in text
    assert "failed 2 (last: ValueError: [bad] shape)" in text


def test_terminal_mode_is_chosen_from_the_console():
    assert not ProgressView(Console(file=io.StringIO(), force_terminal=True)).line_mode
    assert ProgressView(Console(file=io.StringIO(), force_terminal=False)).line_mode
    assert ProgressView(Console(file=io.StringIO(), force_terminal=True),
                        line_mode=True).line_mode


def test_long_errors_are_shortened():
    clock = FakeClock()
    console = log_console()
    with ProgressView(console, clock=clock, interval_s=1, percent=0, min_interval_s=0) as view:
        job = view.add("s", total=2)
        clock.advance(2)
        view.update(job, completed=1, failed=1, last_error="RuntimeError: " + "x" * 500)
    line = lines(console)[0]
    assert "x" * 100 not in line and "RuntimeError: xxx" in line and "…" in line


def test_make_progress_has_eta_and_elapsed_columns():
    from rich.progress import TimeElapsedColumn, TimeRemainingColumn

    progress = make_progress(Console(file=io.StringIO(), force_terminal=True),
                             fields=("info",))
    kinds = [type(c) for c in progress.columns]
    assert TimeElapsedColumn in kinds
    assert any(issubclass(k, TimeRemainingColumn) for k in kinds)
    with progress:
        job = progress.add_task("x", total=4, info="hello")
        progress.update(job, completed=2)


def test_update_of_an_unknown_job_is_an_error():
    with ProgressView(log_console()) as view, pytest.raises(KeyError):
        view.update(99, completed=1)
