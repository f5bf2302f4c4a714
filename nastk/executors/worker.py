"""What runs inside a Ray worker process: the evaluator, rebuilt from the search config once per
process, and the evaluation of one candidate with its weights sent back as bytes.

Nothing here imports Ray: the same functions run in-process in the tests.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nastk.config import SearchConfig, parse_config
from nastk.cost import model_costs
from nastk.evaluation.base import Evaluator, format_error
from nastk.evaluation.result import Result
from nastk.evaluation.train import LossFn, Progress, TrainConfig, TrainEvaluator
from nastk.objective import Objective
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task import Task

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


class EpochReportingTrainEvaluator(TrainEvaluator):
    """A :class:`TrainEvaluator` that also scores the model on the evaluation split after every
    epoch but the last and passes the metrics (and the model's costs) to ``on_epoch``, so a
    scheduler such as ASHA can stop a poor candidate early.

    The extra scoring runs in eval mode without gradients and with the torch RNG forked, so a
    candidate that trains to the end gets exactly the result :class:`TrainEvaluator` gives it.
    Intermediate metrics use the batch-norm running statistics as they are (no recalibration);
    the final ones are computed as usual.
    """

    def __init__(self, task: Task, space: SearchSpace, config: TrainConfig | None = None,
                 seed: int = 0,
                 on_epoch: EpochHook | None = None) -> None:
        super().__init__(task, space, config, seed)
        self.on_epoch = on_epoch

    def fit(self, model: nn.Module, seed: int, *, loss_fn: LossFn | None = None,
            progress: Progress | None = None) -> tuple[dict[str, float], float, int]:
        hook = self.on_epoch
        if hook is None:
            return super().fit(model, seed, loss_fn=loss_fn, progress=progress)
        c = self.config
        costs: dict[str, float] = {}
        device = torch.device(c.device)
        rng_devices = ([device.index if device.index is not None else torch.cuda.current_device()]
                       if device.type == "cuda" else [])

        def progress_and_epochs(step: int, total: int) -> None:
            if progress is not None:
                progress(step, total)
            per_epoch = max(total // c.epochs, 1)
            if step % per_epoch or step >= total:
                return
            with torch.random.fork_rng(devices=rng_devices):
                if not costs:
                    costs.update(model_costs(model, self.task.input_shape, latency=c.latency,
                                             repeats=c.latency_repeats))
                metrics = self.score(model, c.eval_split)
            hook(step // per_epoch, metrics, dict(costs))

        return super().fit(model, seed, loss_fn=loss_fn, progress=progress_and_epochs)


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
        from nastk.experiment import build_evaluator, build_objective, build_space_and_task

        enter_driver_cwd(spec)
        config = parse_config(spec.config, "search config sent to a Ray worker")
        space, task = build_space_and_task(config)
        objective = build_objective(config, task)
        evaluator: Evaluator
        if spec.epoch_reports:
            assert task is not None
            evaluator = EpochReportingTrainEvaluator(task, space, config.evaluator.train,
                                                     seed=config.seed)
        else:
            evaluator = build_evaluator(config, space, task)
        return cls(config, space, task, objective, evaluator)

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


def evaluate_candidate(evaluator: Evaluator, arch_json: str,
                       want_weights: bool) -> tuple[dict[str, Any], bytes | None]:
    """Evaluate one candidate; returns ``(Result.to_dict(), weights)``, where ``weights`` are
    the bytes of the checkpoint the evaluator wrote (``None`` unless ``want_weights`` and the
    candidate completed). Never raises for a bad candidate."""
    t0 = time.perf_counter()
    weights: bytes | None = None
    try:
        arch = Architecture.from_json(arch_json)
        with tempfile.TemporaryDirectory(prefix="nastk-weights-") as tmp:
            ckpt = Path(tmp) / "weights.pt" if want_weights else None
            result = evaluator.evaluate(arch, checkpoint=ckpt)
            if ckpt is not None and result.ok and ckpt.is_file():
                weights = ckpt.read_bytes()
    except Exception as err:  # evaluators should not raise; a plugin still might
        result = Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
    return result.to_dict(), weights


def with_info(result: Result, **info: Any) -> Result:
    """``result`` with entries added to its ``info``."""
    return Result(result.status, result.metrics, result.costs, result.error, result.duration_s,
                  {**result.info, **info})
