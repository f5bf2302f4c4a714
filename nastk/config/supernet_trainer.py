"""A supernet trainer from a supernet config, built the same way wherever a supernet trains:
``nastk supernet train`` in one process, the same command as the driver of a data-parallel run
(it only checks: the workers train), and every Ray Train worker of that run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nastk.config.compose import build_supernet_model
from nastk.config.schema import SupernetConfig
from nastk.core.errors import ConfigError
from nastk.evaluation.preflight import check_task_data
from nastk.nn.supernet import SupernetModel
from nastk.prediction.path_filter import supernet_sampler_factory
from nastk.run.layout import RunLayout
from nastk.training.data_parallel import DataParallel
from nastk.training.precision import device_for
from nastk.training.supernet import SupernetTrainer

__all__ = ["build_supernet_trainer"]


def _check_before_training(config: SupernetConfig, model: SupernetModel) -> None:
    """Refuse data the task cannot read and phases that unlock unknown dimensions."""
    check_task_data(model.task, ["train", "val"], config.training.batch_size)
    names = [d.name for d in model.space.dimensions]
    for index, phase in enumerate(config.training.schedule()):
        bad = [u for u in phase.unlock or [] if u not in names]
        if bad:
            raise ConfigError(f"training.phases.{index}.unlock: unknown dimensions {bad}; "
                              f"space {model.space.name!r} has {names}")


def build_supernet_trainer(config: SupernetConfig, run_dir: Path, *,
                           data_parallel: DataParallel | None = None,
                           on_driver: bool = False) -> SupernetTrainer:
    """The trainer of ``config`` writing ``run_dir``'s checkpoint: the supernet built with the
    torch RNG seeded by ``config.seed`` (so every process starts from the same weights), its
    path filter's sampler when it has one, and its device and precision.

    The task's data (at this node's path) and the phases are checked first. ``data_parallel``:
    this process is that member of a Ray Train worker group (its torch threads and device are
    set by the caller; only rank 0 writes the checkpoint); without it, this is the process the
    user started. ``on_driver``: this process drives Ray Train workers and only checks (and reads a
    checkpoint): the trainer stays on the CPU in fp32, the training device and precision are
    checked here unless they are CUDA (the cluster's GPUs are checked before workers
    start)."""
    training = config.training
    if on_driver:
        if not training.device.startswith("cuda"):
            device_for(training.device, training.precision, "training")
        training = training.model_copy(update={"device": "cpu", "precision": "fp32"})
    if data_parallel is not None:
        update: dict[str, Any] = {"num_threads": None}  # the caller set this worker's threads
        if data_parallel.device is not None:
            update["device"] = str(data_parallel.device)
        training = training.model_copy(update=update)
    torch.manual_seed(config.seed)
    model = build_supernet_model(config)
    _check_before_training(config, model)
    extra: dict[str, Any] = {}
    if config.path_filter is not None:
        extra["sampler_factory"] = supernet_sampler_factory(config.path_filter, model,
                                                            seed=config.seed)
    main = data_parallel is None or data_parallel.is_main
    checkpoint = RunLayout(run_dir).supernet_checkpoint
    return SupernetTrainer(model, training, seed=config.seed,
                           checkpoint_path=checkpoint if main else None, identity=config,
                           data_parallel=data_parallel, **extra)
