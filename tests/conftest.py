import gc
import itertools
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))


@pytest.fixture
def toy_env(monkeypatch):
    """Environment for subprocesses that must import toy_plugin."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


# `num_threads: auto` follows the machine's load (nastk.core.cpus); the tests want one count
# in every process they start, so that two runs they compare compute alike
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _finalize_abandoned_loaders():
    """Collect garbage after a test that left worker processes alive, so a DataLoader iterator
    with workers that it left unfinished is shut down here, between tests, and not at an
    arbitrary point of a later test: CPython's queue feeder threads of such iterators close
    their pipe ends late, and a file descriptor number a later test's new pipe reused was seen
    closed under it (EBADF in multiprocessing's popen_fork). Tests without children skip the
    collection (a full one after each of the ~1,700 tests made CI minutes slower)."""
    yield
    if multiprocessing.active_children():
        gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' models are tiny: one torch thread runs them fastest, and two threads on a
    busy 2-core machine crawl. Code under test that sets its own thread count restores it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def wait_for_complete(store_path: Path, n: int, timeout: float,
                      proc: subprocess.Popen | None = None) -> int:
    """Poll a run store (written by another process) until it holds ``n`` complete trials, the
    timeout passes or ``proc`` exits; returns the count last seen."""
    deadline = time.time() + timeout
    count = 0
    while time.time() < deadline and (proc is None or proc.poll() is None):
        time.sleep(0.1)
        if not store_path.exists():
            continue
        with closing(sqlite3.connect(store_path)) as db:
            try:
                count = db.execute("SELECT COUNT(*) FROM trials WHERE status='complete'"
                                   ).fetchone()[0]
            except sqlite3.OperationalError:  # the schema is not created yet
                continue
        if count >= n:
            break
    return count


def all_architectures(space) -> list:
    """Every valid architecture of a small space, in the order of its decisions (dimension by
    dimension, each in its choices' order)."""
    out = []
    for idx in itertools.product(*(range(n) for n in space.decisions())):
        arch = space.from_decisions(list(idx))
        if space.is_valid(arch):
            out.append(space.validate(arch))
    return out
