"""One live process per run folder: nastk.run.lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from nastk.core.errors import StoreError
from nastk.run.layout import LOCK_FILE
from nastk.run.lock import RunLock, lock_run_dir, read_owner


def test_a_second_lock_on_a_held_run_dir_is_refused_and_names_the_owner(tmp_path):
    with lock_run_dir(tmp_path) as lock:
        assert lock.held
        owner = read_owner(tmp_path)
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["started"] <= time.time()
        with pytest.raises(StoreError) as err:
            RunLock(tmp_path).acquire()  # another lock in this process: refused, no deadlock
        msg = str(err.value)
        assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg
        assert "in use" in msg and "this process" in msg
    assert not lock.held
    with lock_run_dir(tmp_path):  # released: free again
        pass


def test_acquiring_twice_through_one_lock_is_refused(tmp_path):
    lock = lock_run_dir(tmp_path)
    try:
        with pytest.raises(StoreError, match="already holds"):
            lock.acquire()
    finally:
        lock.release()
    lock.release()  # releasing twice is harmless


def test_a_missing_run_dir_is_not_created(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        lock_run_dir(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_the_lock_file_is_left_but_holds_no_lock(tmp_path):
    """The file outlives the lock (deleting it would race a new owner); only flock counts."""
    with lock_run_dir(tmp_path):
        pass
    assert (tmp_path / LOCK_FILE).is_file()
    lock = lock_run_dir(tmp_path)  # a file left behind does not block
    assert read_owner(tmp_path)["pid"] == os.getpid()
    lock.release()


HOLDER = textwrap.dedent("""
    import sys, time
    from nastk.run.lock import lock_run_dir
    lock = lock_run_dir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_second_process_is_refused_until_the_first_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        second = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom nastk.run.lock import lock_run_dir\n"
             "lock_run_dir(sys.argv[1])", str(tmp_path)], capture_output=True, text=True,
            timeout=120)
        assert second.returncode != 0
        assert "StoreError" in second.stderr and f"pid {holder.pid}" in second.stderr
        assert "in use" in second.stderr and "--resume" in second.stderr
        with pytest.raises(StoreError, match=f"pid {holder.pid}"):
            lock_run_dir(tmp_path)  # this process too
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lock = lock_run_dir(tmp_path)  # free at once: the OS released the dead process's lock
    assert read_owner(tmp_path)["pid"] == os.getpid()
    lock.release()


def test_a_store_opened_with_the_lock_releases_it_when_closed(tmp_path):
    from nastk.run.sqlite_store import RunStore

    store = RunStore.in_dir(tmp_path)
    store.close()
    lock = lock_run_dir(tmp_path)
    with RunStore(tmp_path / RunStore.FILENAME, lock=lock):
        with pytest.raises(StoreError, match="in use"):
            lock_run_dir(tmp_path)
    assert not lock.held
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / RunStore.FILENAME).touch()
    lock = lock_run_dir(tmp_path / "empty")
    with pytest.raises(StoreError, match="empty"):
        RunStore.open_for_resume(tmp_path / "empty", lock=lock)
    assert not lock.held  # a refused store gives its lock back
