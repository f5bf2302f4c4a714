"""The CPUs this process may use and torch thread counts that fit them.

``num_threads: auto`` (the default of every option that sets torch threads) resolves through
:func:`resolve_threads`: ``OMP_NUM_THREADS`` when it is set (Ray sets it to a task's or actor's
reserved CPUs; a user may set it too), otherwise the CPUs this process may use — the smaller of
its CPU affinity and its cgroup CPU quota (a container's ``--cpus``, a SLURM or Kubernetes
limit) less one for each worker process of the training loader (``data: {workers}``: they
decode on CPUs of their own, and training threads that fight them for the cores slow both;
``benchmarks/data_throughput.py`` measures it) — divided among the candidates that run side
by side, and no more than the CPUs other processes leave free (measured over 0.2 s when a
trial starts, reused for 30 s). On a 2-core
machine the quickstart's first trial beside a CPU-bound neighbour took 2.2 times its idle time
with two threads (3.2 times with spinning waiters) and about its idle time with one
(``benchmarks/contention.py``, ``benchmarks/RESULTS.md``): a thread that shares its core holds
up every parallel region. The count can thus differ between trials as the load
changes; threaded CPU arithmetic may then differ in its last bits, as it does between any
two thread counts.

Threads that wait for work spin by default in OpenMP, which torch's CPU build uses: on cores
that other processes also use, spinning threads take the time slices their peers need, and a
two-thread step can take seven times as long as a one-thread one. Importing :mod:`nastk` sets
``OMP_WAIT_POLICY=PASSIVE`` (unless the environment already sets it) before torch is loaded,
so waiting threads sleep. When torch was loaded first without that setting, the pool may spin,
and ``auto`` picks one thread (:func:`pool_may_spin`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

__all__ = ["THREADS_HELP", "ThreadCount", "Threads", "auto_threads", "available_cpus",
           "cgroup_cpu_quota", "cpus_busy_elsewhere", "pool_may_spin", "resolve_threads"]

#: a thread-count option: a positive int, ``"auto"`` (see the module docstring), or None
#: (leave torch's setting as it is)
ThreadCount = int | Literal["auto"] | None

#: the pydantic type of a ``num_threads`` option (a positive int, ``"auto"`` or null)
Threads = Annotated[int, Field(ge=1)] | Literal["auto"] | None

#: what every ``num_threads`` option's description says about its values
THREADS_HELP = ("auto: OMP_NUM_THREADS when set, else the CPUs this process may use "
                "(affinity and cgroup quota) less those other processes keep busy "
                "(nastk.core.cpus); an int: that many; null: torch's setting unchanged")

#: set by ``nastk/__init__.py``: whether torch was already imported, with no OpenMP wait
#: policy in the environment, when nastk was first imported
_SPIN_AT_IMPORT = {"torch_first": False}

_CGROUP = Path("/sys/fs/cgroup")


def _set_wait_policy() -> None:
    """Ask OpenMP's waiting threads to sleep (see the module docstring); remember when torch
    was loaded first and it is too late."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    if "torch" in sys.modules:
        _SPIN_AT_IMPORT["torch_first"] = True
    else:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_set_wait_policy()


def cgroup_cpu_quota(root: Path = _CGROUP) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none or it cannot be
    read. Reads cgroup v2's ``cpu.max`` (``"max 100000"`` means no quota), else cgroup v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (a quota of -1 means none)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, _, period = v2.read_text().strip().partition(" ")
            if quota == "max":
                return None
            return int(quota) / int(period or 100000)
        q1, p1 = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if q1.is_file() and p1.is_file():
            quota_us = int(q1.read_text().strip())
            return None if quota_us <= 0 else quota_us / int(p1.read_text().strip())
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity (``os.sched_getaffinity``, or the machine's
    count where that call does not exist) capped by the cgroup quota, rounded down, at
    least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def pool_may_spin() -> bool:
    """Whether torch's thread pool may spin while waiting: torch was imported before nastk
    while the environment set no ``OMP_WAIT_POLICY``, or the environment asks for ``ACTIVE``."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    return policy == "ACTIVE" or _SPIN_AT_IMPORT["torch_first"]


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot (Linux's ``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [float(v) for v in fields[:8]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


#: the last measurement of the CPUs other processes keep busy: (monotonic time, CPUs)
_BUSY_CACHE: dict[str, tuple[float, float]] = {}


def cpus_busy_elsewhere(window_s: float = 0.2, max_age_s: float = 30.0) -> float:
    """How many CPUs other processes kept busy over a ``window_s`` sample (Linux: the
    machine's busy time from ``/proc/stat`` less this process's own CPU time); 0 where it
    cannot be measured. A measurement is reused for ``max_age_s``."""
    now = time.monotonic()
    cached = _BUSY_CACHE.get("last")
    if cached is not None and now - cached[0] < max_age_s:
        return cached[1]
    first, own0, t0 = _cpu_times(), _own_cpu_s(), time.monotonic()
    if first is None:
        return 0.0
    time.sleep(window_s)
    second, own1, t1 = _cpu_times(), _own_cpu_s(), time.monotonic()
    if second is None or second[1] <= first[1]:
        return 0.0
    ncpu = os.cpu_count() or 1
    machine_busy = (second[0] - first[0]) / (second[1] - first[1]) * ncpu
    busy = max(0.0, machine_busy - (own1 - own0) / max(t1 - t0, 1e-9))
    _BUSY_CACHE["last"] = (now, busy)
    return busy


def auto_threads(workers: int = 1, loader_workers: int = 0) -> int:
    """The thread count ``auto`` means for one of ``workers`` candidates running side by side
    in this process's CPUs (see the module docstring): its share of the CPUs left to it by the
    ``loader_workers`` data-loading processes it starts (each decodes on a CPU of its own), less
    the CPUs other processes keep busy now (:func:`cpus_busy_elsewhere`), at least 1."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if loader_workers < 0:
        raise ValueError(f"loader_workers must be >= 0, got {loader_workers}")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    if pool_may_spin():
        return 1
    cpus = max(1, available_cpus() - loader_workers)
    share = max(1, cpus // workers)
    if share == 1:
        return 1
    free = cpus - cpus_busy_elsewhere()
    return max(1, min(share, int(free + 0.5)))


def resolve_threads(value: ThreadCount, workers: int = 1, loader_workers: int = 0
                    ) -> int | None:
    """A thread-count option made concrete: ``"auto"`` through :func:`auto_threads`, an int as
    it is, None stays None (leave torch's setting alone)."""
    if value == "auto":
        return auto_threads(workers, loader_workers)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ValueError(f"num_threads must be a positive integer, 'auto' or None; got "
                         f"{value!r}")
    return value
