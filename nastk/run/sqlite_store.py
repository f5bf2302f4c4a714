"""One SQLite file per run: one row per trial, the run's metadata, and the strategy's state.

Write order per trial: a ``running`` row when the candidate starts, together with the
strategy's state just after it proposed the candidate and the list of trials in flight (one
transaction); its result when it ends (committed *before* the strategy is told); then ``told``
and the strategy's new state in one transaction. A process killed at any point therefore loses
at most the evaluations in flight, and the saved state always covers every trial in the store:
on resume, finished-but-untold trials are told from their rows, ``running`` rows become
``interrupted`` and are evaluated again first (their proposal is in the state already), so the
run goes on exactly as if it had not stopped. A partial unique index makes a second finished
row for one architecture impossible.

:class:`RunStore` is the durable back end of :class:`nastk.run.storage.Storage`, whose
docstring states the contract it shares with the in-memory store.

A write that fails for want of disk space raises :class:`DiskFullError` (nothing of that write
is kept; the run resumes once space is freed); other disk errors raise
:class:`StoreWriteError`.
"""

from __future__ import annotations

import errno
import io
import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import torch

from nastk.core.errors import StoreError
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.core.weights import DiskFullError as _FileDiskFullError
from nastk.run.layout import STORE_FILE
from nastk.run.storage import (
    FINISHED,
    IN_FLIGHT_META,
    DuplicateResultError,
    RungRecord,
    Storage,
    decode_result,
    encode_result,
)
from nastk.space.architecture import Architecture

if TYPE_CHECKING:
    from nastk.run.lock import RunLock

SCHEMA_VERSION = "1"

# meta keys a search run describes itself with (written by nastk.run.lifecycle), so that
# report, compare and export read a run without rebuilding its plugins
#: the validated config (JSON data)
META_CONFIG = "config"
#: the resolved objective: ``{"metric", "direction", "costs"}``
META_OBJECTIVE = "objective"
#: space, task, strategy (with their options), evaluator kind, seed, nastk version
META_RUN = "run"
#: the strategy's learning curves at the end of the last session (``Strategy.curves()``)
META_CURVES = "strategy_curves"
#: ``arch key -> the space's render(arch)`` of every trial at the end of the last session
META_RENDERED = "rendered"
#: set when a session was stopped by a signal (``{"signal", "at", "finished"}``), None again
#: once a session runs
META_INTERRUPTED = "interrupted"

#: the write-ahead log is truncated once it is larger than this multiple of the store ...
WAL_MULTIPLE = 2
#: ... plus this many bytes
WAL_SLACK = 64 * 1024


class StoreWriteError(StoreError):
    """A write to the run store failed on the disk (an I/O error); nothing of it was kept."""


class DiskFullError(StoreWriteError, _FileDiskFullError):
    """A write to the run store found no space left on the device; nothing of it was kept.
    (Also a :class:`nastk.core.weights.DiskFullError`, so one ``except`` serves every file.)"""


#: the first bytes of every SQLite database file
_SQLITE_HEADER = b"SQLite format 3\x00"
_RESUME_HINT = "start the run again without --resume in a new run_dir, or delete it"


