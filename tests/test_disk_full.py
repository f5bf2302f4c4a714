"""A full disk: the store and the weight writers say what failed and how to continue, leave no
temporary file, and a run resumed once space is freed ends as if nothing had happened."""

from __future__ import annotations

import errno
import io
import sqlite3

import pytest
import torch
import toy_plugin

from nastk import Objective, Result, Status
from nastk.core.errors import NastkError, StoreError
from nastk.core.weights import clean_temp_files, save_state, write_atomic
from nastk.run.layout import RunLayout
from nastk.run.loop import Budget, Search
from nastk.run.sqlite_store import DiskFullError, RunStore, StoreWriteError
from nastk.space.architecture import Architecture
from nastk.strategies.evolution import RegularizedEvolution

OBJ = Objective(metric="score")
ARCH = Architecture(a=1, b=2)


def fill_up(store: RunStore) -> None:
    """Let the database grow no further: the next write that needs a page fails with
    SQLITE_FULL ("database or disk is full"), the error SQLite gives on a full disk."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def big_result() -> Result:
    return Result.complete({"score": 1.0}, info={"log": "x" * 50_000})


def test_a_full_database_names_the_write_and_the_file_and_how_to_continue(tmp_path):
    store = RunStore.in_dir(tmp_path)
    tid = store.start_trial(ARCH)
    fill_up(store)
    with pytest.raises(DiskFullError) as err:
        store.finish_trial(tid, big_result())
    msg = str(err.value)
    assert isinstance(err.value, StoreError) and isinstance(err.value.__cause__,
                                                            sqlite3.OperationalError)
    assert f"recording the result of trial {tid}" in msg and str(store.path) in msg
    assert "no space left" in msg and "nastk search CONFIG --resume" in msg
    # nothing half-written: the row is still running, the store still usable
    assert [t.status for t in store.trials()] == [Status.RUNNING]
    store._db.execute("PRAGMA max_page_count = 1073741823")
    store.finish_trial(tid, big_result())
    assert store.count(Status.COMPLETE) == 1
    store.close()


@pytest.mark.parametrize("write", ["start_trial", "mark_told", "set_meta"])
def test_every_store_write_translates_a_full_disk(tmp_path, write):
    store = RunStore.in_dir(tmp_path)
    tid = store.start_trial(ARCH)
    fill_up(store)
    big = {"w": torch.zeros(50_000)}
    with pytest.raises(DiskFullError, match="--resume") as err:
        if write == "start_trial":
            store.start_trial(Architecture(a=2), state=big, in_flight=[])
        elif write == "mark_told":
            store.mark_told([tid], big)
        else:
            store.set_meta("rendered", {"k": "x" * 50_000})
    assert {"start_trial": "starting a trial", "mark_told": "saving the strategy's state",
            "set_meta": "writing run metadata 'rendered'"}[write] in str(err.value)
    store.close()


class FailingConnection:
    """The store's connection, failing its next COMMIT with ``error``."""

    def __init__(self, db: sqlite3.Connection, error: BaseException) -> None:
        self._db, self._error = db, error

    def execute(self, sql, *args):
        if sql == "COMMIT" and self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.mark.parametrize("error, kind, says", [
    (sqlite3.OperationalError("database or disk is full"), DiskFullError, "no space left"),
    (sqlite3.OperationalError("disk I/O error"), StoreWriteError, "disk I/O error"),
    (OSError(errno.ENOSPC, "No space left on device"), DiskFullError, "no space left"),
])
def test_disk_errors_at_commit_are_translated_and_rolled_back(tmp_path, error, kind, says):
    store = RunStore.in_dir(tmp_path)
    tid = store.start_trial(ARCH)
    store._db = FailingConnection(store._db, error)
    with pytest.raises(kind) as err:
        store.finish_trial(tid, Result.complete({"score": 1.0}))
    assert says in str(err.value) and str(store.path) in str(err.value)
    assert "--resume" in str(err.value)
    assert not store._db.in_transaction  # rolled back, not left open
    assert store.count(Status.RUNNING) == 1
    store.close()


def test_other_database_errors_are_not_disguised(tmp_path):
    store = RunStore.in_dir(tmp_path)
    store._db = FailingConnection(store._db, sqlite3.OperationalError("database is locked"))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.start_trial(ARCH)
    store.close()


