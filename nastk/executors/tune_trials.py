"""Expensive candidates as Ray Tune trials.

The search plugs into Tune as a :class:`ray.tune.search.Searcher`: Tune asks it for the next
trial (``suggest``), which asks the strategy through :meth:`nastk.run.loop.Search.propose`
(de-duplication against the store and the trials in flight, the ``running`` row written).
A Tune callback hands every finished trial to :meth:`Search.record` (store first, then the
strategy), so the store is written only by this process and the strategy lives only here.

Each trial runs :func:`run_candidate` in a Tune worker: it rebuilds the task and evaluator from
the search config (once per worker process; Tune reuses its actors between trials), evaluates
the architecture and reports the result.

Under the engine's scheduler (``Search(scheduler=...)``: successive halving, ASHA, Hyperband)
each rung of a candidate is one Tune trial: its config carries the resource and the partial
training of the previous rung as bytes, and its final report the partial training reached, as
bytes (workers share no file system with the driver); the callback writes them where the next
rung's candidate reads them. The engine decides which candidates continue; Tune runs no
scheduler of its own. A trial whose worker process died is retried by Tune (``FailureConfig``)
up to ``max_retries`` times, then recorded as failed with the error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from nastk.core.errors import RunStoppingError
from nastk.core.result import Result
from nastk.core.weights import write_atomic
from nastk.executors.ray_cluster import (
    ExecutorError,
    death_message,
    quiet_ray,
    summarize_error,
)
from nastk.executors.shipping import WORKER_NEEDS
from nastk.executors.worker import (
    WorkerContext,
    WorkerSpec,
    enter_driver_cwd,
    evaluate_candidate,
    evaluate_rung,
    keep_rung_state,
    rung_payload,
    with_info,
)
from nastk.run.layout import trial_folder_name
from nastk.run.loop import Candidate, Search

#: the value every report carries for schedulers: the objective's score (larger is better)
SCORE = "nastk_score"
_RESULT = "nastk_result"  # JSON of Result.to_dict(), only in the final report
_WEIGHTS = "nastk_weights"  # checkpoint bytes, only in the final report
_STATE = "nastk_state"  # a rung's partial training (bytes), only in the final report
_FATAL = "nastk_fatal"  # the worker could not build the evaluator
_STOP = "nastk_stop"  # a RunStoppingError (full disk, unreadable data file): the run stops


def _trial_name(trial: Any) -> str:
    """Tune's name (and folder) for a trial: the store's trial id (and the rung, under a
    scheduler: each rung is a Tune trial of its own)."""
    name = trial_folder_name(trial.config['trial'])
    rung = trial.config.get("rung")
    return name if rung is None else f"{name}_rung_{int(rung)}"


def _score(objective: Any, result: Result) -> float:
    s = objective.score(result)
    return float("-inf") if s is None else float(s)


def run_candidate(config: dict[str, Any], spec: WorkerSpec) -> None:
    """The Tune trainable: evaluate ``config["arch"]`` and report its result once. Under a
    scheduler (``config["rung"]`` set) it evaluates one rung: up to ``config["resource"]``,
    continuing from the partial training ``config["state"]`` (bytes), and reports the partial
    training reached with the result."""
    try:
        ctx = WorkerContext.get(spec)
    except Exception as err:
        tune.report({SCORE: float("-inf"), _FATAL: summarize_error(f"{type(err).__name__}: "
                                                                    f"{err}", 1000)})
        return
    enter_driver_cwd(spec)  # Tune moves each trial into its own directory
    state: bytes | None = None
    try:
        if config.get("rung") is not None:
            result_dict, weights, state = evaluate_rung(
                ctx.evaluator, config["arch"], config["weights"], config["resource"],
                config.get("state") or None)
        else:
            result_dict, weights = evaluate_candidate(ctx.evaluator, config["arch"],
                                                      config["weights"])
    except RunStoppingError as err:  # not the candidate's fault: the driver stops the run
        tune.report({SCORE: float("-inf"), _STOP: str(err)})
        return
    final: dict[str, Any] = {SCORE: _score(ctx.objective, Result.from_dict(result_dict)),
                             _RESULT: json.dumps(result_dict), _WEIGHTS: weights or b""}
    if config.get("rung") is not None:
        final[_STATE] = state or b""
    tune.report(final)


class TuneExecutor:
    """Runs a search's candidates as Ray Tune trials (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, max_concurrent: int, storage_dir: Path, *,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 max_retries: int = 1) -> None:
        self.spec = spec
        self.max_concurrent = max_concurrent
        self.storage_dir = Path(storage_dir).resolve()
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.max_retries = max_retries

    def describe(self) -> str:
        return (f"Ray Tune: {self.max_concurrent} trials at a time x {self.cpus_per_trial:g} CPUs"
                + (f" + {self.gpus_per_trial:g} GPUs" if self.gpus_per_trial else "")
                + f", max_retries {self.max_retries}")

    def run(self, search: Search) -> None:
        """Run Tune until the search proposes no more and every trial is recorded."""
        with quiet_ray():
            bridge = _Bridge(search)
            trainable = tune.with_resources(
                tune.with_parameters(run_candidate, spec=self.spec),
                {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial})
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=_StrategySearcher(bridge, self.max_concurrent),
                    num_samples=-1,
                    max_concurrent_trials=self.max_concurrent, reuse_actors=True,
                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name=time.strftime("nastk-%Y%m%d-%H%M%S"),
                    storage_path=str(self.storage_dir), verbose=0,
                    failure_config=tune.FailureConfig(max_failures=self.max_retries),
                    callbacks=[_RecordingCallback(bridge, self.max_retries)]))
            tuner.fit()
        if bridge.stop is not None:
            raise RunStoppingError(f"on a Ray worker: {bridge.stop}")
        if bridge.fatal is not None:
            raise ExecutorError(
                f"a Ray worker could not build the evaluator: {bridge.fatal}. {WORKER_NEEDS}")


