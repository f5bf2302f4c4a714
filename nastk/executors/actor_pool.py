"""Cheap candidates on a pool of Ray actors.

Each actor builds the evaluator once (for a weight-sharing search that means loading the
supernet checkpoint once) and then evaluates batches of architectures sent to it, so a candidate
costs one actor call (about a millisecond) on top of its evaluation, against about a second
and a half to start a Ray Tune trial.

A worker process that dies mid-batch (killed, out of memory, a segfault in an extension) is
replaced by a fresh actor. The candidates of the lost call are run again, one per call, so the
culprit is isolated: a candidate whose worker died while it ran alone is retried up to
``max_retries`` times and then recorded as failed with the error. (A death in a call of several
candidates is not counted against any of them, since the pool cannot tell which one it was.)
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from nastk.core.errors import RunStoppingError
from nastk.core.result import Result
from nastk.core.weights import write_atomic
from nastk.executors.ray_cluster import (
    ExecutorError,
    death_message,
    describe_worker_death,
    summarize_error,
)
from nastk.executors.shipping import WORKER_NEEDS
from nastk.executors.worker import (
    WorkerContext,
    WorkerSpec,
    evaluate_candidate,
    evaluate_rung,
    keep_rung_state,
    rung_payload,
    with_info,
)
from nastk.run.loop import Candidate, Search


class CandidateActor:
    """A Ray actor (one worker process) holding one evaluator for many candidates."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.context = WorkerContext.get(spec)

    def pid(self) -> int:
        """The worker process id (tests and benchmarks use it)."""
        return os.getpid()

    def evaluate(self, jobs: list[tuple]) -> list[tuple[dict[str, Any], bytes | None,
                                                       bytes | None]]:
        """Evaluate jobs in order: ``(arch_json, want_weights)`` at the evaluator's full budget,
        or ``(arch_json, want_weights, resource, state_bytes)``, one rung of a scheduler's
        candidate (see :func:`nastk.executors.worker.evaluate_rung`). ``(result dict, weights,
        state bytes)`` each (state ``None`` for a full evaluation)."""
        out: list[tuple[dict[str, Any], bytes | None, bytes | None]] = []
        for job in jobs:
            if len(job) == 4:
                arch_json, want, resource, state = job
                out.append(evaluate_rung(self.context.evaluator, arch_json, want, resource,
                                         state))
            else:
                arch_json, want = job
                out.append((*evaluate_candidate(self.context.evaluator, arch_json, want), None))
        return out


def _payload(candidate: Candidate) -> tuple:
    """What an actor gets for ``candidate``: ``(arch_json, want_weights)``, plus ``(resource,
    state bytes)`` for one rung of a scheduler's candidate (its partial training travels as
    bytes: workers share no file system with the driver)."""
    head = (candidate.arch.to_json(), candidate.checkpoint is not None)
    if candidate.rung is None:
        return head
    return (*head, *rung_payload(candidate))


@dataclass
class _Job:
    candidate: Candidate
    deaths: int = 0  # worker deaths while this candidate ran alone
    alone: bool = False  # send it in a call of its own (it was in a call that died)