def _disk_error(err: BaseException, what: str, path: Path) -> StoreError | None:
    """The :class:`StoreError` a failed write ``err`` means, or ``None`` when it is not a disk
    error (then it is raised unchanged)."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    full = (name == "SQLITE_FULL" or "database or disk is full" in text
            or (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)))
    then = ("Nothing of it was written; the run's earlier trials and state are intact. "
            "{fix}, then `nastk search CONFIG --resume` continues the run.")
    if full:
        return DiskFullError(f"no space left on device: {what} failed in the run store {path} "
                             f"({text}). " + then.format(fix="Free space on that disk"))
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text or isinstance(err, OSError):
        return StoreWriteError(f"disk I/O error: {what} failed in the run store {path} "
                               f"({text}). " + then.format(
                                   fix="Check the disk (full, failing or unmounted?)"))
    return None


class UnstartedStoreError(StoreError):
    """The run store exists but holds no run: empty, or cut short while being created (no
    tables, or no identity and no trials). Starting the run anew in it loses nothing."""


def _roll_back_interrupted_write(p: Path) -> None:
    """Let SQLite roll back the write a killed process left half done in ``p`` (a hot rollback
    journal beside it, as a process killed while creating a store leaves), as any later
    read-write open would do; a read-only open cannot, and fails with "attempt to write a
    readonly database". Nothing is done without a journal; errors are left to the checks that
    follow."""
    journal = p.with_name(p.name + "-journal")
    if not journal.is_file() or journal.stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(p, timeout=30.0)) as db:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        pass


def _peek(p: Path) -> tuple[set[str], bool, int]:
    """The store's tables, whether it has an identity, and its number of trials (0 without a
    trials table), read-only."""
    uri = f"file:{quote(str(p.resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30.0)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        identity = ("meta" in tables and db.execute(
            "SELECT 1 FROM meta WHERE key='identity'").fetchone() is not None)
        n = (db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
             if "trials" in tables else 0)
    return tables, identity, n


def check_run_store(path: str | Path, for_resume: bool = True) -> Path:
    """Check that ``path`` (a run store, or the run folder holding one) is a nastk store that
    holds a run, without changing it; returns the store's path.

    Raises :class:`StoreError` saying what is wrong: missing, a folder, unreadable, empty
    (0 bytes), not an SQLite file or not a nastk store, or a nastk store that holds no run (no
    tables, or no identity and no trials: its run was cut short before it started; then a
    :class:`UnstartedStoreError`). An interrupted write is rolled back first (see
    :func:`_roll_back_interrupted_write`). ``for_resume`` words the advice for ``--resume``;
    otherwise for commands reading a finished run.
    """
    p = Path(path)
    if p.name != RunStore.FILENAME and p.is_dir():
        p = p / RunStore.FILENAME
    fix = (_RESUME_HINT if for_resume
           else f"is {p.parent} a run directory written by `nastk search`?")
    if not p.exists():
        if for_resume:
            raise StoreError(f"--resume: no run store at {p}; start the run without --resume "
                             "first")
        raise StoreError(f"no run store at {p}: {fix}")
    if p.is_dir():
        raise StoreError(f"{p} is a folder, not a run store; {fix}")
    _roll_back_interrupted_write(p)
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as err:
        raise StoreError(f"cannot read run store {p}: {err.strerror or err}") from err
    if size == 0:
        raise UnstartedStoreError(f"{p} exists but is empty (0 bytes): it holds no run (its run "
                                  f"was cut short before anything was written?); {fix}")
    if head != _SQLITE_HEADER:
        raise StoreError(f"{p} is not a nastk store (not an SQLite database); {fix}")
    try:
        tables, identity, n_trials = _peek(p)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"cannot read run store {p}: {err} (a damaged file, or not a nastk "
                         f"store); {fix}") from err
    if not tables:
        raise UnstartedStoreError(f"{p} holds no run (an SQLite file with no tables: its run "
                                  f"was cut short while creating it); {fix}")
    missing = [t for t in ("trials", "meta") if t not in tables]
    if missing:
        raise StoreError(
            f"{p} is not a nastk store: an SQLite database with no {missing[0]} table "
            f"(tables: {', '.join(sorted(tables))}); {fix}")
    if not identity and not n_trials:
        raise UnstartedStoreError(f"{p} exists but holds no run (no config, no trials: the run "
                                  f"never started); {fix}")
    return p


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    arch TEXT NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT,
    costs TEXT,
    error TEXT,
    info TEXT,
    duration_s REAL,
    started REAL NOT NULL,
    finished REAL,
    told INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trials_by_key ON trials(key);
CREATE UNIQUE INDEX IF NOT EXISTS one_finished_row_per_arch
    ON trials(key) WHERE status IN ('complete', 'failed');
CREATE TABLE IF NOT EXISTS rungs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    rung INTEGER NOT NULL,
    resource REAL NOT NULL,
    cost REAL NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT,
    costs TEXT,
    error TEXT,
    info TEXT,
    duration_s REAL,
    recorded REAL NOT NULL,
    UNIQUE (trial_id, rung)
);
CREATE TABLE IF NOT EXISTS strategy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL,
    n_told INTEGER NOT NULL,
    updated REAL NOT NULL
);
"""