class _Bridge:
    """State shared by the searcher, the scheduler and the callback: which Tune trial is which
    candidate."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self.candidates: dict[str, Candidate] = {}  # Tune trial id -> candidate
        self.fatal: str | None = None
        self.stop: str | None = None  # a worker's RunStoppingError, in words
        self.abandoned: set[int] = set()  # store trial ids left `running` (not recorded)

    def unfinished(self) -> int:
        """Candidates handed out whose Tune trial is still to end."""
        return len(set(self.search.in_flight) - self.abandoned)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its searcher, scheduler and callbacks for ``Tuner.restore``; nastk
        resumes from its store instead, so they pickle without the search (and its SQLite
        connection)."""
        return {"search": None, "candidates": {}, "fatal": self.fatal,
                "stop": self.stop, "abandoned": set()}


class _StrategySearcher(Searcher):
    """Proposes Tune trials from the search (strategy + store)."""

    def __init__(self, bridge: _Bridge, max_concurrent: int) -> None:
        super().__init__(metric=None, mode=None)
        self.bridge = bridge
        self.max_concurrent = max_concurrent

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next trial's config; ``None`` (ask again later) while nothing can start but
        candidates are in flight (the concurrency limit, or a scheduler's rung that must finish
        before a promotion: ``propose`` answers ``None`` then); ``FINISHED`` only once nothing
        is proposed and nothing is in flight."""
        b = self.bridge
        if b.fatal is not None or b.stop is not None:
            return Searcher.FINISHED if not b.unfinished() else None
        if b.unfinished() >= self.max_concurrent:
            return None
        candidate = b.search.propose()
        if candidate is None:
            return Searcher.FINISHED if not b.unfinished() else None
        b.candidates[trial_id] = candidate
        config: dict[str, Any] = {"trial": candidate.trial_id, "arch": candidate.arch.to_json(),
                                  "weights": candidate.checkpoint is not None}
        if candidate.rung is not None:
            resource, state = rung_payload(candidate)
            config.update(resource=resource, rung=int(candidate.rung), state=state)
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """Nothing to do: the callback records trials (it also sees errors and retries)."""


class _RecordingCallback(tune.Callback):
    """Hands finished and failed Tune trials to :meth:`Search.record`."""

    def __init__(self, bridge: _Bridge, max_retries: int) -> None:
        self.bridge = bridge
        self.max_retries = max_retries

    def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                          **info: Any) -> None:
        b = self.bridge
        candidate = b.candidates.pop(trial.trial_id, None)
        if candidate is None:
            return
        last = trial.last_result or {}
        if _FATAL in last:
            b.fatal = b.fatal or str(last[_FATAL])
            b.abandoned.add(candidate.trial_id)
            return
        if _STOP in last:  # left `running`: the lifecycle records it interrupted
            b.stop = b.stop or str(last[_STOP])
            b.abandoned.add(candidate.trial_id)
            return
        if _RESULT in last:
            result = Result.from_dict(json.loads(last[_RESULT]))
            weights = last.pop(_WEIGHTS, None) or b""  # not kept in Tune's experiment state
            if weights and candidate.checkpoint is not None and result.ok:
                write_atomic(candidate.checkpoint, bytes(weights))
            state = last.pop(_STATE, None) or b""
            if candidate.rung is not None:
                keep_rung_state(candidate, bytes(state))
                if isinstance(trial.config, dict) and "state" in trial.config:
                    trial.config["state"] = None  # the bytes are kept by the driver now
        else:  # stopped without a result (the run is ending): leave it `running`
            b.abandoned.add(candidate.trial_id)
            return
        if trial.num_failures:
            result = with_info(result, worker_retries=int(trial.num_failures))
        b.search.record(candidate, result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any,
                       **info: Any) -> None:
        candidate = self.bridge.candidates.pop(trial.trial_id, None)
        if candidate is None:
            return
        try:
            text = trial.get_error() or ""
        except Exception:  # the error file may not be readable; the count still is
            text = ""
        error = summarize_error(str(text)) if text else "no error text recorded"
        self.bridge.search.record(candidate, Result.failed(
            death_message(int(trial.num_failures), self.max_retries, error)))
