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
        if result.status not in FINISHED:
            raise ValueError(f"finish_trial needs a complete or failed result, got "
                             f"{result.status.value}")
        row = self._row(trial_id)
        other = self._finished_by_key.get(row.arch.key)
        if other is not None and other != trial_id:
            raise DuplicateResultError(
                f"architecture {row.arch.key} already has a result (trial {other}); trial "
                f"{trial_id} cannot record a second one")
        metrics, costs, error, info, duration_s = encode_result(result)
        row.status, row.metrics, row.costs, row.error = result.status, metrics, costs, error
        row.info, row.duration_s, row.finished = info, duration_s, time.time()
        self._finished_by_key[row.arch.key] = trial_id

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
