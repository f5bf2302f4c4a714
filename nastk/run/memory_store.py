"""A run's store in this process's memory: the :class:`~nastk.run.storage.Storage` contract
without a file.

For searches that need no record on disk: tabular benchmarks replaying a table over many seeds
(:func:`nastk.run.tabular.run_tabular`), tests, and runs driven from Python. It keeps what the
SQLite store keeps, the same way: metadata and the metrics, costs and info of results as JSON
text (a value SQLite's store would refuse is refused here too, and reads return fresh
copies), and the strategy's state as a :class:`~nastk.run.state_snapshot.StateSnapshot` that
later changes to the strategy cannot reach. A new ``Search`` with a fresh strategy over the
same object therefore resumes an abandoned one exactly, as a resumed SQLite run does.

With ``keep_strategy_state=False`` it keeps no state at all (:attr:`keeps_strategy_state`):
the search loop then never calls ``strategy.state_dict()``, which costs the Bayesian and RL
strategies real time on every trial, and the search cannot be resumed.

Every write checks and encodes everything first and changes the store last, so a write that
raises leaves nothing behind. It serves one process and one thread: there is no second writer
to lock out, since no other process can reach the object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nastk.core.errors import StoreError
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.run.state_snapshot import StateSnapshot
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

__all__ = ["MemoryStorage"]


@dataclass
class _Row:
    """One trial as kept: the architecture, its status and the encoded result fields."""

    arch: Architecture
    status: Status
    started: float
    metrics: str | None = None
    costs: str | None = None
    error: str | None = None
    info: str | None = None
    duration_s: float | None = None
    finished: float | None = None
    told: bool = False

    def trial(self, trial_id: int) -> Trial:
        result = decode_result(self.status, self.metrics, self.costs, self.error, self.info,
                               self.duration_s)
        return Trial(trial_id, self.arch, self.status, result, self.started, self.finished)


class MemoryStorage(Storage):
    """Trials, metadata and the strategy's state in dictionaries of this process."""

    def __init__(self, *, keep_strategy_state: bool = True) -> None:
        """An empty store; ``keep_strategy_state=False`` for a search that will never resume
        (see the module docstring)."""
        self.keeps_strategy_state = keep_strategy_state
        self._meta: dict[str, str] = {}
        self._rows: dict[int, _Row] = {}  # by trial id, in insertion (= id) order
        self._finished_by_key: dict[str, int] = {}
        self._state: StateSnapshot | None = None
        self._rungs: list[tuple[int, int, float, float, Status, tuple[Any, ...], float]] = []

    def __repr__(self) -> str:
        return (f"MemoryStorage({len(self._rows)} trials, "
                f"keep_strategy_state={self.keeps_strategy_state})")

    # -- metadata -----------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = json.dumps(value)

    def get_meta(self, key: str, default: Any = None) -> Any:
        text = self._meta.get(key)
        return default if text is None else json.loads(text)

    # -- trials -------------------------------------------------------------------------------
    def _snapshot(self, state: dict[str, Any] | None) -> StateSnapshot | None:
        return None if state is None or not self.keeps_strategy_state else StateSnapshot.take(
            state)

    def start_trial(self, arch: Architecture, state: dict[str, Any] | None = None,
                    in_flight: list[int] | None = None) -> int:
        snapshot = self._snapshot(state)
        trial_id = len(self._rows) + 1
        in_flight_text = (None if state is None
                          else json.dumps(sorted([*(in_flight or []), trial_id])))
        self._rows[trial_id] = _Row(arch, Status.RUNNING, time.time())
        if snapshot is not None:
            self._state = snapshot
        if in_flight_text is not None:
            self._meta[IN_FLIGHT_META] = in_flight_text
        return trial_id

    def finish_trial(self, trial_id: int, result: Result) -> None:
        self._apply_finish(trial_id, self._check_finish(trial_id, result))

    def _check_finish(self, trial_id: int, result: Result) -> tuple[Any, ...]:
        """``result`` of ``trial_id`` checked and encoded (nothing changed yet)."""
        if result.status not in FINISHED:
            raise ValueError(f"finish_trial needs a complete or failed result, got "
                             f"{result.status.value}")
        row = self._row(trial_id)
        other = self._finished_by_key.get(row.arch.key)
        if other is not None and other != trial_id:
            raise DuplicateResultError(
                f"architecture {row.arch.key} already has a result (trial {other}); trial "
                f"{trial_id} cannot record a second one")
        return (result.status, *encode_result(result))

    def _apply_finish(self, trial_id: int, encoded: tuple[Any, ...]) -> None:
        row = self._rows[trial_id]
        row.status, row.metrics, row.costs, row.error, row.info, row.duration_s = encoded
        row.finished = time.time()
        self._finished_by_key[row.arch.key] = trial_id

    # -- rungs --------------------------------------------------------------------------------
    def record_rung(self, trial_id: int, rung: int, resource: float, cost: float,
                    result: Result, finished: Mapping[int, Result],
                    state: dict[str, Any] | None, in_flight: list[int] | None = None) -> None:
        if result.status not in FINISHED:
            raise ValueError(f"record_rung needs a complete or failed result, got "
                             f"{result.status.value}")
        self._row(trial_id)
        if any(r[0] == trial_id and r[1] == rung for r in self._rungs):
            raise StoreError(f"trial {trial_id} already has a result at rung {rung}")
        encoded = encode_result(result)
        finals = {tid: self._check_finish(tid, final) for tid, final in finished.items()}
        keys = [self._rows[tid].arch.key for tid in finals]
        if len(set(keys)) != len(keys):
            raise DuplicateResultError("two trials of one architecture finish together")
        snapshot = self._snapshot(state)
        in_flight_text = None if in_flight is None else json.dumps(sorted(in_flight))
        self._rungs.append((trial_id, rung, float(resource), float(cost), result.status,
                            encoded, time.time()))
        for tid, enc in finals.items():
            self._apply_finish(tid, enc)
        if trial_id not in finals:
            self._rows[trial_id].status = Status.PAUSED
        if snapshot is not None:
            self._state = snapshot
        if in_flight_text is not None:
            self._meta[IN_FLIGHT_META] = in_flight_text

    def restart_trial(self, trial_id: int, state: dict[str, Any] | None,
                      in_flight: list[int] | None = None) -> None:
        row = self._row(trial_id)
        if row.status not in (Status.PAUSED, Status.INTERRUPTED):
            raise StoreError(f"trial {trial_id} is {row.status.value}: only a paused or "
                             "interrupted trial can be restarted")
        snapshot = self._snapshot(state)
        in_flight_text = None if in_flight is None else json.dumps(sorted(in_flight))
        row.status = Status.RUNNING
        if snapshot is not None:
            self._state = snapshot
        if in_flight_text is not None:
            self._meta[IN_FLIGHT_META] = in_flight_text

    def rungs(self) -> list[RungRecord]:
        out = []
        for seq, (tid, rung, res, cost, status, enc, rec) in enumerate(self._rungs, start=1):
            result = decode_result(status, enc[0], enc[1], enc[2], enc[3], enc[4])
            assert result is not None
            out.append(RungRecord(seq, tid, rung, res, cost, result, rec))
        return out

    def mark_told(self, trial_ids: list[int], state: dict[str, Any] | None,
                  in_flight: list[int] | None = None) -> None:
        rows = [self._row(i) for i in trial_ids]
        snapshot = self._snapshot(state)
        in_flight_text = None if in_flight is None else json.dumps(sorted(in_flight))
        for row in rows:
            row.told = True
        if snapshot is not None:
            self._state = snapshot
        if in_flight_text is not None:
            self._meta[IN_FLIGHT_META] = in_flight_text

    def load_strategy_state(self) -> dict[str, Any] | None:
        return None if self._state is None else self._state.restore()

    def mark_interrupted(self) -> int:
        running = [row for row in self._rows.values() if row.status is Status.RUNNING]
        for row in running:
            row.status = Status.INTERRUPTED
        return len(running)

    def _row(self, trial_id: int) -> _Row:
        row = self._rows.get(trial_id)
        if row is None:
            raise StoreError(f"the store holds no trial {trial_id} (it holds "
                             f"{len(self._rows)}, numbered from 1)")
        return row

    # -- reading ------------------------------------------------------------------------------
    def trials(self) -> list[Trial]:
        return [row.trial(i) for i, row in self._rows.items()]

    def finished(self) -> list[Trial]:
        return [row.trial(i) for i, row in self._rows.items() if row.status in FINISHED]

    def untold(self) -> list[Trial]:
        return [row.trial(i) for i, row in self._rows.items()
                if row.status in FINISHED and not row.told]

    def lookup(self, arch: Architecture) -> Trial | None:
        trial_id = self._finished_by_key.get(arch.key)
        return None if trial_id is None else self._rows[trial_id].trial(trial_id)

    def count(self, *statuses: Status) -> int:
        if not statuses:
            return len(self._rows)
        return sum(row.status in statuses for row in self._rows.values())

    # -- life ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release (no file, no lock): the store stays readable and writable, so a
        new search may go on over it."""
