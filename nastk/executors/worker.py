"""What runs inside a Ray worker process: the evaluator, rebuilt from the search config once per
process, and the evaluation of one candidate with its weights sent back as bytes.

Nothing here imports Ray: the same functions run in-process in the tests.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nastk.config.schema import SearchConfig, parse_config
from nastk.core.objective import Objective
from nastk.core.result import Result
from nastk.evaluation.base import Evaluator, format_error
from nastk.evaluation.cost import model_costs
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task.contract import Task
from nastk.training.callbacks import TrainCallback

#: ``on_epoch(epoch, metrics, costs)``: called after every epoch but the last
EpochHook = Callable[[int, dict[str, float], dict[str, float]], None]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the evaluator: the search config (as JSON data), the
    driver's working directory (relative paths in the config resolve against it where it exists
    on the worker's node) and whether training reports per-epoch metrics (for ASHA)."""

    config: dict[str, Any]
    cwd: str
    epoch_reports: bool = False

    @classmethod
    def from_config(cls, config: SearchConfig, epoch_reports: bool = False) -> WorkerSpec:
        return cls(config.model_dump(mode="json"), os.getcwd(), epoch_reports)

    def cache_key(self) -> str:
        return json.dumps([self.config, self.cwd, self.epoch_reports], sort_keys=True)


class EpochReports(TrainCallback):
    """A training callback that passes every epoch's metrics but the last (and the model's
    costs, measured once on the network alone) to ``on_epoch``, so a scheduler such as ASHA can
    stop a poor candidate early. The last epoch is left out: its metrics are the result.

    It runs inside :meth:`nastk.evaluation.train.TrainEvaluator.fit`'s epoch hook (eval mode,
    no gradient, RNG forked), so a candidate that trains to the end gets exactly the result it
    gets without it.
    """

    def __init__(self, task: Task, epochs: int, on_epoch: EpochHook, *, latency: bool = True,
                 latency_repeats: int = 10) -> None:
        self.task, self.epochs, self.on_epoch = task, int(epochs), on_epoch
        self.latency, self.latency_repeats = latency, latency_repeats
        self.costs: dict[str, float] = {}

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: dict[str, float]
                     ) -> bool | None:
        if epoch >= self.epochs:
            return None
        if not self.costs:
            with torch.random.fork_rng():
                self.costs.update(model_costs(model, self.task.input_shape, latency=self.latency,
                                              repeats=self.latency_repeats))
        self.on_epoch(epoch, dict(metrics), dict(self.costs))
        return None


@dataclass
class WorkerContext:
    """The pieces a worker evaluates with, built once per process and config."""

    config: SearchConfig
    space: SearchSpace
    task: Task | None
    objective: Objective
    evaluator: Evaluator

    @classmethod
    def build(cls, spec: WorkerSpec) -> WorkerContext:
        """Import the config's plugins and build space, task, objective and evaluator (a
        supernet checkpoint is loaded here, once)."""
        from nastk.config.compose import build_evaluator, build_objective, build_space_and_task

        enter_driver_cwd(spec)
        config = parse_config(spec.config, "search config sent to a Ray worker")
        space, task = build_space_and_task(config)
        objective = build_objective(config, task)
        evaluator = build_evaluator(config, space, task)
        return cls(config, space, task, objective, evaluator)

    def epoch_reports(self, on_epoch: EpochHook) -> EpochReports:
        """An :class:`EpochReports` callback for this context's train evaluator."""
        assert self.task is not None, "epoch reports need a task"
        train = self.config.evaluator.train
        return EpochReports(self.task, train.epochs, on_epoch, latency=train.latency,
                            latency_repeats=train.latency_repeats)

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
    for a bad candidate."""
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
    except Exception as err:  # evaluators should not raise; a plugin still might
        result = Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
    return result.to_dict(), weights


def with_info(result: Result, **info: Any) -> Result:
    """``result`` with entries added to its ``info``."""
    return Result(result.status, result.metrics, result.costs, result.error, result.duration_s,
                  {**result.info, **info})
