"""What runs inside a Ray worker process: the evaluator, built by the search's evaluator factory
once per process, and the evaluation of one candidate with its weights sent back as bytes.

Nothing here imports Ray: the same functions run in-process in the tests.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nastk.core.errors import RunStoppingError
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.evaluation.base import Evaluator, format_error
from nastk.space.architecture import Architecture
from nastk.training.callbacks import TrainCallback


class EvaluatorFactory(Protocol):
    """What an executor sends its workers instead of an evaluator: a picklable callable that
    builds, once per worker process, the evaluator a search evaluates with.

    ``key`` names what it builds: two factories with one key build the same evaluator, so a
    worker (a Tune actor reused across trials, a pool actor) builds it once. A search built
    from a config sends :class:`nastk.config.factory.ConfigEvaluatorFactory` (it imports the
    config's plugins and builds from the config in the worker); a search built in Python sends
    :class:`InstanceFactory` (the evaluator itself, pickled by Ray's cloudpickle).
    """

    @property
    def key(self) -> str: ...

    def __call__(self) -> Evaluator: ...


@dataclass(frozen=True)
class InstanceFactory:
    """The evaluator object itself as a factory: what a search built in Python sends to its
    workers (the evaluator and everything it holds must pickle; a plain function defined in
    ``__main__`` does, through cloudpickle)."""

    evaluator: Evaluator
    key: str = field(default_factory=lambda: f"instance:{uuid.uuid4().hex}")

    def __call__(self) -> Evaluator:
        return self.evaluator


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs: the evaluator ``factory``, the search's ``objective`` (Tune scores
    results by it), the driver's working directory (relative paths resolve against it where it
    exists on the worker's node)."""

    factory: EvaluatorFactory
    objective: Objective
    cwd: str = field(default_factory=os.getcwd)

    def cache_key(self) -> str:
        return json.dumps([self.factory.key, self.cwd])


@dataclass
class WorkerContext:
    """The evaluator a worker evaluates with, built once per process and factory."""

    objective: Objective
    evaluator: Evaluator

    @classmethod
    def build(cls, spec: WorkerSpec) -> WorkerContext:
        """Build the evaluator with ``spec.factory`` (in the driver's working directory, when
        this node has it)."""
        enter_driver_cwd(spec)
        return cls(spec.objective, spec.factory())

    @classmethod
    def get(cls, spec: WorkerSpec) -> WorkerContext:
        """The context for ``spec``, built on first use in this process."""
        key = spec.cache_key()
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            ctx = _CONTEXTS[key] = cls.build(spec)
        return ctx


_CONTEXTS: dict[str, WorkerContext] = {}


def enter_driver_cwd(spec: WorkerSpec) -> None:
    """Change to the driver's working directory if this node has it (so relative paths in the
    config mean the same thing as on the driver)."""
    if os.path.isdir(spec.cwd) and os.getcwd() != spec.cwd:
        os.chdir(spec.cwd)


def evaluate_candidate(evaluator: Evaluator, arch_json: str, want_weights: bool,
                       callbacks: Sequence[TrainCallback] = ()
                       ) -> tuple[dict[str, Any], bytes | None]:
    """Evaluate one candidate; returns ``(Result.to_dict(), weights)``, where ``weights`` are
    the bytes of the checkpoint the evaluator wrote (``None`` unless ``want_weights`` and the
    candidate completed). ``callbacks`` go to a training evaluator's epoch hook. Never raises
    for a bad candidate; a :class:`~nastk.core.errors.RunStoppingError` (a full disk, an
    unreadable data file on this node) is raised, to stop the search."""
    t0 = time.perf_counter()
    weights: bytes | None = None
    try:
        arch = Architecture.from_json(arch_json)
        with tempfile.TemporaryDirectory(prefix="nastk-weights-") as tmp:
            ckpt = Path(tmp) / "weights.pt" if want_weights else None
            result = (evaluator.evaluate(arch, checkpoint=ckpt, callbacks=list(callbacks))
                      if callbacks else evaluator.evaluate(arch, checkpoint=ckpt))
            if ckpt is not None and result.ok and ckpt.is_file():
                weights = ckpt.read_bytes()
    except RunStoppingError:
        raise
    except Exception as err:  # evaluators should not raise; a plugin still might
        result = Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
    return result.to_dict(), weights


def evaluate_rung(evaluator: Evaluator, arch_json: str, want_weights: bool, resource: float,
                  state_bytes: bytes | None = None
                  ) -> tuple[dict[str, Any], bytes | None, bytes | None]:
    """Evaluate one rung of a scheduler's candidate: ``evaluator.evaluate_at(arch, resource)``,
    continuing from the partial training ``state_bytes`` (the bytes of the file the previous
    rung wrote; ``None`` for a first rung or an evaluator that does not resume). Returns
    ``(Result.to_dict(), weights, state)``: ``weights`` as in :func:`evaluate_candidate`,
    ``state`` the bytes of the partial training the evaluator wrote for the next rung (``None``
    when it wrote none). No file system is shared with the driver: everything travels as bytes
    and lives here in a temporary folder. Never raises for a bad candidate; a
    :class:`~nastk.core.errors.RunStoppingError` is raised, to stop the search."""
    t0 = time.perf_counter()
    weights: bytes | None = None
    state_out_bytes: bytes | None = None
    try:
        arch = Architecture.from_json(arch_json)
        with tempfile.TemporaryDirectory(prefix="nastk-rung-") as tmp:
            ckpt = Path(tmp) / "weights.pt" if want_weights else None
            state: Path | None = None
            if state_bytes is not None:
                state = Path(tmp) / "state_in.pt"
                state.write_bytes(state_bytes)
            state_out = Path(tmp) / "state_out.pt"
            result = evaluator.evaluate_at(  # type: ignore[attr-defined]
                arch, float(resource), checkpoint=ckpt, state=state, state_out=state_out)
            if ckpt is not None and result.ok and ckpt.is_file():
                weights = ckpt.read_bytes()
            if state_out.is_file():
                state_out_bytes = state_out.read_bytes()
    except RunStoppingError:
        raise
    except Exception as err:  # evaluators should not raise; a plugin still might
        result = Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
    return result.to_dict(), weights, state_out_bytes


def rung_payload(candidate: Any) -> tuple[float, bytes | None]:
    """``(resource, state bytes)`` to send with a scheduler's candidate (a
    :class:`nastk.run.loop.Candidate` with ``rung`` set): the bytes of ``state_in`` when the
    driver holds that file, else ``None`` (a first rung, or an evaluator that does not
    resume)."""
    state_in = candidate.state_in
    data = state_in.read_bytes() if state_in is not None and Path(state_in).is_file() else None
    return float(candidate.resource), data


def keep_rung_state(candidate: Any, state: bytes | None) -> None:
    """Write the partial training a worker sent back to ``candidate.state_out`` (atomically),
    where the next rung's candidate finds it as its ``state_in``."""
    if state and candidate.state_out is not None:
        from nastk.core.weights import write_atomic

        write_atomic(candidate.state_out, bytes(state))


def with_info(result: Result, **info: Any) -> Result:
    """``result`` with entries added to its ``info``."""
    return Result(result.status, result.metrics, result.costs, result.error, result.duration_s,
                  {**result.info, **info})
