"""One SQLite file per run: one row per trial, the run's metadata, and the strategy's state.

Write order per trial: a ``running`` row when the candidate starts, its result when it ends
(committed *before* the strategy is told), then ``told`` and the strategy's new state in one
transaction. A process killed at any point therefore loses at most the trials in flight: on
resume, finished-but-untold trials are told again from their rows and ``running`` rows become
``interrupted``. A partial unique index makes a second finished row for one architecture
impossible.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from nastk.errors import StoreError
from nastk.evaluation.result import Result, Status
from nastk.space.architecture import Architecture
from nastk.trial import Trial

SCHEMA_VERSION = "1"

# meta keys a search run describes itself with (written by nastk.commands.search), so that
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


class RunStore:
    """The SQLite store of one run (``run_dir/store.sqlite``)."""

    FILENAME = "store.sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
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
        path = Path(run_dir) / cls.FILENAME
        if not path.is_file():
            raise StoreError(f"no run store at {path}: is {run_dir} a run directory written by "
                             "`nastk search`?")
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- metadata -----------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                       (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- trials -------------------------------------------------------------------------------
    def start_trial(self, arch: Architecture) -> int:
        """Insert a ``running`` row and return its id."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO trials(key, arch, status, started) VALUES (?, ?, ?, ?)",
                             (arch.key, arch.to_json(), Status.RUNNING.value, time.time()))
            return int(cur.lastrowid)

    def finish_trial(self, trial_id: int, result: Result) -> None:
        """Record a finished trial's result (complete or failed)."""
        if result.status not in (Status.COMPLETE, Status.FAILED):
            raise ValueError(f"finish_trial needs a complete or failed result, got "
                             f"{result.status.value}")
        with self._tx() as db:
            db.execute(
                "UPDATE trials SET status=?, metrics=?, costs=?, error=?, info=?, duration_s=?, "
                "finished=? WHERE id=?",
                (result.status.value, json.dumps(result.metrics), json.dumps(result.costs),
                 result.error, json.dumps(result.info), result.duration_s, time.time(), trial_id))

    def mark_told(self, trial_ids: list[int], state: dict[str, Any]) -> None:
        """Mark trials as told and save the strategy's state, atomically."""
        blob = _dumps_state(state)
        with self._tx() as db:
            db.executemany("UPDATE trials SET told=1 WHERE id=?", [(i,) for i in trial_ids])
            db.execute(
                "INSERT OR REPLACE INTO strategy_state(id, state, n_told, updated) "
                "VALUES (1, ?, (SELECT COUNT(*) FROM trials WHERE told=1), ?)",
                (blob, time.time()))

    def save_strategy_state(self, state: dict[str, Any]) -> None:
        self.mark_told([], state)

    def load_strategy_state(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT state FROM strategy_state WHERE id=1").fetchone()
        return None if row is None else _loads_state(row[0])

    def mark_interrupted(self) -> int:
        """Turn rows left ``running`` by a dead process into ``interrupted``; returns how many."""
        with self._tx() as db:
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
            result = None
            if st in (Status.COMPLETE, Status.FAILED):
                result = Result(st, json.loads(metrics or "{}"), json.loads(costs or "{}"), error,
                                float(dur or 0.0), json.loads(info or "{}"))
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
