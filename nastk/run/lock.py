"""One live process per run folder.

A search or a supernet training takes an exclusive ``flock`` on ``run_dir/.lock`` for as long
as it runs, and writes its PID, host name and start time into the file. A second process (a
``--resume`` started while the run is live, or two at once) is refused with a
:class:`~nastk.core.errors.StoreError` that names the owner. The operating system drops the lock
when its process ends, however it ends (``kill -9`` included), so a lock never outlives its
owner and there is nothing stale to clean up. The file itself stays (only the lock counts):
deleting it would let a third process lock a new file while a second still holds the old one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from nastk.core.errors import StoreError
from nastk.run.layout import RunLayout

__all__ = ["RunLock", "lock_run_dir", "read_owner"]


# locks this process holds, by resolved run folder: kept referenced so that a lock is never
# released by the garbage collector closing its file, and so that a second lock on a folder
# this process holds fails clearly (flock would refuse it too; this names the cause)
_HELD: dict[Path, RunLock] = {}


def read_owner(run_dir: str | Path) -> dict[str, Any] | None:
    """What the current holder wrote into ``run_dir/.lock`` (``pid``, ``host``, ``started``),
    or ``None`` when the file is missing, empty (nobody holds it) or unreadable."""
    path = RunLayout(run_dir).lock
    for attempt in range(5):  # the holder writes just after locking: give it a moment
        try:
            text = path.read_text()
        except OSError:
            return None
        if text.strip():
            try:
                owner = json.loads(text)
            except ValueError:
                return None
            return owner if isinstance(owner, dict) else None
        if attempt < 4:
            time.sleep(0.05)
    return None


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "another process (it did not say which)"
    started = owner.get("started")
    since = (time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started))
             if isinstance(started, (int, float)) else "")
    here = " (this process)" if (owner.get("pid") == os.getpid()
                                 and owner.get("host") == socket.gethostname()) else ""
    return f"pid {owner.get('pid')} on host {owner.get('host')}{since}{here}"


class RunLock:
    """The exclusive lock of one run folder (``run_dir/.lock``).

    ``acquire`` takes it or raises :class:`StoreError` naming the process that holds it;
    ``release`` (or leaving the ``with`` block) gives it back; the process ending releases it
    too. Not re-entrant: a second lock on a folder this process already holds is refused.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = RunLayout(self.run_dir).lock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise StoreError(f"this process already holds the lock of run directory "
                             f"{self.run_dir}")
        if not self.run_dir.is_dir():
            raise StoreError(f"run directory {self.run_dir} does not exist"
                             if not self.run_dir.exists()
                             else f"run_dir {self.run_dir} is not a folder")
        key = self.run_dir.resolve()
        if key in _HELD:
            raise StoreError(f"run directory {self.run_dir} is in use by "
                             f"{_describe(read_owner(self.run_dir))}: this process already "
                             "runs it; one run folder takes one live process")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open the lock file {self.path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(
                    f"run directory {self.run_dir} is in use by "
                    f"{_describe(read_owner(self.run_dir))}: one run folder takes one live "
                    "process. Wait for that process to end (or stop it); the run can then be "
                    "continued with --resume.") from None
            raise StoreError(f"cannot lock {self.path}: {err.strerror}") from err
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        except OSError:  # e.g. a full disk: the lock is still held, only unlabelled
            pass
        self._fd = fd
        _HELD[key] = self
        return self

    def release(self) -> None:
        """Give the lock back (harmless when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.pop(self.run_dir.resolve(), None)
        try:
            os.ftruncate(fd, 0)  # nobody holds it: no owner to name
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({str(self.run_dir)!r}, held={self.held})"


def lock_run_dir(run_dir: str | Path, create: bool = False) -> RunLock:
    """Take the lock of ``run_dir`` for this process (until :meth:`RunLock.release` or the
    process ends); a :class:`StoreError` names the live process that holds it. The folder must
    exist unless ``create`` (a new run), so a refused resume never creates one."""
    run_dir = Path(run_dir)
    if create and not run_dir.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
    return RunLock(run_dir).acquire()