class ActorPoolExecutor:
    """Evaluates a search's candidates on ``actors`` Ray actors, ``batch_size`` candidates per
    call, retrying candidates whose worker died (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, actors: int, *, cpus_per_actor: float = 1.0,
                 gpus_per_actor: float = 0.0, batch_size: int = 1, max_retries: int = 1) -> None:
        if actors < 1 or batch_size < 1 or max_retries < 0:
            raise ValueError(f"need actors >= 1, batch_size >= 1, max_retries >= 0; got "
                             f"{actors}, {batch_size}, {max_retries}")
        self.spec = spec
        self.n_actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.replaced = 0  # actors replaced after their process died
        self._actor_cls: Any = None
        self._idle: list[Any] = []
        self._busy: dict[Any, tuple[Any, list[_Job]]] = {}  # ObjectRef -> (actor, jobs)
        self._queue: deque[_Job] = deque()

    @property
    def capacity(self) -> int:
        """Candidates in flight at most: one batch per actor."""
        return self.n_actors * self.batch_size

    def describe(self) -> str:
        return (f"actor pool: {self.n_actors} actors x {self.cpus_per_actor:g} CPUs"
                + (f" + {self.gpus_per_actor:g} GPUs" if self.gpus_per_actor else "")
                + f", batches of {self.batch_size}, max_retries {self.max_retries}")

    # -- actors -------------------------------------------------------------------------------
    def _spawn(self) -> Any:
        return self._actor_cls.remote(self.spec)

    def start(self) -> None:
        """Create the actors (they build their evaluators in parallel)."""
        import ray

        if self._actor_cls is None:
            self._actor_cls = ray.remote(CandidateActor).options(
                num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor, max_restarts=0,
                max_task_retries=0)
        while len(self._idle) + len(self._busy) < self.n_actors:
            self._idle.append(self._spawn())

    def actor_pids(self) -> list[int]:
        """Process ids of the idle actors (waits for them to be built)."""
        import ray

        return list(ray.get([a.pid.remote() for a in self._idle]))

    def shutdown(self) -> None:
        """Kill every actor (their candidates, if any, stay ``running`` in the store)."""
        import ray

        for actor in [*self._idle, *(a for a, _ in self._busy.values())]:
            ray.kill(actor, no_restart=True)
        self._idle.clear()
        self._busy.clear()
        self._queue.clear()

    # -- the loop -----------------------------------------------------------------------------
    def run(self, search: Search) -> None:
        """Evaluate candidates from ``search`` until it proposes no more and all are recorded.

        ``search.propose()`` may answer ``None`` while candidates are in flight (under a
        scheduler, a synchronous bracket waits for its rung; a promotion comes only once a rung
        is recorded): the pool then waits for a result, records it and asks again. It ends only
        when ``propose`` answers ``None`` with nothing queued or running."""
        import ray

        self.start()
        try:
            while True:
                while (len(self._queue) + self._n_busy_jobs() < self.capacity
                       and (candidate := search.propose()) is not None):
                    self._queue.append(_Job(candidate))
                self._dispatch()
                if not self._busy:
                    if self._queue:  # cannot happen: idle actors take queued jobs
                        raise ExecutorError("actor pool stalled with queued candidates")
                    return
                ready, _ = ray.wait(list(self._busy), num_returns=1)
                for ref in ready:
                    self._collect(ref, search)
        finally:
            self.shutdown()

    def _n_busy_jobs(self) -> int:
        return sum(len(jobs) for _, jobs in self._busy.values())

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            jobs = [self._queue.popleft()]
            if not jobs[0].alone:
                while (len(jobs) < self.batch_size and self._queue
                       and not self._queue[0].alone):
                    jobs.append(self._queue.popleft())
            actor = self._idle.pop()
            payload = [_payload(j.candidate) for j in jobs]
            self._busy[actor.evaluate.remote(payload)] = (actor, jobs)

    def _collect(self, ref: Any, search: Search) -> None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        actor, jobs = self._busy.pop(ref)
        try:
            outputs = ray.get(ref)
        except (RayActorError, WorkerCrashedError) as err:
            if isinstance(err, RayActorError) and err.actor_init_failed:
                raise ExecutorError(
                    f"a Ray worker could not build the evaluator: {summarize_error(str(err))}. "
                    f"{WORKER_NEEDS}") from None
            self._worker_died(jobs, describe_worker_death(err), search)
            return
        except RayTaskError as err:  # the actor is alive; the call itself raised
            cause = getattr(err, "cause", None)
            if isinstance(cause, RunStoppingError):  # a full disk, a bad data file: stop
                raise type(cause)(f"on a Ray worker: {cause}") from None
            self._idle.append(actor)
            for job in jobs:
                search.record(job.candidate, Result.failed(
                    f"worker error: {summarize_error(str(err))}"))
            return
        self._idle.append(actor)
        for job, (result_dict, weights, state) in zip(jobs, outputs, strict=True):
            result = Result.from_dict(result_dict)
            if job.deaths:
                result = with_info(result, worker_retries=job.deaths)
            if weights is not None and job.candidate.checkpoint is not None:
                write_atomic(job.candidate.checkpoint, weights)
            if job.candidate.rung is not None:
                keep_rung_state(job.candidate, state)
            search.record(job.candidate, result)

    def _worker_died(self, jobs: list[_Job], error: str, search: Search) -> None:
        """Replace the dead actor; re-queue its candidates alone, or record them failed once a
        candidate's worker died ``max_retries + 1`` times while it ran alone."""
        self.replaced += 1
        self._idle.append(self._spawn())
        requeue = []
        for job in jobs:
            if len(jobs) == 1:
                job.deaths += 1
            if job.deaths > self.max_retries:
                search.record(job.candidate, Result.failed(
                    death_message(job.deaths, self.max_retries, error)))
            else:
                job.alone = True
                requeue.append(job)
        self._queue.extendleft(reversed(requeue))
