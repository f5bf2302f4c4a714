"""Files that are not what nastk expects there: an empty, foreign or unreadable run store given
to --resume (or to report/export), and a checkpoint that is not a nastk checkpoint."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

from nastk.core.errors import NastkError, StoreError
from nastk.core.result import Result, Status
from nastk.core.weights import load_file, read_weights, save_state
from nastk.run.sqlite_store import RunStore, UnstartedStoreError, check_run_store
from nastk.space.architecture import Architecture


def a_run(run_dir):
    """A store as `nastk search` leaves it: identity meta, a trial."""
    with RunStore.in_dir(run_dir) as st:
        st.set_meta("identity", {"space": "toy"})
        tid = st.start_trial(Architecture(a=1))
        st.finish_trial(tid, Result.complete({"score": 1.0}))
    return run_dir / RunStore.FILENAME


def test_a_store_with_a_run_opens_for_resume(tmp_path):
    path = a_run(tmp_path)
    with RunStore.open_for_resume(path) as st:
        assert st.count() == 1
    with RunStore.open_for_resume(tmp_path) as st:  # the run folder works too
        assert st.get_meta("identity") == {"space": "toy"}


def test_a_store_with_trials_but_no_identity_is_a_run(tmp_path):
    """A run killed before it saved its config still holds its trials: it resumes as a run.
    Without that trial the same store holds no run and is refused, left as it was."""
    with RunStore.in_dir(tmp_path) as st:
        tid = st.start_trial(Architecture(a=1))
    with RunStore.open_for_resume(tmp_path) as st:
        assert st.get_meta("identity") is None
        (trial,) = st.trials()
        assert (trial.id, trial.arch, trial.status, trial.result) == (
            tid, Architecture(a=1), Status.RUNNING, None)
    path = tmp_path / RunStore.FILENAME
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM trials")
    before = path.read_bytes()
    with pytest.raises(UnstartedStoreError, match=r"holds no run \(no config, no trials"):
        RunStore.open_for_resume(tmp_path)
    assert path.read_bytes() == before


def test_a_missing_store_is_refused_without_creating_it(tmp_path):
    with pytest.raises(StoreError, match=r"no run store at .*without --resume"):
        RunStore.open_for_resume(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_empty_store_file_is_reported_not_silently_restarted(tmp_path):
    path = tmp_path / RunStore.FILENAME
    path.touch()
    with pytest.raises(StoreError) as err:
        RunStore.open_for_resume(path)
    msg = str(err.value)
    assert f"{path} exists but is empty (0 bytes)" in msg
    assert "without --resume" in msg and "delete it" in msg
    assert path.stat().st_size == 0  # not turned into a new store
    with pytest.raises(StoreError, match="empty"):  # nor by report / export
        RunStore.open_existing(tmp_path)


def test_a_store_holding_no_run_is_reported(tmp_path):
    RunStore.in_dir(tmp_path).close()  # created, then the process died before the run began
    with pytest.raises(StoreError, match=r"exists but holds no run .*without --resume"):
        RunStore.open_for_resume(tmp_path)


RANDOM = np.random.default_rng(0).bytes(8192)


#: 100 rows of 3 kB into meta: more than a one-page cache holds, so pages spill to the file
FILL_META = ("WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 99) "
             "INSERT INTO meta SELECT 'junk' || i, hex(zeroblob(1500)) FROM c")


def kill_mid_write(path, statements):
    """Run ``statements`` in one rollback-journal transaction in another process, and SIGKILL
    it before the commit, with pages already spilled to the file: a hot journal is left."""
    code = (
        "import os, signal, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('PRAGMA journal_mode=DELETE')\n"
        "db.execute('PRAGMA cache_size=1')\n"
        "db.execute('BEGIN')\n"
        f"for s in {statements!r}: db.execute(s)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)])
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}-journal").stat().st_size > 0  # the hot journal


def test_a_store_killed_mid_write_reads_as_its_last_commit(tmp_path):
    path = a_run(tmp_path)
    kill_mid_write(path, [FILL_META, "DELETE FROM trials"])
    # a read-only open cannot roll a hot journal back ("attempt to write a readonly
    # database"); the check lets SQLite restore the last committed state instead
    assert check_run_store(path, for_resume=False) == path
    with RunStore.open_existing(tmp_path) as st:
        assert st.count() == 1 and st.get_meta("identity") == {"space": "toy"}
        assert st.get_meta("junk0") is None


@pytest.mark.parametrize("header_committed", [False, True])
def test_a_store_killed_while_being_created_holds_no_run(tmp_path, header_committed):
    path = tmp_path / RunStore.FILENAME
    if header_committed:  # the file's first page written, no table yet
        with closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA user_version=1")
    kill_mid_write(path, ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                          FILL_META])
    head = path.read_bytes()[:16]
    assert (head == b"SQLite format 3\x00") == header_committed
    expected = "no tables: its run was cut short" if header_committed else "empty .0 bytes."
    with pytest.raises(UnstartedStoreError, match=expected):
        check_run_store(path, for_resume=False)
    assert not Path(f"{path}-journal").exists()
    with RunStore.in_dir(tmp_path) as st:  # a new run starts in it as in a new folder
        assert st.count() == 0 and st.get_meta("identity") is None


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 10, RANDOM],
                         ids=["text", "random bytes"])
def test_a_file_that_is_no_database_is_not_a_nastk_store(tmp_path, content):
    path = tmp_path / RunStore.FILENAME
    path.write_bytes(content)
    with pytest.raises(StoreError, match="is not a nastk store"):
        RunStore.open_for_resume(path)
    assert path.read_bytes() == content


def test_another_programs_database_is_not_a_nastk_store_and_is_left_alone(tmp_path):
    path = tmp_path / RunStore.FILENAME
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"is not a nastk store.*no trials table"):
        check_run_store(path)
    assert path.read_bytes() == before  # no nastk tables added to it


def test_an_unreadable_store_is_reported(tmp_path, monkeypatch):
    path = a_run(tmp_path)
    real_open = type(path).open

    def no_permission(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(type(path), "open", no_permission)
    with pytest.raises(StoreError, match=f"cannot read run store {path}: .*Permission denied"):
        check_run_store(path)


def test_a_folder_where_the_store_should_be_is_reported(tmp_path):
    (tmp_path / RunStore.FILENAME).mkdir()
    with pytest.raises(StoreError, match="is a folder, not a run store"):
        RunStore.open_for_resume(tmp_path)


# -- checkpoints --------------------------------------------------------------------------------
EXPECTED = "a file written by nastk"


def test_an_empty_checkpoint_says_it_is_empty(tmp_path):
    p = tmp_path / "supernet.pt"
    p.touch()
    with pytest.raises(NastkError) as err:
        load_file(p, "supernet checkpoint")
    msg = str(err.value)
    assert f"supernet checkpoint {p} is not a nastk checkpoint: the file is empty (0 bytes)" in msg
    assert EXPECTED in msg and "weights-only state dict" in msg and "supernet checkpoint" in msg


@pytest.mark.parametrize("content", [b"epochs: 3\nlr: 0.1\n", b"hello\n" * 40, RANDOM],
                         ids=["yaml", "text", "random bytes"])
def test_a_text_or_random_file_is_not_a_torch_file(tmp_path, content):
    p = tmp_path / "teacher.pt"
    p.write_bytes(content)
    with pytest.raises(NastkError) as err:
        load_file(p, "teacher checkpoint")
    msg = str(err.value)
    assert f"teacher checkpoint {p} is not a nastk checkpoint: not a file written by " \
           "torch.save" in msg
    assert EXPECTED in msg
    assert "weights_only=False" not in msg and not msg.rstrip().endswith(": 101")


class Custom:
    pass


def test_a_pickled_object_is_not_loadable_weights_only(tmp_path):
    p = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), p)  # a whole module, not a state dict
    with pytest.raises(NastkError) as err:
        read_weights(p, "init file")
    msg = str(err.value)
    assert f"init file {p} is not a nastk checkpoint: it cannot be loaded weights-only" in msg
    assert "Linear" in msg  # what it holds instead
    assert EXPECTED in msg and "weights_only=False" not in msg


def test_real_checkpoints_still_load(tmp_path):
    p = save_state({"w": torch.ones(2)}, tmp_path / "w.pt")
    assert torch.equal(read_weights(p)["w"], torch.ones(2))
    with pytest.raises(NastkError, match="not found; train one"):
        load_file(tmp_path / "missing.pt", "checkpoint", "; train one")


@pytest.mark.slow
def test_the_write_ahead_log_stays_within_a_small_multiple_of_the_store(tmp_path):
    """Strategy snapshots after every trial grew the WAL to ~5x the store (4.9 MB beside
    1 MB for this search); it is checkpointed and truncated past 2x the store + 64 kB."""
    import toy_plugin

    import nastk
    from nastk.run.sqlite_store import WAL_MULTIPLE, WAL_SLACK

    run_dir = tmp_path / "run"
    sizes = []

    def measure(trial, n_done, best):
        wal = run_dir / "store.sqlite-wal"
        sizes.append(((run_dir / "store.sqlite").stat().st_size,
                      wal.stat().st_size if wal.exists() else 0))

    with nastk.create_search(toy_plugin.ToyGrid(), toy_plugin.objective, objective="score",
                             strategy="rl", storage=run_dir, budget=60, seed=1) as search:
        search.optimize(on_trial=measure, progress=False)
    assert len(sizes) == 60
    assert max(wal for _, wal in sizes) > WAL_SLACK  # the log did grow and was cut back
    for store, wal in sizes:
        assert wal <= WAL_MULTIPLE * store + WAL_SLACK, (store, wal)
