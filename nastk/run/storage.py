"""The storage interface of a run: what the search loop and the readers of a run ask of a store.

:class:`Storage` holds the calls :class:`nastk.run.loop.Search` makes (and those of commands
that read a finished run), nothing else. Two back ends implement it:
:class:`nastk.run.sqlite_store.RunStore` (one SQLite file per run, durable, resumable after a
killed process) and :class:`nastk.run.memory_store.MemoryStorage` (dictionaries in this
process, for tabular benchmarks and tests, resumable inside the process).
``tests/test_storage_contract.py`` runs both through the same tests.

The contract every back end keeps:

* **Write order.** The loop writes a trial's ``running`` row together with the strategy's
  state just after it proposed that trial and the list of trials then in flight
  (:meth:`Storage.start_trial`, one atomic write); the result when it ends
  (:meth:`Storage.finish_trial`, before the strategy is told); then ``told`` and the
  strategy's new state together (:meth:`Storage.mark_told`, one atomic write). The saved state
  therefore always covers every trial in the store, which is what lets a new ``Search`` with a
  fresh strategy continue a run exactly: untold results are told to the restored state,
  ``running`` rows become ``interrupted`` (:meth:`Storage.mark_interrupted`) and those listed
  in flight are evaluated again first.
* **Atomic writes.** A write that raises leaves nothing of itself behind.
* **One result per architecture.** A second finished (complete or failed) row for one
  architecture raises :class:`DuplicateResultError`; :meth:`Storage.finish_trial` accepts only
  complete or failed results (``ValueError`` otherwise) and refuses an unknown trial id.
* **Read-back.** What is read is a copy: changing it never changes the store. Metadata and the
  metrics, costs and info of results go through JSON (a value JSON cannot hold is refused when
  written; tuples come back as lists, keys as strings); the strategy's state comes back equal
  to what was saved, tensors included, whatever the strategy did to its own objects since.
* **Order.** Trials are numbered from 1 in the order they were started and read back in that
  order.
* **Rungs.** Under a scheduler, every evaluation of a candidate up to a resource is a rung
  row (:meth:`Storage.record_rung`, one atomic write with the candidates that finished with it,
  the state and the list in flight); between rungs its trial is ``paused`` and a promotion
  sets it ``running`` again (:meth:`Storage.restart_trial`); rungs read back in the order
  recorded (:meth:`Storage.rungs`), at most one per candidate and rung.

A store may keep no strategy state (:attr:`Storage.keeps_strategy_state` false: a search that
will never resume, such as a tabular benchmark's, then skips ``strategy.state_dict()``
altogether); it ignores the ``state`` arguments and :meth:`Storage.load_strategy_state`
returns ``None``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nastk.core.errors import StoreError
from nastk.core.result import Result, Status
from nastk.core.trial import Trial
from nastk.space.architecture import Architecture

__all__ = ["FINISHED", "IN_FLIGHT_META", "DuplicateResultError", "RungRecord", "Storage",
           "decode_result", "encode_result"]

#: the trials whose proposal the saved strategy state covers but which are not finished (in
#: flight when it was saved); a resumed run evaluates them first
IN_FLIGHT_META = "in_flight"

#: the statuses of a finished trial, the only ones :meth:`Storage.finish_trial` records
FINISHED = (Status.COMPLETE, Status.FAILED)

_S = TypeVar("_S", bound="Storage")


class DuplicateResultError(StoreError):
    """A second finished row for one architecture: every architecture is evaluated once per run
    (a repeated proposal is answered from the store)."""


@dataclass(frozen=True)
class RungRecord:
    """One rung of a scheduled candidate: trial ``trial_id`` evaluated up to ``resource`` (rung
    index ``rung``), which cost ``cost`` (the resource spent on this rung alone), with
    ``result``; ``seq`` numbers rung rows in the order they were recorded."""

    seq: int
    trial_id: int
    rung: int
    resource: float
    cost: float
    result: Result
    recorded: float


class Storage(ABC):
    """A run's trials, metadata and the strategy's saved state (see the module docstring for
    the contract every back end keeps)."""

    #: whether the store keeps the strategy's state (a search resumes from it); when false, the
    #: loop never asks the strategy for its state and the store cannot resume a search
    keeps_strategy_state: bool = True

    # -- metadata -----------------------------------------------------------------------------
    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON data) under ``key``, replacing what was there."""

    @abstractmethod
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` (a fresh copy, as JSON reads it back), or
        ``default``."""

    # -- trials -------------------------------------------------------------------------------
    @abstractmethod
    def start_trial(self, arch: Architecture, state: dict[str, Any] | None = None,
                    in_flight: list[int] | None = None) -> int:
        """Add a ``running`` trial of ``arch`` and return its id.

        With ``state`` (the strategy's state just after it proposed ``arch``), that state and
        the list of trials in flight (``in_flight`` plus the new one, sorted, as meta
        :data:`IN_FLIGHT_META`) are saved in the same atomic write; without it neither is
        touched.
        """

    @abstractmethod
    def finish_trial(self, trial_id: int, result: Result) -> None:
        """Record the result of trial ``trial_id`` (complete or failed, else ``ValueError``);
        :class:`DuplicateResultError` when another trial of its architecture is finished, a
        :class:`StoreError` when there is no such trial."""

    @abstractmethod
    def mark_told(self, trial_ids: list[int], state: dict[str, Any] | None,
                  in_flight: list[int] | None = None) -> None:
        """Mark the finished trials ``trial_ids`` as told to the strategy and save its
        ``state`` (``None``: keep the saved one) and, when given, the sorted ``in_flight``
        list, in one atomic write; a :class:`StoreError` names ids the store does not hold."""

    def save_strategy_state(self, state: dict[str, Any]) -> None:
        """Save the strategy's state alone (after it was told a repeat's stored result)."""
        self.mark_told([], state)

    @abstractmethod
    def load_strategy_state(self) -> dict[str, Any] | None:
        """The strategy's last saved state, or ``None`` when none was saved."""

    @abstractmethod
    def mark_interrupted(self) -> int:
        """Turn the trials left ``running`` (by a search that died) into ``interrupted``;
        returns how many."""

    # -- rungs (a scheduler's candidates) -----------------------------------------------------
    @abstractmethod
    def record_rung(self, trial_id: int, rung: int, resource: float, cost: float,
                    result: Result, finished: Mapping[int, Result],
                    state: dict[str, Any] | None, in_flight: list[int] | None = None) -> None:
        """In one atomic write: the rung row of ``trial_id`` (complete or failed ``result``;
        a second row for one trial and rung raises :class:`StoreError`), the final results of
        the trials that ``finished`` with it (``finish_trial``'s rules; ``trial_id`` among them
        or else set ``paused``), the strategy's ``state`` (``None``: keep the saved one) and,
        when given, the sorted ``in_flight`` list."""

    @abstractmethod
    def restart_trial(self, trial_id: int, state: dict[str, Any] | None,
                      in_flight: list[int] | None = None) -> None:
        """Set a ``paused`` or ``interrupted`` trial ``running`` again (a promotion, or a job
        lost with a killed process handed out again), with the state and in-flight list as for
        :meth:`record_rung`; a :class:`StoreError` for any other trial."""

    @abstractmethod
    def rungs(self) -> list[RungRecord]:
        """Every rung row, in the order recorded."""

    # -- reading ------------------------------------------------------------------------------
    @abstractmethod
    def trials(self) -> list[Trial]:
        """Every trial, in the order they were started."""

    @abstractmethod
    def finished(self) -> list[Trial]:
        """The complete and failed trials, in the order they were started."""

    @abstractmethod
    def untold(self) -> list[Trial]:
        """The finished trials whose result the strategy has not (durably) been told."""

    @abstractmethod
    def lookup(self, arch: Architecture) -> Trial | None:
        """The finished trial of ``arch``, if any."""

    @abstractmethod
    def count(self, *statuses: Status) -> int:
        """The number of trials with one of ``statuses`` (all trials without any)."""

    # -- life ---------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release what the store holds (a connection, the run folder's lock)."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_result(result: Result) -> tuple[str, str, str | None, str, float]:
    """``(metrics, costs, error, info, duration_s)`` of ``result`` as a store keeps them: the
    dictionaries as JSON text (a ``TypeError`` for a value JSON cannot hold)."""
    return (json.dumps(result.metrics), json.dumps(result.costs), result.error,
            json.dumps(result.info), result.duration_s)


def decode_result(status: Status, metrics: str | None, costs: str | None, error: str | None,
                  info: str | None, duration_s: float | None) -> Result | None:
    """The result a trial's stored fields describe (:func:`encode_result`'s inverse), or
    ``None`` for a trial that is not finished."""
    if status not in FINISHED:
        return None
    return Result(status, json.loads(metrics or "{}"), json.loads(costs or "{}"), error,
                  float(duration_s or 0.0), json.loads(info or "{}"))
