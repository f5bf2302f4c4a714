"""Objective functions for the Ray executor tests (importable as ``ray_plugin`` in Ray workers:
the tests put tests/ on their PYTHONPATH). They score like ``toy_plugin.objective`` over the
``toy_grid`` space and misbehave on purpose for candidates with ``a == 0``, driven by
environment variables:

- ``NASTK_RAY_LOG``: a file every evaluation appends ``<pid> <arch key>`` to (which candidate
  was evaluated how often, across processes);
- ``NASTK_RAY_MARKS``: a folder for the one-shot behaviours below; a file ``sleep`` there holds
  seconds every evaluation sleeps (to mimic training). Files, because Ray workers keep the
  environment they started with.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import toy_plugin

from nastk import Architecture


def _log(arch: Architecture) -> None:
    path = os.environ.get("NASTK_RAY_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {arch.key}\n")


def _once(name: str) -> bool:
    """True the first time this is called with ``name``, in any process (a marker file)."""
    marks = Path(os.environ["NASTK_RAY_MARKS"])
    marks.mkdir(parents=True, exist_ok=True)
    try:
        (marks / f"once-{name}").touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def _first_time(arch: Architecture) -> bool:
    """True the first time this is called for ``arch``."""
    return _once(hashlib.sha1(arch.key.encode()).hexdigest()[:16])


def objective(arch: Architecture) -> dict[str, float]:
    """``toy_plugin.objective``, logged, sleeping as long as ``NASTK_RAY_MARKS/sleep`` says."""
    _log(arch)
    marks = os.environ.get("NASTK_RAY_MARKS")
    sleep = Path(marks) / "sleep" if marks else None
    if sleep is not None and sleep.is_file():
        time.sleep(float(sleep.read_text()))
    return toy_plugin.objective(arch)


def kills_its_worker(arch: Architecture) -> dict[str, float]:
    """Candidates with ``a == 0`` kill their own worker process (SIGKILL), every time."""
    if arch["a"] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return objective(arch)


def kills_its_worker_once_or_always(arch: Architecture) -> dict[str, float]:
    """Candidates with ``a == 0`` kill their own worker process the first time only, those with
    ``a == 1`` every time."""
    if arch["a"] == 1 or (arch["a"] == 0 and _first_time(arch)):
        os.kill(os.getpid(), signal.SIGKILL)
    return objective(arch)


def waits_to_be_killed(arch: Architecture) -> dict[str, float]:
    """The first candidate with ``a == 0`` writes ``<pid>`` to ``NASTK_RAY_MARKS/victim`` and
    sleeps a minute (a test kills the process meanwhile); everything else scores at once."""
    if arch["a"] == 0 and _once("victim"):
        victim = Path(os.environ["NASTK_RAY_MARKS"]) / "victim"
        tmp = victim.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()} {arch.key}")
        tmp.replace(victim)
        time.sleep(60)
    return objective(arch)


def data_file_breaks(arch: Architecture) -> dict[str, float]:
    """Candidates with ``a == 0`` meet an unreadable data-set file (a run-stopping error);
    everything else scores at once."""
    if arch["a"] == 0:
        from nastk.data.folders import DatasetError

        raise DatasetError("MyFolder: cannot read image /data/train/0042.png: truncated "
                           "(re-copy the file or remove it from the split)")
    return objective(arch)