def _dumps_state(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _loads_state(blob: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(blob), weights_only=True)


class RunStore(Storage):
    """The SQLite store of one run (``run_dir/store.sqlite``): the durable
    :class:`~nastk.run.storage.Storage`. It always keeps the strategy's state."""

    FILENAME = STORE_FILE

    def __init__(self, path: str | Path, *, lock: RunLock | None = None) -> None:
        """Open (or create) the store at ``path``. ``lock``, the run folder's lock
        (:func:`nastk.run.lock.lock_run_dir`), is released when the store is closed, or at
        once when it cannot be opened."""
        self.path = Path(path)
        self.lock = lock
        try:
            self._open()
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # one transaction: a process killed while creating the store leaves all of the
            # schema or none of it (statement by statement, a kill could leave only `meta`)
            self._db.executescript(f"BEGIN;\n{_SCHEMA}\nCOMMIT;")
        except sqlite3.DatabaseError as err:
            disk = _disk_error(err, "opening the store", self.path)
            if disk is not None:
                raise disk from err
            raise StoreError(f"cannot open run store {self.path}: {err}. Is it a nastk store? "
                             "Point the run at a new run_dir.") from err
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(f"run store {self.path} has schema version {version}, this nastk "
                             f"writes {SCHEMA_VERSION}; use a new run_dir")

    @classmethod
    def in_dir(cls, run_dir: str | Path) -> RunStore:
        return cls(Path(run_dir) / cls.FILENAME)

    @classmethod
    def open_existing(cls, run_dir: str | Path) -> RunStore:
        """The store of a run written before (for commands that read a run): a
        :class:`StoreError` when ``run_dir`` holds none, or an empty or foreign one."""
        return cls(check_run_store(Path(run_dir) / cls.FILENAME, for_resume=False))

    @classmethod
    def open_for_resume(cls, path: str | Path, *, lock: RunLock | None = None) -> RunStore:
        """The store of a run to continue (``path``: the store or its run folder); a
        :class:`StoreError` when it is missing, empty (0 bytes, or holding no run), unreadable
        or not a nastk store, instead of silently starting a new run in it. ``lock`` as for
        the constructor (released if the store is refused)."""
        try:
            checked = check_run_store(path, for_resume=True)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(checked, lock=lock)

    def close(self) -> None:
        self._db.close()
        if self.lock is not None:
            self.lock.release()

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``what`` it writes names it in errors): committed, or rolled
        back on any error, a disk error becoming a :class:`StoreWriteError`."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except (sqlite3.OperationalError, OSError) as err:
            disk = _disk_error(err, what, self.path)
            if disk is None:
                raise
            raise disk from err
        self._keep_wal_small()

    def _keep_wal_small(self) -> None:
        """Checkpoint the write-ahead log into the store and truncate it once it outgrows
        ``WAL_MULTIPLE`` times the store (plus ``WAL_SLACK``): SQLite's own checkpoints reuse
        the log without shrinking it, and strategy snapshots made it several times the store.
        Best effort: a checkpoint that cannot run now (a reader holds the log) runs later."""
        try:
            size = self._wal.stat().st_size
            if size > WAL_MULTIPLE * self.path.stat().st_size + WAL_SLACK:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except (OSError, sqlite3.Error):
            pass

    def _rollback(self) -> None:
        # SQLite may have rolled back already (it does on a full disk); never mask the error
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- metadata -----------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx(f"writing run metadata {key!r}") as db:
            self._write_meta(db, key, value)

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- trials -------------------------------------------------------------------------------
    def start_trial(self, arch: Architecture, state: dict[str, Any] | None = None,
                    in_flight: list[int] | None = None) -> int:
        """Insert a ``running`` row and return its id.

        With ``state`` (the strategy's state just after it proposed ``arch``), that state and
        the list of trials in flight (``in_flight`` plus the new one) are saved in the same
        transaction: the saved state then always covers the proposals of the trials listed,
        so a resumed run evaluates them first instead of asking the strategy again.
        """
        blob = None if state is None else _dumps_state(state)
        with self._tx(f"starting a trial of {arch.key}") as db:
            now = time.time()
            cur = db.execute("INSERT INTO trials(key, arch, status, started) VALUES (?, ?, ?, ?)",
                             (arch.key, arch.to_json(), Status.RUNNING.value, now))
            trial_id = int(cur.lastrowid)
            if blob is not None:
                self._write_state(db, blob, now)
                self._write_meta(db, IN_FLIGHT_META, sorted([*(in_flight or []), trial_id]))
            return trial_id

    def finish_trial(self, trial_id: int, result: Result) -> None:
        """Record a finished trial's result (complete or failed)."""
        if result.status not in FINISHED:
            raise ValueError(f"finish_trial needs a complete or failed result, got "
                             f"{result.status.value}")
        with self._tx(f"recording the result of trial {trial_id}") as db:
            self._finish(db, trial_id, result)

    def _finish(self, db: sqlite3.Connection, trial_id: int, result: Result) -> None:
        """Write ``result`` into trial ``trial_id``'s row (inside a transaction)."""
        if result.status not in FINISHED:
            raise ValueError(f"finish_trial needs a complete or failed result, got "
                             f"{result.status.value}")
        metrics, costs, error, info, duration_s = encode_result(result)
        try:
            cur = db.execute(
                "UPDATE trials SET status=?, metrics=?, costs=?, error=?, info=?, "
                "duration_s=?, finished=? WHERE id=?",
                (result.status.value, metrics, costs, error, info, duration_s, time.time(),
                 trial_id))
        except sqlite3.IntegrityError as err:  # the partial unique index
            other = db.execute(
                "SELECT t.id, t.key FROM trials t JOIN trials me ON t.key = me.key "
                "WHERE me.id=? AND t.id<>? AND t.status IN ('complete', 'failed')",
                (trial_id, trial_id)).fetchone()
            raise DuplicateResultError(
                f"architecture {other[1] if other else '?'} already has a result (trial "
                f"{other[0] if other else '?'}); trial {trial_id} cannot record a second "
                "one") from err
        if cur.rowcount == 0:
            raise self._no_such_trials([trial_id])

    # -- rungs --------------------------------------------------------------------------------
    def record_rung(self, trial_id: int, rung: int, resource: float, cost: float,
                    result: Result, finished: Mapping[int, Result],
                    state: dict[str, Any] | None, in_flight: list[int] | None = None) -> None:
        if result.status not in FINISHED:
            raise ValueError(f"record_rung needs a complete or failed result, got "
                             f"{result.status.value}")
        blob = None if state is None else _dumps_state(state)
        metrics, costs, error, info, duration_s = encode_result(result)
        with self._tx(f"recording rung {rung} of trial {trial_id}") as db:
            if db.execute("SELECT 1 FROM trials WHERE id=?", (trial_id,)).fetchone() is None:
                raise self._no_such_trials([trial_id])
            try:
                db.execute(
                    "INSERT INTO rungs(trial_id, rung, resource, cost, status, metrics, costs, "
                    "error, info, duration_s, recorded) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (trial_id, rung, float(resource), float(cost), result.status.value,
                     metrics, costs, error, info, duration_s, time.time()))
            except sqlite3.IntegrityError as err:
                raise StoreError(f"trial {trial_id} already has a result at rung {rung}") from err
            for tid, final in finished.items():
                self._finish(db, tid, final)
            if trial_id not in finished:
                db.execute("UPDATE trials SET status=? WHERE id=?",
                           (Status.PAUSED.value, trial_id))
            if blob is not None:
                self._write_state(db, blob, time.time())
            if in_flight is not None:
                self._write_meta(db, IN_FLIGHT_META, sorted(in_flight))

    def restart_trial(self, trial_id: int, state: dict[str, Any] | None,
                      in_flight: list[int] | None = None) -> None:
        blob = None if state is None else _dumps_state(state)
        with self._tx(f"restarting trial {trial_id}") as db:
            cur = db.execute("UPDATE trials SET status=? WHERE id=? AND status IN (?, ?)",
                             (Status.RUNNING.value, trial_id, Status.PAUSED.value,
                              Status.INTERRUPTED.value))
            if cur.rowcount == 0:
                row = db.execute("SELECT status FROM trials WHERE id=?", (trial_id,)).fetchone()
                if row is None:
                    raise self._no_such_trials([trial_id])
                raise StoreError(f"trial {trial_id} is {row[0]}: only a paused or interrupted "
                                 "trial can be restarted")
            if blob is not None:
                self._write_state(db, blob, time.time())
            if in_flight is not None:
                self._write_meta(db, IN_FLIGHT_META, sorted(in_flight))

    def rungs(self) -> list[RungRecord]:
        rows = self._db.execute(
            "SELECT seq, trial_id, rung, resource, cost, status, metrics, costs, error, info, "
            "duration_s, recorded FROM rungs ORDER BY seq").fetchall()
        out = []
        for seq, tid, rung, res, cost, status, metrics, costs, error, info, dur, rec in rows:
            result = decode_result(Status(status), metrics, costs, error, info, dur)
            assert result is not None
            out.append(RungRecord(int(seq), int(tid), int(rung), float(res), float(cost),
                                  result, float(rec)))
        return out

    def _no_such_trials(self, trial_ids: list[int]) -> StoreError:
        """The error for trial ids the store does not hold (``trial_ids`` may list others)."""
        known = {r[0] for r in self._db.execute(
            f"SELECT id FROM trials WHERE id IN ({','.join('?' * len(trial_ids))})",
            trial_ids)}
        missing = sorted(set(trial_ids) - known)
        n = self.count()
        return StoreError(f"the store holds no trial {', '.join(map(str, missing))} (it holds "
                          f"{n}, numbered from 1)")

    def mark_told(self, trial_ids: list[int], state: dict[str, Any] | None,
                  in_flight: list[int] | None = None) -> None:
        """Mark trials as told and save the strategy's state (``None``: keep the saved one)
        and, when given, the list of trials still in flight, atomically."""
        blob = None if state is None else _dumps_state(state)
        what = ("saving the strategy's state" if not trial_ids else
                f"marking trial {', '.join(map(str, trial_ids))} told and saving the strategy's "
                "state")
        with self._tx(what) as db:
            cur = db.executemany("UPDATE trials SET told=1 WHERE id=?",
                                 [(i,) for i in trial_ids])
            if trial_ids and cur.rowcount != len(trial_ids):
                raise self._no_such_trials(trial_ids)
            if blob is not None:
                self._write_state(db, blob, time.time())
            if in_flight is not None:
                self._write_meta(db, IN_FLIGHT_META, sorted(in_flight))

    @staticmethod
    def _write_state(db: sqlite3.Connection, blob: bytes, now: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO strategy_state(id, state, n_told, updated) "
            "VALUES (1, ?, (SELECT COUNT(*) FROM trials WHERE told=1), ?)", (blob, now))

    @staticmethod
    def _write_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   (key, json.dumps(value)))

    def load_strategy_state(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM strategy_state WHERE id=1").fetchone()
        return None if row is None else _loads_state(row[0])

    def mark_interrupted(self) -> int:
        """Turn rows left ``running`` by a dead process into ``interrupted``; returns how many."""
        with self._tx("marking the trials left running as interrupted") as db:
            cur = db.execute("UPDATE trials SET status=? WHERE status=?",
                             (Status.INTERRUPTED.value, Status.RUNNING.value))
            return cur.rowcount

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[Trial]:
        rows = self._db.execute(
            "SELECT id, arch, status, metrics, costs, error, info, duration_s, started, finished "
            f"FROM trials {where} ORDER BY id", args).fetchall()
        out = []
        for (tid, arch, status, metrics, costs, error, info, dur, started, finished) in rows:
            st = Status(status)
            result = decode_result(st, metrics, costs, error, info, dur)
            out.append(Trial(tid, Architecture.from_json(arch), st, result, started, finished))
        return out

    def trials(self) -> list[Trial]:
        """Every trial, in evaluation order."""
        return self._rows()

    def finished(self) -> list[Trial]:
        """Complete and failed trials, in evaluation order."""
        return self._rows("WHERE status IN ('complete', 'failed')")

    def untold(self) -> list[Trial]:
        """Finished trials whose result the strategy has not (durably) been told."""
        return self._rows("WHERE status IN ('complete', 'failed') AND told=0")

    def lookup(self, arch: Architecture) -> Trial | None:
        """The finished trial of ``arch``, if any."""
        rows = self._rows("WHERE key=? AND status IN ('complete', 'failed')", (arch.key,))
        return rows[0] if rows else None

    def count(self, *statuses: Status) -> int:
        if not statuses:
            return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        marks = ",".join("?" * len(statuses))
        return int(self._db.execute(f"SELECT COUNT(*) FROM trials WHERE status IN ({marks})",
                                    tuple(s.value for s in statuses)).fetchone()[0])