class Verbose:
    """An evaluator whose results carry a long log, so every result needs new pages."""

    def evaluate(self, arch, checkpoint=None):
        return Result.complete(toy_plugin.objective(arch), info={"log": "x" * 20_000})


def test_a_search_stopped_by_a_full_disk_resumes_exactly_once_space_is_freed(tmp_path):
    def make(path):
        space = toy_plugin.ToyGrid()
        return Search(space, RegularizedEvolution(space, OBJ, seed=2, population=5),
                      Verbose(), OBJ, RunStore.in_dir(path), Budget(trials=20))

    ref = make(tmp_path / "ref")
    ref.run()
    expected = [t.arch.key for t in ref.store.finished()]

    search = make(tmp_path / "run")
    search.on_trial = lambda trial, n, best: fill_up(search.store) if n == 7 else None
    with pytest.raises(DiskFullError, match="recording the result of trial 8"):
        search.run()
    assert search.store.count(Status.COMPLETE) == 7
    search.store.close()
    again = make(tmp_path / "run")  # space freed (a new connection has no page limit)
    again.run()
    assert [t.arch.key for t in again.store.finished()] == expected
    again.store.close()


def test_a_checkpoint_that_fills_the_disk_stops_the_run_instead_of_failing_the_trial(tmp_path):
    from nastk.core.weights import DiskFullError as FileDiskFull

    space = toy_plugin.ToyGrid()

    class Saving:
        full = True

        def evaluate(self, arch, checkpoint=None):
            if self.full:
                raise FileDiskFull(f"no space left on device writing {checkpoint}")
            return Result.complete(toy_plugin.objective(arch))

    evaluator = Saving()

    def make():
        return Search(space, RegularizedEvolution(space, OBJ, seed=2, population=5), evaluator,
                      OBJ, RunStore.in_dir(tmp_path), Budget(trials=4),
                      checkpoint_dir=tmp_path / "checkpoints")

    search = make()
    with pytest.raises(FileDiskFull):
        search.run()
    assert search.store.count(Status.FAILED) == 0 and search.store.count(Status.RUNNING) == 1
    search.store.close()
    evaluator.full = False
    again = make()
    again.run()
    assert again.store.count(Status.COMPLETE) == 4
    again.store.close()


# -- weight files -------------------------------------------------------------------------------
class FullAfter(io.FileIO):
    """A file on a disk that fills after ``limit`` bytes (writes then fail with ENOSPC)."""

    limit = 1000

    def write(self, data):
        room = self.limit - self.tell()
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(bytes(data)[:room])


def test_a_checkpoint_written_to_a_full_disk_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "trial_3.pt"
    save_state({"w": torch.ones(3)}, target)  # an earlier, good version
    monkeypatch.setattr("nastk.core.weights.open", lambda p, mode: FullAfter(p, "w"), raising=False)
    with pytest.raises(NastkError) as err:
        save_state({"w": torch.zeros(100_000)}, target)  # the real torch.save, disk full
    msg = str(err.value)
    assert f"no space left on device writing {target}" in msg
    assert "free space" in msg and "--resume" in msg
    assert sorted(p.name for p in target.parent.iterdir()) == ["trial_3.pt"]
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


def test_bytes_written_to_a_full_disk_leave_no_temp_file(tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.write_bytes

    def full(self, data):
        real(self, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(NastkError, match=r"no space left on device writing .*trial_1\.pt"):
        write_atomic(tmp_path / "trial_1.pt", b"0123456789" * 100)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_for_another_reason_still_removes_its_temp_file(tmp_path):
    def broken(tmp):
        tmp.write_bytes(b"half")
        raise ValueError("cannot pickle this")

    with pytest.raises(ValueError, match="cannot pickle"):
        write_atomic(tmp_path / "a.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_clean_temp_files_removes_what_a_killed_write_left(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    leftovers = [ck / "trial_4.pt.tmp", tmp_path / "supernet.pt.tmp"]
    kept = [ck / "trial_3.pt", tmp_path / "store.sqlite", tmp_path / "notes" / "x.tmp"]
    for p in leftovers + kept:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    folders = RunLayout(tmp_path).written_folders()
    assert sorted(clean_temp_files(*folders)) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)
    assert clean_temp_files(*folders) == [] and clean_temp_files(tmp_path / "nope") == []
