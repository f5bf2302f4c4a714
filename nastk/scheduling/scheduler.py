"""Successive halving, ASHA and Hyperband: one scheduler over brackets of rungs.

A *rung* is a resource level (epochs, steps, a table's fidelity): ``rungs[0] < ... <
rungs[-1]``, the last one the evaluator's full budget. A *bracket* starts its candidates at one
rung and promotes the best ``1 / reduction_factor`` of each rung to the next. Three schedulers
share this machinery:

* ``sh`` (synchronous successive halving): brackets of ``initial`` candidates started at the
  first rung, one after another; a rung decides once every candidate of the bracket has reported
  there: the best ``floor(m / eta)`` (at least one) go on, the others stop.
* ``asha`` (asynchronous successive halving, as Ray Tune's ASHA decides): one bracket without
  waiting; a candidate that reports at a rung goes on at once if it ranks in the top
  ``floor(m / eta)`` (at least one) of the ``m`` results recorded at that rung so far,
  itself included, else it stops. No candidate ever waits for another.
* ``hyperband``: Li et al.'s brackets ``s = K .. 0`` (``K + 1`` rungs), bracket ``s`` starting
  ``ceil((K + 1) / (s + 1) * eta ** s)`` candidates at rung ``K - s``; ``brackets: sync`` runs
  each as synchronous successive halving, cycling through them; ``brackets: async`` runs them as
  ASHA brackets at once, a new candidate going to the bracket furthest below its share.

Promotion order is :func:`nastk.scheduling.ranking.promotion_order`'s: the score, or with costs
in the objective, non-dominated rank and crowding distance. A failed candidate stops.

The scheduler decides only; the search loop (:class:`nastk.run.loop.Search`) asks it for the
next job, starts candidates, records every rung in the run store and tells the strategy. Its
state is plain data saved with the strategy's state in the same transactions, so a run killed
at any moment resumes to the same promotions: jobs handed out and not recorded when the state
was saved are handed out again first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.scheduling.ranking import promotion_order

__all__ = ["Job", "Scheduler", "SchedulerKind", "hyperband_brackets"]

SchedulerKind = Literal["sh", "asha", "hyperband"]

#: why a candidate finished: it reached the last rung, a rung did not promote it, it failed, or
#: the run ended while it waited
FinishReason = Literal["completed", "stopped", "failed", "budget"]


@dataclass(frozen=True)
class Job:
    """One evaluation to run: candidate ``trial_id`` (``None``: a new candidate, to be
    proposed by the strategy) trained from ``previous`` up to ``resource`` (rung ``rung``) in
    bracket run ``run``."""

    trial_id: int | None
    rung: int
    resource: float
    previous: float
    run: int

    @property
    def cost(self) -> float:
        """The resource this job spends: a promoted candidate pays only the difference."""
        return self.resource - self.previous


def hyperband_brackets(n_rungs: int, eta: float) -> list[tuple[int, int]]:
    """Hyperband's brackets as ``(start rung, candidates)``, most exploratory first: bracket
    ``s = K .. 0`` starts ``ceil((K + 1) / (s + 1) * eta ** s)`` candidates at rung ``K - s``."""
    k = n_rungs - 1
    return [(k - s, math.ceil((k + 1) / (s + 1) * eta ** s - 1e-9)) for s in range(k, -1, -1)]


class Scheduler:
    """Decides how far each candidate trains and which continue (see the module docstring).

    ``rungs``: the resource levels, ascending; ``objective``: what ranks a rung (its
    :meth:`~nastk.core.objective.Objective.vector`); ``initial``: candidates per bracket of
    ``sh`` (default ``eta ** K`` rounded up, so one candidate reaches the last rung).
    """

    def __init__(self, kind: SchedulerKind, rungs: Sequence[float], objective: Objective, *,
                 reduction_factor: float = 3.0, brackets: Literal["sync", "async"] = "sync",
                 initial: int | None = None) -> None:
        rs = [float(r) for r in rungs]
        if not rs or any(b <= a for a, b in pairwise(rs)) or rs[0] <= 0:
            raise ValueError(f"rungs must be positive and ascending, got {list(rungs)}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be above 1, got {reduction_factor}")
        self.kind = kind
        self.rungs = rs
        self.objective = objective
        self.eta = float(reduction_factor)
        k = len(rs) - 1
        if kind == "hyperband":
            self.brackets = hyperband_brackets(len(rs), self.eta)
            self.asynchronous = brackets == "async"
        else:
            n = initial if initial is not None else math.ceil(self.eta ** k - 1e-9)
            self.brackets = [(0, max(1, int(n)))]
            self.asynchronous = kind == "asha"
        # -- state ----------------------------------------------------------------------------
        #: trial id -> {"run", "rung" (last recorded, -1 none), "status"}
        self.trials: dict[int, dict[str, Any]] = {}
        #: bracket runs: {"bracket", "start", "n", "started", "closed", "members": {rung: [id]},
        #: "records": {rung: [[id, vector or None]]}}
        self.runs: list[dict[str, Any]] = []
        self.queue: list[list[int]] = []  # [trial id, rung] promotions to hand out, in order
        self.issued: list[list[int]] = []  # [trial id, rung] handed out, not yet recorded
        self.cycle = 0  # brackets opened so far (sync)

    # -- jobs ---------------------------------------------------------------------------------
    def next_job(self, can_start_new: bool = True) -> Job | None:
        """The next job: a promotion first, else (when ``can_start_new``) a new candidate;
        ``None`` when nothing can start now (results in flight are awaited, or all is done).
        A promotion is marked handed out; a new candidate only once :meth:`started`. Once no
        new candidate can start, call :meth:`close` first (its rungs decide without them)."""
        if self.queue:
            tid, rung = self.queue.pop(0)
            self.issued.append([tid, rung])
            t = self.trials[tid]
            t["status"] = "running"
            prev = self.rungs[t["rung"]] if t["rung"] >= 0 else 0.0
            return Job(tid, rung, self.rungs[rung], prev, t["run"])
        if not can_start_new:
            return None
        run = self._run_for_new()
        start = self.runs[run]["start"]
        return Job(None, start, self.rungs[start], 0.0, run)

    def _run_for_new(self) -> int:
        """The bracket run a new candidate joins (opening one when needed)."""
        if self.asynchronous:
            if not self.runs:
                for b, (start, n) in enumerate(self.brackets):
                    self.runs.append(self._new_run(b, start, n))
            # the bracket furthest below its share of the candidates started so far
            total = sum(n for _, n in self.brackets)
            return min(range(len(self.runs)), key=lambda i: (
                self.runs[i]["started"] / (self.brackets[i][1] / total), i))
        if self.runs:
            last = self.runs[-1]
            if not last["closed"] and last["started"] < last["n"]:
                return len(self.runs) - 1
        b = self.cycle % len(self.brackets)
        self.cycle += 1
        start, n = self.brackets[b]
        self.runs.append(self._new_run(b, start, n))
        return len(self.runs) - 1

    @staticmethod
    def _new_run(bracket: int, start: int, n: int) -> dict[str, Any]:
        return {"bracket": bracket, "start": start, "n": n, "started": 0, "closed": False,
                "members": {start: []}, "records": {}}

    def started(self, trial_id: int, job: Job) -> None:
        """A new candidate of ``job`` was given the trial id ``trial_id``."""
        run = self.runs[job.run]
        run["started"] += 1
        run["members"].setdefault(job.rung, []).append(trial_id)
        self.trials[trial_id] = {"run": job.run, "rung": -1, "status": "running"}
        self.issued.append([trial_id, job.rung])

    # -- results ------------------------------------------------------------------------------
    def reported(self, trial_id: int, rung: int, result: Result
                 ) -> list[tuple[int, FinishReason]]:
        """Take candidate ``trial_id``'s result at ``rung``; returns the candidates that
        finished with it (this one, and in a synchronous bracket the rung's others that were
        not promoted), with why."""
        if [trial_id, rung] in self.issued:
            self.issued.remove([trial_id, rung])
        t = self.trials[trial_id]
        t["rung"] = rung
        run = self.runs[t["run"]]
        vec = self.objective.vector(result)
        run["records"].setdefault(rung, []).append(
            [trial_id, None if vec is None else [float(v) for v in vec]])
        if vec is None:
            t["status"] = "done"
            out: list[tuple[int, FinishReason]] = [(trial_id, "failed")]
            if not self.asynchronous:
                out += self._decide(t["run"], rung)
            return out
        if rung == len(self.rungs) - 1:
            t["status"] = "done"
            out = [(trial_id, "completed")]
            if not self.asynchronous:
                out += self._decide(t["run"], rung)
            return out
        if self.asynchronous:
            records = run["records"][rung]
            keep = max(1, math.floor(len(records) / self.eta + 1e-9))
            if trial_id in promotion_order(records)[:keep]:
                self._promote(t["run"], trial_id, rung + 1)
                return []
            t["status"] = "done"
            return [(trial_id, "stopped")]
        t["status"] = "paused"
        return self._decide(t["run"], rung)

    def _expected(self, run: dict[str, Any], rung: int) -> int:
        if rung == run["start"]:
            return run["started"] if run["closed"] else run["n"]
        return len(run["members"].get(rung, []))

    def _decide(self, r: int, rung: int) -> list[tuple[int, FinishReason]]:
        """A synchronous bracket's rung, once all its candidates reported: promote the best
        ``floor(m / eta)`` (at least one), stop the rest."""
        run = self.runs[r]
        records = run["records"].get(rung, [])
        if (len(records) < self._expected(run, rung) or rung == len(self.rungs) - 1
                or run.get("decided", {}).get(str(rung))):
            return []
        run.setdefault("decided", {})[str(rung)] = True
        keep = max(1, math.floor(len(records) / self.eta + 1e-9))
        promoted = promotion_order(records)[:keep]
        out: list[tuple[int, FinishReason]] = []
        for tid, _ in records:
            if tid in promoted:
                self._promote(r, tid, rung + 1)
            elif self.trials[tid]["status"] == "paused":
                self.trials[tid]["status"] = "done"
                out.append((tid, "stopped"))
        return out

    def _promote(self, r: int, trial_id: int, rung: int) -> None:
        self.runs[r]["members"].setdefault(rung, []).append(trial_id)
        self.trials[trial_id]["status"] = "queued"
        self.queue.append([trial_id, rung])

    def open_runs(self) -> bool:
        """Whether a bracket run may still take new candidates (:meth:`close` has work)."""
        return any(not run["closed"] for run in self.runs)

    def close(self) -> list[tuple[int, FinishReason]]:
        """No new candidates will start: every open bracket's first rung decides with the
        candidates it has (a rung of a truncated bracket waits for no one). Returns the
        candidates that finished (not promoted)."""
        out: list[tuple[int, FinishReason]] = []
        for r, run in enumerate(self.runs):
            if run["closed"]:
                continue
            run["closed"] = True
            if not self.asynchronous:
                for rung in sorted(run["records"]):
                    out += self._decide(r, rung)
        return out

    def waiting(self) -> list[int]:
        """Candidates not finished and not running: paused at a rung or queued for the next
        (what :meth:`finish_all` ends)."""
        return [tid for tid, t in self.trials.items() if t["status"] in ("paused", "queued")]

    def finish_all(self) -> list[int]:
        """End every waiting candidate (the run is over); returns their ids."""
        ids = self.waiting()
        for tid in ids:
            self.trials[tid]["status"] = "done"
        self.queue = [q for q in self.queue if q[0] not in ids]
        return ids

    def requeue_issued(self) -> None:
        """After a restore: the jobs handed out but not recorded (lost with the process) are
        handed out again first, in their order."""
        self.queue = [*self.issued, *[q for q in self.queue if q not in self.issued]]
        self.issued = []

    def rung_of(self, trial_id: int) -> int:
        """The last rung ``trial_id`` recorded (-1: none)."""
        return int(self.trials[trial_id]["rung"])

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data: saves with ``torch.save`` and loads weights-only."""
        return {"trials": {int(k): dict(v) for k, v in self.trials.items()},
                "runs": [_plain(r) for r in self.runs],
                "queue": [list(q) for q in self.queue],
                "issued": [list(q) for q in self.issued], "cycle": self.cycle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trials = {int(k): dict(v) for k, v in state["trials"].items()}
        self.runs = [_plain(r) for r in state["runs"]]
        for run in self.runs:
            run["members"] = {int(k): list(v) for k, v in run["members"].items()}
            run["records"] = {int(k): [list(e) for e in v] for k, v in run["records"].items()}
        self.queue = [list(q) for q in state["queue"]]
        self.issued = [list(q) for q in state["issued"]]
        self.cycle = int(state["cycle"])

    def describe(self) -> str:
        """One line: the kind, the rungs and the brackets."""
        rungs = ", ".join(f"{r:g}" for r in self.rungs)
        if self.kind == "hyperband":
            b = "; ".join(f"{n} from {self.rungs[s]:g}" for s, n in self.brackets)
            return (f"hyperband ({'async' if self.asynchronous else 'sync'} brackets: {b}), "
                    f"rungs {rungs}, eta {self.eta:g}")
        extra = f", {self.brackets[0][1]} per bracket" if self.kind == "sh" else ""
        return f"{self.kind}: rungs {rungs}, eta {self.eta:g}{extra}"


def _plain(run: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a bracket run as plain data."""
    out = dict(run)
    out["members"] = {int(k): list(v) for k, v in run["members"].items()}
    out["records"] = {int(k): [[e[0], None if e[1] is None else list(e[1])] for e in v]
                      for k, v in run["records"].items()}
    if "decided" in run:
        out["decided"] = dict(run["decided"])
    return out
