"""Stopping a run on a signal the way Ctrl-C stops it.

Schedulers and service managers stop a job with SIGTERM (SLURM, Kubernetes, systemd, ``docker
stop``) and a closed terminal sends SIGHUP; Python's default for both is to die on the spot,
with no report and no hint how to continue. Inside :func:`stop_on_signals`, SIGINT, SIGTERM and
SIGHUP all raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread, so the code
that already handles Ctrl-C — finished trials kept, trials in flight recorded as interrupted,
the report written and marked interrupted, the resume command printed — handles them too. The
exception is raised as soon as the main thread runs Python again (at the latest when the
torch operation under way returns). A second signal, while the first is being handled, ends
the process at once with status ``128 + signal``.

A signal the process ignores when the block starts (``nohup`` ignores SIGHUP) stays ignored.
Outside the main thread the block changes nothing (Python delivers signals to the main thread
only).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["Interrupted", "exit_status", "interrupt_name", "received", "stop_on_signals"]


class Interrupted(KeyboardInterrupt):
    """A run stopped by ``signum`` (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(self.signum).name
        super().__init__(self.signal_name)

    @property
    def exit_status(self) -> int:
        """The conventional status of a process stopped by this signal (130 for SIGINT, 143 for
        SIGTERM, 129 for SIGHUP)."""
        return 128 + self.signum


def exit_status(err: BaseException) -> int:
    """The exit status for an interrupt: ``128 + signal`` for :class:`Interrupted`, 130 (a
    Ctrl-C) for any other ``KeyboardInterrupt``."""
    return err.exit_status if isinstance(err, Interrupted) else 128 + signal.SIGINT


def interrupt_name(err: BaseException) -> str:
    """The signal that stopped a run: ``SIGTERM`` etc., ``SIGINT`` for a plain Ctrl-C."""
    return err.signal_name if isinstance(err, Interrupted) else "SIGINT"


def _handled() -> list[int]:
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


#: ``depth``: nested blocks open; ``received``: the signal being handled, if any
_STATE: dict[str, Any] = {"depth": 0, "received": None}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _STATE["received"] is not None:  # the second signal: no more cleaning up
        os._exit(128 + signum)
    _STATE["received"] = signum
    raise Interrupted(signum)


def received() -> int | None:
    """The signal the innermost open block is handling, if any."""
    return _STATE["received"]


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`; a second one
    exits at once. The handlers before the block are restored after it; blocks nest (a block
    re-installs the handlers over any a library set meanwhile, e.g. ``ray.init``'s)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _handled()}
    if _STATE["depth"] == 0:
        _STATE["received"] = None
    _STATE["depth"] += 1
    try:
        for s, before in previous.items():
            if before is not signal.SIG_IGN:
                signal.signal(s, _on_signal)
        yield
    finally:
        _STATE["depth"] -= 1
        for s, before in previous.items():
            if before is not None:
                signal.signal(s, before)
        if _STATE["depth"] == 0:
            _STATE["received"] = None
