"""How a supernet is trained: ``training:`` in a supernet config (its progressive-shrinking
phases, the optimiser, the sandwich, precision and Self-KD), read by
:class:`~nastk.training.supernet.SupernetTrainer`."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from nastk.core.cpus import THREADS_HELP, Threads
from nastk.core.errors import ConfigError
from nastk.core.objective import Objective
from nastk.training.optim import OptimizerKind
from nastk.training.precision import Precision
from nastk.training.pretrained import InitConfig
from nastk.training.self_kd import SelfKDConfig

if TYPE_CHECKING:
    from nastk.task.contract import Task

__all__ = ["NOT_IDENTITY", "EpochObjective", "Phase", "SupernetTrainConfig"]


class EpochObjective(BaseModel):
    """``training.objective``: the validation metric of the largest sub-network that judges a
    supernet training's epochs (Self-KD's teacher epochs, the best epoch), and its direction."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(None, description="a metric the task reports (default: its "
                                                 "primary metric)")
    direction: Literal["max", "min"] | None = Field(
        None, description="default: the task's direction, for its primary metric only (another "
                          "metric must say)")

    def resolve(self, task: Task) -> Objective:
        """The objective for ``task``. Raises :class:`~nastk.core.errors.ConfigError` naming
        the metric and the ones the task reports when the task does not report it (a task that
        declares no metrics is checked at the first evaluation instead), or when a metric
        other than the primary one has no direction."""
        metric = self.metric or task.primary_metric
        reported = [m for m in task.metric_names() if m != "train_loss"]
        if reported and metric not in reported:
            close = difflib.get_close_matches(metric, reported, n=1)
            raise ConfigError(f"training.objective.metric: {metric!r} is not a metric of task "
                              f"{task.name!r}; a supernet's epochs can be judged by {reported}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
        if self.direction is None and metric != task.primary_metric:
            raise ConfigError(f"training.objective.direction: say whether {metric!r} is "
                              "maximised or minimised (max or min); only the task's primary "
                              f"metric {task.primary_metric!r} has a known direction")
        return Objective(metric=metric, direction=self.direction or task.direction)


class Phase(BaseModel):
    """One progressive-shrinking phase: ``epochs`` of training in which only the ``unlock``ed
    dimensions vary; every other dimension stays at the largest architecture's value."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(ge=1)
    unlock: list[str] | None = Field(None, description="dimensions sampled in this phase; "
                                                       "null = all")
    lr: float | None = Field(None, gt=0, description="peak lr of this phase (default: lr)")


class SupernetTrainConfig(BaseModel):
    """How a supernet is trained (``training:`` in a supernet config)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(5, ge=1, description="used when no phases are given")
    phases: list[Phase] = Field(default_factory=list,
                                description="progressive shrinking; default one phase, all "
                                            "dimensions elastic")
    batch_size: int = Field(64, ge=1, description="images per optimizer step, over all "
                                                  "workers together")
    workers: int = Field(1, ge=1, description="data-parallel workers on Ray Train; each takes "
                                              "batch_size / workers images of every step. Not "
                                              "part of the run's identity: a run may resume on "
                                              "another number of workers")
    sync_batchnorm: bool = Field(
        False, description="workers > 1: true normalises over the global batch of a step (one "
                           "small all-reduce per batch-norm layer and pass), so N workers "
                           "train exactly what one worker with the whole batch would; false: "
                           "each worker normalises its own shard, as DistributedDataParallel "
                           "does (no per-layer collectives; the shard must not be tiny)")
    max_failures: int = Field(2, ge=0, description="workers > 1: times the worker group is "
                                                   "restarted from the last checkpoint after a "
                                                   "worker dies")
    optimizer: OptimizerKind = "sgd"
    lr: float = Field(0.05, gt=0, description="peak lr, cosine-annealed within each phase")
    momentum: float = Field(0.9, ge=0, le=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0, description="not applied to BN and biases")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm per step")
    sampling: Literal["sandwich", "random"] = Field(
        "sandwich", description="sandwich: largest + smallest + n_random per step; random: "
                                "n_random random subnets per step")
    n_random: int = Field(2, ge=0, description="random subnets per step")
    inplace_distill: bool = Field(True, description="the largest subnet's (detached) output "
                                                    "teaches the others")
    distill_weight: float = Field(1.0, ge=0, le=1, description="weight of the distillation "
                                                               "term vs the task loss")
    reorganize_channels_at_phase: bool = Field(
        True, description="sort channels by importance when a phase starts")
    temperature_start: float = Field(30.0, gt=0, description="attention-mixed dynamic convs: "
                                                              "softmax temperature at the start")
    temperature_end: float = Field(1.0, gt=0, description="... and after temperature_epochs")
    temperature_epochs: float = Field(10.0, gt=0, description="epochs of linear annealing")
    bn_calib_batches: int = Field(10, ge=1, description="training batches used to "
                                                        "recalibrate BN before each evaluation")
    num_threads: Threads = Field("auto", description="torch CPU threads (in-process "
                                 "training; a Ray Train worker uses its reserved CPUs); "
                                 + THREADS_HELP)
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:N (with workers > 1 "
                                           "on Ray, each worker gets its own GPU)")
    precision: Precision = Field(
        "fp32", description="forward passes in fp32; bf16 (bfloat16 autocast, CPU or CUDA); "
                            "fp16 (float16 autocast with loss scaling, CUDA only)")
    init: InitConfig | None = Field(
        None, description="start from pretrained weights, e.g. a classification supernet's "
                          "checkpoint: {from: FILE, part: body | all}")
    lr_mult: dict[str, float] = Field(
        default_factory=dict, description="learning-rate multipliers by part of the model, "
                                          "e.g. {body: 0.1}")
    objective: EpochObjective = Field(
        default_factory=EpochObjective,
        description="what judges the epochs (Self-KD's teacher epochs, the best epoch in the "
                    "history and checkpoint): a validation metric of the largest subnet and "
                    "its direction; default: the task's primary metric")
    self_kd: SelfKDConfig | None = Field(
        None, description="self-distillation: every subnet learns from alpha x ground truth + "
                          "(1 - alpha) x the largest subnet of the average of the epochs whose "
                          "largest-subnet validation score improved (by objective)")

    def schedule(self) -> list[Phase]:
        return list(self.phases) or [Phase(epochs=self.epochs)]

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.schedule())


#: training settings that do not change what is trained: a run may resume with others
NOT_IDENTITY = ("workers", "max_failures")
