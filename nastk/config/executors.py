"""Where a search's candidates run: ``executor`` in a search config."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HOST_PORT = re.compile(r"^(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_address(value: str | None) -> str | None:
    """A Ray address as nastk takes it: None, 'auto', HOST:PORT or ray://HOST:PORT."""
    if value is None or value == "auto" or _HOST_PORT.match(value):
        return value
    raise ValueError(f"address {value!r} should be 'auto', HOST:PORT (e.g. 10.0.0.5:6379, "
                     "the head's address printed by `ray start --head`) or ray://HOST:PORT; "
                     "leave it out to start a local Ray")


class AshaConfig(BaseModel):
    """Asynchronous successive halving (``executor.asha``): after ``grace_period`` epochs, and
    again every ``reduction_factor`` times as many, a candidate continues only if its metric is
    in the top ``1/reduction_factor`` of those that got that far."""

    model_config = ConfigDict(extra="forbid")

    grace_period: int = Field(1, ge=1, description="epochs every candidate trains for at least")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep the top 1/reduction_factor "
                                                             "at each rung")


class _LocalOrRay(BaseModel):
    """``kind`` and ``address`` of where something runs; ``ray`` is short for
    ``{kind: ray}``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(
        None, description="Ray cluster: 'auto' (the cluster `ray start` started on this "
        "machine), HOST:PORT of its head, or ray://HOST:PORT (Ray client); None starts a local "
        "Ray with this machine's CPUs")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: str | None) -> str | None:
        return check_address(value)


class ExecutorConfig(_LocalOrRay):
    """How candidates are executed. ``local`` (default): one at a time in this process. ``ray``:
    on a Ray cluster, several at a time; the store and the strategy stay in this process.

    ``executor: ray`` is shorthand for ``executor: {kind: ray}``. The ray settings are ignored
    by ``kind: local``, so ``--executor local`` runs a ray config in-process unchanged. The
    executor is not part of a run's identity: a run started locally may be resumed on a
    cluster and vice versa.
    """

    cpus_per_candidate: float = Field(1.0, gt=0, description="CPUs reserved per candidate")
    gpus_per_candidate: float = Field(0.0, ge=0, description="GPUs reserved per candidate "
                                                             "(fractions share a GPU)")
    max_concurrent: int | None = Field(
        None, ge=1, description="candidates running at once; default: as many as the "
        "cluster's CPUs (and GPUs) allow at the per-candidate resources")
    max_retries: int = Field(
        1, ge=0, description="times a candidate whose worker process died is run again before "
        "it is recorded as failed with the error")
    mode: Literal["auto", "tune", "actors"] = Field(
        "auto", description="tune: one Ray Tune trial per candidate (expensive candidates, "
        "ASHA); actors: a pool of long-lived actors that build the evaluator once (cheap "
        "candidates); auto: tune for evaluator kind 'train', actors otherwise")
    actors: int | None = Field(None, ge=1, description="actor-pool size; default max_concurrent")
    batch_size: int = Field(
        1, ge=1, description="actors mode: candidates sent to an actor per call (larger "
        "batches amortise the ~1 ms round trip; more candidates are then in flight)")
    scheduler: Literal["none", "asha"] = Field(
        "none", description="tune mode: 'asha' stops poor candidates after some epochs "
        "(evaluator kind 'train' with epochs, not steps)")
    asha: AshaConfig = Field(default_factory=AshaConfig)

    def resolved_mode(self, evaluator_kind: str) -> Literal["tune", "actors"]:
        """``tune`` or ``actors``; ``auto`` picks tune for training from scratch."""
        if self.mode != "auto":
            return self.mode
        return "tune" if evaluator_kind == "train" else "actors"

    def engine_scheduler(self) -> dict[str, Any] | None:
        """``executor.scheduler: asha`` (the option from before the engine had schedulers) as
        the engine's scheduler: the :class:`nastk.scheduling.config.SchedulerConfig` data
        config composition uses when the config sets no ``scheduler:`` of its own
        (``executor.asha.grace_period`` becomes ``min_resource``, ``reduction_factor`` stays);
        ``None`` for ``scheduler: none``. Tune runs no scheduler of its own any more."""
        if self.scheduler != "asha":
            return None
        return {"kind": "asha", "reduction_factor": float(self.asha.reduction_factor),
                "min_resource": float(self.asha.grace_period)}

    def check_fits(self, evaluator_kind: str, epochs: int | None, steps: int | None) -> None:
        """Raise :class:`ValueError` (naming the field and the fix) when the scheduler cannot
        work with the evaluator: ASHA stops Ray Tune trials of epoch-based training, and needs
        more epochs than its grace period."""
        if self.kind != "ray" or self.scheduler == "none":
            return
        if self.resolved_mode(evaluator_kind) != "tune":
            raise ValueError(f"executor.scheduler {self.scheduler!r} stops Ray Tune trials; it "
                             f"needs executor.mode 'tune' (got {self.mode!r} with evaluator "
                             f"kind {evaluator_kind!r}), or set scheduler: none")
        if evaluator_kind != "train" or epochs is None or steps is not None:
            raise ValueError("executor.scheduler 'asha' needs epoch-based training (evaluator "
                             "kind 'train' without train.steps); set scheduler: none")
        if self.asha.grace_period >= epochs:
            raise ValueError(f"executor.asha.grace_period ({self.asha.grace_period}) must be "
                             f"below evaluator.train.epochs ({epochs}), or no candidate can "
                             "be stopped early")


class SupernetExecutorConfig(_LocalOrRay):
    """Where a supernet trains (``executor`` in a supernet config). ``local`` (default): in this
    process. ``ray``: ``training.workers`` data-parallel workers on Ray Train (a local Ray when
    ``address`` is None). ``training.workers > 1`` implies ``ray``. Like a search's executor, it
    is not part of the run's identity.

    No shared file system is needed: the workers train in folders of their own and a relay
    actor carries rank 0's checkpoint and history back to this process, which writes
    ``run_dir`` (:mod:`nastk.executors.ray_train`); each node needs the data set at the
    config's path.
    """

    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker; its "
                                                          "torch uses as many threads "
                                                          "(rounded down, at least 1; "
                                                          "training.num_threads applies "
                                                          "in-process only)")
    gpus_per_worker: float | None = Field(
        None, ge=0, description="GPUs per worker; default 1 when training.device is cuda, "
                                "else 0")

