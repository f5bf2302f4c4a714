"""Data-parallel supernet training on Ray Train: the driver and the loop every worker runs.

The driver starts a ``TorchTrainer`` with ``training.workers`` workers (gloo on CPU, nccl on
GPU). Every worker builds the supernet from the same config and seed, takes rank 0's weights,
and runs :class:`~nastk.training.supernet.SupernetTrainer` as one
:class:`~nastk.training.data_parallel.DataParallel` member. Rank 0 writes the run folder's files:
the weights-only checkpoint (atomically, once per epoch, the format of a one-process run),
``history.json``, ``progress.json`` (read by the driver for its progress bars) and
``workers.json`` (rank, host and pid of every worker of the current attempt).

Failures: when a worker dies, Ray Train tears the group down and starts a new one (at most
``training.max_failures`` times); its workers resume from the checkpoint in ``run_dir``, and
the next epoch's record in the history carries ``restarted`` (attempt, epoch resumed from,
workers). A worker that fails with a nastk error (a diverged loss, bad data) writes
``failure.json``; the restarted groups of that session stop at once with it. A user's
``--resume`` on any number of workers carries ``resumed`` the same way.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nastk.core.errors import NastkError
from nastk.core.weights import write_atomic
from nastk.run.layout import RunLayout
from nastk.run.signals import stop_on_signals

ProgressCallback = Callable[[dict[str, Any]], None]


class DistributedTrainingError(NastkError, RuntimeError):
    """Data-parallel training could not start or did not finish."""


# -- the driver -------------------------------------------------------------------------------
def train_on_ray(config: Any, *, resume: bool, on_progress: ProgressCallback | None = None,
                 poll_s: float = 0.5) -> list[dict[str, Any]]:
    """Train the supernet of ``config`` (a :class:`~nastk.config.schema.SupernetConfig`) with
    ``training.workers`` Ray Train workers; returns the history. The caller has checked the run
    folder (a fresh run has no checkpoint; ``resume`` needs one)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from nastk.executors.ray_cluster import RayCluster, quiet_ray

    training, ex = config.training, config.executor
    run_dir = config.resolved_run_dir().resolve()
    cuda = str(training.device).startswith("cuda")
    gpus = ex.gpus_per_worker if ex.gpus_per_worker is not None else (1.0 if cuda else 0.0)
    cluster = RayCluster.connect(ex.address)
    try:
        need_cpu, need_gpu = training.workers * ex.cpus_per_worker, training.workers * gpus
        if need_cpu > cluster.cpus or need_gpu > cluster.gpus:
            raise DistributedTrainingError(
                f"training.workers={training.workers} at {ex.cpus_per_worker:g} CPUs and "
                f"{gpus:g} GPUs each (executor.cpus_per_worker, executor.gpus_per_worker) need "
                f"{need_cpu:g} CPUs and {need_gpu:g} GPUs; {cluster.describe()}. Use fewer "
                "workers, fewer CPUs per worker, or a larger cluster")
        session = uuid.uuid4().hex
        loop = {"config": config.model_dump(mode="json"), "source": str(config.source or ""),
                "run_dir": str(run_dir), "resume": resume, "session": session,
                # a worker's torch threads are its reserved CPUs (training.num_threads is
                # for a run in one process and would oversubscribe the workers' cores)
                "threads": max(1, int(ex.cpus_per_worker))}
        resources = {"CPU": ex.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
        trainer = TorchTrainer(
            _worker_loop, train_loop_config=loop,
            torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
            scaling_config=ScalingConfig(num_workers=training.workers, use_gpu=bool(gpus),
                                         resources_per_worker=resources),
            run_config=RunConfig(name=f"supernet_{session[:8]}",
                                 storage_path=str(run_dir / "ray_train"),
                                 failure_config=FailureConfig(
                                     max_failures=training.max_failures)))
        outcome: dict[str, Any] = {}

        def fit() -> None:
            try:
                outcome["result"] = trainer.fit()
            except BaseException as err:  # re-raised in the caller's thread
                outcome["error"] = err

        # handlers re-set over the SIGTERM one ray.init installs (nastk.run.signals)
        with quiet_ray(), stop_on_signals():
            thread = threading.Thread(target=fit, name="nastk-ray-train", daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(poll_s)
                if on_progress is not None:
                    _report_progress(run_dir, session, on_progress)
        if "error" in outcome:
            raise DistributedTrainingError(_failure_text(outcome["error"], training)) from None
        if on_progress is not None:
            _report_progress(run_dir, session, on_progress)
    finally:
        cluster.close()
    history_file = RunLayout(run_dir).history
    return json.loads(history_file.read_text()) if history_file.is_file() else []


def _report_progress(run_dir: Path, session: str, on_progress: ProgressCallback) -> None:
    try:
        state = json.loads(RunLayout(run_dir).progress.read_text())
    except (OSError, ValueError):
        return
    if state.get("session") == session:
        on_progress(state)


def _failure_text(err: BaseException, training: Any) -> str:
    from nastk.executors.ray_cluster import summarize_error

    text = str(err)
    cause = err.__cause__ or err.__context__
    if cause is not None:
        text += "\n" + str(cause)
    return (f"data-parallel supernet training failed on Ray Train (training.max_failures="
            f"{training.max_failures} restarts allowed): {summarize_error(text)}. The last "
            "finished epoch's checkpoint is kept: fix the cause and rerun with --resume")


# -- every worker -----------------------------------------------------------------------------
def _worker_loop(loop: dict[str, Any]) -> None:
    """The training function every Ray Train worker runs (also after a restart)."""
    import ray.train
    import torch

    from nastk.config.schema import SupernetConfig, parse_config
    from nastk.config.supernet_trainer import build_supernet_trainer
    from nastk.training.data_parallel import DataParallel
    from nastk.training.supernet import write_history

    config = parse_config(loop["config"], loop["source"] or "config", schema=SupernetConfig)
    run_dir = Path(loop["run_dir"])
    _refuse_a_known_failure(run_dir, loop["session"])
    ckpt = RunLayout(run_dir).supernet_checkpoint
    dp = DataParallel.from_process_group()
    torch.set_num_threads(int(loop["threads"]))
    if str(config.training.device).startswith("cuda"):
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        dp.device = device  # the trainer's device too
    trainer = build_supernet_trainer(config, run_dir, data_parallel=dp)
    attempt = _register_workers(run_dir, loop["session"], dp)
    if ckpt.is_file():  # the user's --resume, or a restart after a worker failed
        trainer.load_checkpoint(ckpt)
    if attempt > 1:
        trainer.pending_note = {"restarted": {"attempt": attempt, "from_epoch": trainer.epoch,
                                              "workers": dp.world,
                                              "cause": "a worker failed"}}
    elif loop["resume"]:
        trainer.pending_note = {"resumed": {"from_epoch": trainer.epoch, "workers": dp.world}}

    last = [0.0]

    def progress(step: int | None, steps: int | None, record: dict[str, Any] | None) -> None:
        now = time.monotonic()
        if record is None and step != steps and now - last[0] < 0.5:
            return
        last[0] = now
        state = {"session": loop["session"], "attempt": attempt, "workers": dp.world,
                 "epoch": trainer.epoch, "step": step, "steps": steps,
                 "epochs": config.training.total_epochs, "record": record}
        write_atomic(RunLayout(run_dir).progress, json.dumps(state).encode())

    def on_epoch(record: dict[str, Any]) -> None:
        write_history(run_dir, trainer.history)
        progress(None, None, record)

    main = dp.is_main
    try:
        trainer.train(on_epoch=on_epoch if main else None,
                      on_step=(lambda s, n: progress(s, n, None)) if main else None)
    except NastkError as err:  # the config's or the data's fault: a restart would repeat it
        write_atomic(RunLayout(run_dir).failure, json.dumps(
            {"session": loop["session"], "rank": dp.rank, "error": str(err)}).encode())
        raise
    if main:
        write_history(run_dir, trainer.history)


def _refuse_a_known_failure(run_dir: Path, session: str) -> None:
    """After a worker of this session failed with a nastk error (a diverged loss, bad data), a
    restarted worker group stops at once with it instead of training up to it again."""
    try:
        failure = json.loads(RunLayout(run_dir).failure.read_text())
    except (OSError, ValueError):
        return
    if failure.get("session") == session:
        raise DistributedTrainingError(f"not retried: rank {failure['rank']} failed with "
                                       f"{failure['error']}")


def _register_workers(run_dir: Path, session: str, dp: Any) -> int:
    """Write ``workers.json`` (rank 0) and return this attempt's number within the session
    (1 for the first worker group, 2 after one restart, ...)."""
    me = {"rank": dp.rank, "host": socket.gethostname(), "pid": os.getpid()}
    import torch.distributed as dist

    everyone: list[Any] = [None] * dp.world
    dist.all_gather_object(everyone, me)
    attempt = 1
    if dp.is_main:
        path = RunLayout(run_dir).workers
        try:
            before = json.loads(path.read_text())
            if before.get("session") == session:
                attempt = int(before.get("attempt", 0)) + 1
        except (OSError, ValueError):
            pass
        write_atomic(path, json.dumps({"session": session, "attempt": attempt,
                                       "workers": everyone}, indent=2).encode())
    return int(dp.broadcast(attempt))
