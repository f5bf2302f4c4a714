"""Connecting to (or starting) a Ray cluster, and what it offers."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from nastk.config.executors import ExecutorConfig
from nastk.core.errors import NastkError

#: Ray's loggers that talk during Tune runs; quietened while nastk drives Ray
_RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray.data")


class ExecutorError(NastkError, RuntimeError):
    """The Ray cluster cannot be reached or cannot run the candidates."""


#: what an HTTP/2 client sends first; a gRPC server (Ray's GCS and client server are gRPC)
#: answers with a SETTINGS frame
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_SETTINGS = 0x04


def _answers_grpc(sock: socket.socket) -> bool:
    """Whether the server on ``sock`` speaks HTTP/2: its first frame is SETTINGS (the 9-byte
    frame header's fourth byte)."""
    try:
        sock.sendall(_HTTP2_PREFACE)
        header = b""
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:
        return False
    return header[3] == _HTTP2_SETTINGS


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (within ``timeout_s`` twice at most), in one line with the fix, when nothing
    listens at ``[ray://]HOST:PORT`` or what listens there is not a Ray head (Ray would retry
    for minutes, printing its client's warnings)."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    fix = ("Start the head with `ray start --head` (it prints the address; the default port "
           "is 6379), check that this machine can reach that port, or leave out --address to "
           "start a local Ray")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            grpc = _answers_grpc(sock)
    except OSError as err:
        raise ExecutorError(f"cannot reach a Ray cluster at {address}: {err}. {fix}") from None
    if not grpc:
        raise ExecutorError(f"cannot reach a Ray cluster at {address}: something listens "
                            "there but does not answer as a Ray head (a gRPC server) does. "
                            f"{fix}")


@dataclass
class RayCluster:
    """A connection to a Ray cluster. :meth:`close` disconnects if :meth:`connect` connected
    (stopping Ray only if it was a local instance nastk started); a connection that existed
    before is left alone."""

    address: str
    started_local: bool
    owns_connection: bool
    cpus: float
    gpus: float

    @classmethod
    def connect(cls, address: str | None) -> RayCluster:
        """Connect to the cluster at ``address`` (``auto`` or ``[ray://]HOST:PORT``), or start a
        local Ray with this machine's CPUs when ``address`` is None. An existing connection in
        this process (``ray.init`` called before) is used as it is."""
        import ray

        if address not in (None, "auto"):
            _check_reachable(address)
        started = owns = False
        if not ray.is_initialized():
            owns = True
            kwargs = {"include_dashboard": False, "log_to_driver": False,
                      "logging_level": logging.ERROR}
            if address is None:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
                started = True
            else:
                env_vars = {k: os.environ[k] for k in ("PYTHONPATH",) if os.environ.get(k)}
                try:
                    ray.init(address=address, runtime_env={"env_vars": env_vars} if env_vars
                             else None, **kwargs)
                except ConnectionError as err:
                    hint = ("no running Ray cluster was found on this machine: start one with "
                            "`ray start --head`, pass its HOST:PORT, or leave out --address to "
                            "start a local Ray" if address == "auto" else
                            "is it a Ray head's GCS port (6379 by default)?")
                    raise ExecutorError(f"cannot connect to Ray at {address!r}: {err} ({hint})"
                                        ) from None
        resources = ray.cluster_resources()
        gcs = ray.get_runtime_context().gcs_address
        return cls(str(gcs), started, owns, float(resources.get("CPU", 0.0)),
                   float(resources.get("GPU", 0.0)))

    def close(self) -> None:
        """Disconnect (and stop a local Ray nastk started) if :meth:`connect` connected."""
        if self.owns_connection:
            import ray

            ray.shutdown()
            self.owns_connection = False

    def concurrency(self, config: ExecutorConfig) -> int:
        """Candidates at once: ``config.max_concurrent``, or as many as the cluster's CPUs and
        GPUs allow at the per-candidate resources. Raises when one candidate cannot fit."""
        if config.cpus_per_candidate > self.cpus or config.gpus_per_candidate > self.gpus:
            raise ExecutorError(
                f"a candidate needs {config.cpus_per_candidate:g} CPUs and "
                f"{config.gpus_per_candidate:g} GPUs (executor.cpus_per_candidate, "
                f"executor.gpus_per_candidate) but the Ray cluster at {self.address} has "
                f"{self.cpus:g} CPUs and {self.gpus:g} GPUs; lower them or add nodes")
        if config.max_concurrent is not None:
            return config.max_concurrent
        n = int(self.cpus // config.cpus_per_candidate)
        if config.gpus_per_candidate > 0:
            n = min(n, int(self.gpus // config.gpus_per_candidate))
        return max(n, 1)

    def describe(self) -> str:
        where = "local Ray started by nastk" if self.started_local else f"Ray at {self.address}"
        return f"{where}: {self.cpus:g} CPUs, {self.gpus:g} GPUs"


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Keep Ray Tune's console output (progress tables, per-trial error traces, logger files)
    off the user's console for the block; nastk reports progress itself."""
    env = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
           "TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "TUNE_DISABLE_SIGINT_HANDLER": "1",
           "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "600"}
    saved_env = {k: os.environ.get(k) for k in env}
    loggers = [logging.getLogger(name) for name in _RAY_LOGGERS]
    saved_levels = [lg.level for lg in loggers]
    os.environ.update(env)
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for lg, level in zip(loggers, saved_levels, strict=True):
            lg.setLevel(level)


def death_message(deaths: int, max_retries: int, error: str) -> str:
    """The error recorded for a candidate whose worker process kept dying."""
    times = "once" if deaths == 1 else f"{deaths} times"
    return (f"worker process died {times} while evaluating this candidate "
            f"(executor.max_retries={max_retries}): {error}")


def describe_worker_death(err: BaseException) -> str:
    """``ActorDiedError: The actor died ... (pid 123, worker exit type SYSTEM_ERROR)`` from a
    Ray actor or worker error (whose own text runs to a dozen lines)."""
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else "no details"
    details = []
    for ln in lines:
        if ln.startswith("pid:"):
            details.append(f"pid {ln.split(':', 1)[1].strip()}")
    marker = "Worker exit type: "
    if marker in text:
        details.append("worker exit type " + text.split(marker, 1)[1].split()[0])
    return f"{type(err).__name__}: {first}" + (f" ({', '.join(details)})" if details else "")


def summarize_error(text: str, limit: int = 300) -> str:
    """The most telling line of a Ray error text or traceback (``SomeError: message``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pick = ""
    for ln in lines:
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            pick = ln
    if not pick:
        pick = lines[0] if lines else "unknown error"
    pick = pick.removeprefix("ray.exceptions.")
    return pick if len(pick) <= limit else pick[: limit - 3] + "..."
