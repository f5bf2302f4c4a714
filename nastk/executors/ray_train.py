"""Data-parallel supernet training on Ray Train: the driver and the loop every worker runs.

The driver starts a ``TorchTrainer`` with ``training.workers`` workers (gloo on CPU, nccl on
GPU). Every worker builds the supernet from the same config and seed, takes rank 0's weights,
and runs :class:`~nastk.training.supernet.SupernetTrainer` as one
:class:`~nastk.training.data_parallel.DataParallel` member.

No shared file system is needed: the workers never see the driver's run folder. They get the
config, the files it names (``training.init.from``, ``path_filter.file``) and the plugin
modules that are not installed packages by value (:class:`~nastk.executors.shipping.Parcel`),
each checks the data set at its own node's path, and each trains in a scratch folder of its
own. A :class:`TrainingRelay` actor stands between them and the driver: it holds the
checkpoint the workers start from (the user's ``--resume``, or the last epoch's after a
restart), and rank 0 sends it, after every epoch, whatever it wrote (the weights-only
checkpoint, ``history.json``, ``init_report.json``), its progress and the workers of each
attempt. The driver polls the relay and writes the run folder's files (atomically): the
checkpoint in the format of a one-process run, ``history.json``, ``progress.json`` (also read
for its progress bars) and ``workers.json`` (rank, host and pid of every worker of the current
attempt).

Failures: when a worker dies, Ray Train tears the group down and starts a new one (at most
``training.max_failures`` times); its workers resume from the relay's checkpoint, and the next
epoch's record in the history carries ``restarted`` (attempt, epoch resumed from, workers). A
worker that fails with a nastk error (a diverged loss, data missing on its node) tells the
relay (the driver writes ``failure.json``); the restarted groups stop at once with it. A
user's ``--resume`` on any number of workers carries ``resumed`` the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nastk.core.errors import NastkError
from nastk.core.weights import write_atomic
from nastk.executors.shipping import Parcel, on_node
from nastk.run.layout import FAILURE_JSON, SUPERNET_CHECKPOINT, WORKERS_JSON, RunLayout
from nastk.run.signals import stop_on_signals

ProgressCallback = Callable[[dict[str, Any]], None]

#: the config fields (dotted paths into its JSON data) naming files the workers read
SHIPPED_FILES = ("training.init.from_", "path_filter.file")


class DistributedTrainingError(NastkError, RuntimeError):
    """Data-parallel training could not start or did not finish."""


class TrainingRelay:
    """What the driver and its Ray Train workers exchange instead of a shared run folder (a
    Ray actor of the driver's session; see the module docstring). Files are kept by name,
    the latest version of each, with a counter the driver polls against."""

    def __init__(self, checkpoint: bytes | None) -> None:
        self._checkpoint = checkpoint
        self._files: dict[str, tuple[int, bytes]] = {}
        self._version = 0
        self._progress: dict[str, Any] | None = None
        self._attempt = 0
        self._failure: dict[str, Any] | None = None

    def checkpoint(self) -> bytes | None:
        """The weights-only checkpoint a worker group starts from (``None``: a fresh run)."""
        return self._checkpoint

    def put(self, files: dict[str, bytes]) -> None:
        """Keep files rank 0 wrote (the checkpoint is also what a restarted group starts
        from)."""
        self._version += 1
        for name, blob in files.items():
            self._files[name] = (self._version, blob)
            if name == SUPERNET_CHECKPOINT:
                self._checkpoint = blob

    def take(self, since: int) -> tuple[int, dict[str, bytes], dict[str, Any] | None]:
        """``(version, files newer than since, latest progress)``."""
        newer = {k: blob for k, (v, blob) in self._files.items() if v > since}
        return self._version, newer, self._progress

    def progress(self, state: dict[str, Any]) -> None:
        self._progress = state

    def register(self, session: str, workers: list[Any]) -> int:
        """Record a worker group (rank 0 calls it once per attempt); returns the attempt's
        number within the session (1 for the first group, 2 after one restart, ...)."""
        self._attempt += 1
        self.put({WORKERS_JSON: json.dumps(
            {"session": session, "attempt": self._attempt, "workers": workers},
            indent=2).encode()})
        return self._attempt

    def fail(self, session: str, rank: int, error: str) -> None:
        """A worker failed with a nastk error: a restart would repeat it."""
        if self._failure is None:
            self._failure = {"session": session, "rank": rank, "error": error}
            self.put({FAILURE_JSON: json.dumps(self._failure).encode()})

    def failure(self) -> dict[str, Any] | None:
        return self._failure


# -- the driver -------------------------------------------------------------------------------
def _starting_checkpoint(run_dir: Path, resume: bool) -> bytes | None:
    """The checkpoint bytes the workers start from: the run folder's on ``--resume``."""
    ckpt = RunLayout(run_dir).supernet_checkpoint
    return ckpt.read_bytes() if resume and ckpt.is_file() else None


class _RunFolderWriter:
    """The driver's side of the relay: writes what it takes into the run folder."""

    def __init__(self, relay: Any, run_dir: Path, on_progress: ProgressCallback | None) -> None:
        self.relay, self.layout = relay, RunLayout(run_dir)
        self.on_progress = on_progress
        self.version = 0
        self.progress_seen: Any = None

    def sync(self) -> None:
        import ray

        version, files, progress = ray.get(self.relay.take.remote(self.version))
        self.version = version
        # the checkpoint before the history that describes it
        for name in sorted(files, key=lambda n: n != SUPERNET_CHECKPOINT):
            if Path(name).name != name or name.startswith("."):
                continue  # only plain file names reach the run folder
            write_atomic(self.layout.root / name, files[name])
        if progress is not None and progress != self.progress_seen:
            self.progress_seen = progress
            write_atomic(self.layout.progress, json.dumps(progress).encode())
            if self.on_progress is not None:
                self.on_progress(progress)


def train_on_ray(config: Any, *, resume: bool, on_progress: ProgressCallback | None = None,
                 poll_s: float = 0.5) -> list[dict[str, Any]]:
    """Train the supernet of ``config`` (a :class:`~nastk.config.schema.SupernetConfig`) with
    ``training.workers`` Ray Train workers; returns the history. The caller has checked the run
    folder (a fresh run has no checkpoint; ``resume`` needs one)."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from nastk.executors.ray_cluster import RayCluster, quiet_ray

    training, ex = config.training, config.executor
    run_dir = config.resolved_run_dir().resolve()
    cuda = str(training.device).startswith("cuda")
    gpus = ex.gpus_per_worker if ex.gpus_per_worker is not None else (1.0 if cuda else 0.0)
    data = config.model_dump(mode="json")
    parcel = Parcel.pack(data, SHIPPED_FILES, data.get("plugins") or [])
    start_from = _starting_checkpoint(run_dir, resume)
    cluster = RayCluster.connect(ex.address)
    relay = None
    try:
        need_cpu, need_gpu = training.workers * ex.cpus_per_worker, training.workers * gpus
        if need_cpu > cluster.cpus or need_gpu > cluster.gpus:
            raise DistributedTrainingError(
                f"training.workers={training.workers} at {ex.cpus_per_worker:g} CPUs and "
                f"{gpus:g} GPUs each (executor.cpus_per_worker, executor.gpus_per_worker) need "
                f"{need_cpu:g} CPUs and {need_gpu:g} GPUs; {cluster.describe()}. Use fewer "
                "workers, fewer CPUs per worker, or a larger cluster")
        session = uuid.uuid4().hex
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                              soft=True)
        relay = ray.remote(num_cpus=0)(TrainingRelay).options(
            scheduling_strategy=here).remote(start_from)
        writer = _RunFolderWriter(relay, run_dir, on_progress)
        loop = {"config": data, "parcel": parcel, "relay": relay, "cwd": os.getcwd(),
                "source": str(config.source or ""), "resume": resume, "session": session,
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
            try:
                while thread.is_alive():
                    thread.join(poll_s)
                    writer.sync()
            except BaseException:  # interrupted: keep the last epoch the relay holds
                with contextlib.suppress(Exception):
                    writer.sync()
                raise
            writer.sync()
        if "error" in outcome:
            raise DistributedTrainingError(_failure_text(outcome["error"], training)) from None
    finally:
        if relay is not None:
            ray.kill(relay)
        cluster.close()
    history_file = RunLayout(run_dir).history
    return json.loads(history_file.read_text()) if history_file.is_file() else []


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
class _Sender:
    """Rank 0's side of the relay: sends the files of its scratch folder that changed."""

    def __init__(self, relay: Any, scratch: Path) -> None:
        self.relay, self.scratch = relay, scratch
        self.sent: dict[str, str] = {}

    def send(self) -> None:
        import ray

        changed: dict[str, bytes] = {}
        for path in sorted(self.scratch.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            blob = path.read_bytes()
            digest = hashlib.sha256(blob).hexdigest()
            if self.sent.get(path.name) != digest:
                changed[path.name] = blob
                self.sent[path.name] = digest
        if changed:  # waited for: a restart after this starts from this epoch's checkpoint
            ray.get(self.relay.put.remote(changed))


def _worker_trainer(loop: dict[str, Any], dp: Any, scratch: Path) -> tuple[Any, Any]:
    """``(config, trainer)`` of one worker: the parcel unpacked, the config parsed, the
    trainer built writing into ``scratch`` after the data set was checked at this node's path
    (in the driver's working directory when this node has it, so relative paths mean what they
    mean to the driver). A nastk error names the node."""
    import torch

    from nastk.config.schema import SupernetConfig, parse_config
    from nastk.config.supernet_trainer import build_supernet_trainer

    if os.path.isdir(loop["cwd"]):
        os.chdir(loop["cwd"])
    try:
        data = loop["parcel"].unpack(loop["config"])
        config = parse_config(data, loop["source"] or "config", schema=SupernetConfig)
        torch.set_num_threads(int(loop["threads"]))
        if str(config.training.device).startswith("cuda"):
            import ray.train

            device = ray.train.torch.get_device()
            torch.cuda.set_device(device)
            dp.device = device  # the trainer's device too
        return config, build_supernet_trainer(config, scratch, data_parallel=dp)
    except NastkError as err:
        raise on_node(err) from None


def _worker_loop(loop: dict[str, Any]) -> None:
    """The training function every Ray Train worker runs (also after a restart)."""
    import ray

    from nastk.training.data_parallel import DataParallel
    from nastk.training.supernet import write_history

    relay, session = loop["relay"], loop["session"]
    _refuse_a_known_failure(relay)
    dp = DataParallel.from_process_group()
    scratch = Path(tempfile.mkdtemp(prefix="nastk-supernet-"))  # this worker's own folder
    layout = RunLayout(scratch)
    try:
        config, trainer = _worker_trainer(loop, dp, scratch)
    except NastkError as err:
        ray.get(relay.fail.remote(session, dp.rank, str(err)))
        raise
    attempt = _register_workers(relay, session, dp)
    start_from = ray.get(relay.checkpoint.remote())
    if start_from is not None:  # the user's --resume, or a restart after a worker failed
        write_atomic(layout.supernet_checkpoint, start_from)
        trainer.load_checkpoint(layout.supernet_checkpoint)
    if attempt > 1:
        trainer.pending_note = {"restarted": {"attempt": attempt, "from_epoch": trainer.epoch,
                                              "workers": dp.world,
                                              "cause": "a worker failed"}}
    elif loop["resume"]:
        trainer.pending_note = {"resumed": {"from_epoch": trainer.epoch, "workers": dp.world}}

    sender = _Sender(relay, scratch)
    last = [0.0]

    def progress(step: int | None, steps: int | None, record: dict[str, Any] | None) -> None:
        now = time.monotonic()
        if record is None and step != steps and now - last[0] < 0.5:
            return
        last[0] = now
        relay.progress.remote({"session": session, "attempt": attempt, "workers": dp.world,
                               "epoch": trainer.epoch, "step": step, "steps": steps,
                               "epochs": config.training.total_epochs, "record": record})

    def on_epoch(record: dict[str, Any]) -> None:
        write_history(scratch, trainer.history)
        sender.send()
        progress(None, None, record)

    main = dp.is_main
    try:
        trainer.train(on_epoch=on_epoch if main else None,
                      on_step=(lambda s, n: progress(s, n, None)) if main else None)
    except NastkError as err:  # the config's or the data's fault: a restart would repeat it
        ray.get(relay.fail.remote(session, dp.rank, str(err)))
        raise
    if main:
        write_history(scratch, trainer.history)
        sender.send()


def _refuse_a_known_failure(relay: Any) -> None:
    """After a worker of this session failed with a nastk error (a diverged loss, bad data), a
    restarted worker group stops at once with it instead of training up to it again."""
    import ray

    failure = ray.get(relay.failure.remote())
    if failure is not None:
        raise DistributedTrainingError(f"not retried: rank {failure['rank']} failed with "
                                       f"{failure['error']}")


def _register_workers(relay: Any, session: str, dp: Any) -> int:
    """Tell the relay this attempt's workers (rank, host, pid: the driver writes
    ``workers.json``) and return the attempt's number within the session."""
    import ray
    import torch.distributed as dist

    me = {"rank": dp.rank, "host": socket.gethostname(), "pid": os.getpid()}
    everyone: list[Any] = [None] * dp.world
    dist.all_gather_object(everyone, me)
    attempt = 1
    if dp.is_main:
        attempt = int(ray.get(relay.register.remote(session, everyone)))
    return int(dp.broadcast(attempt))
