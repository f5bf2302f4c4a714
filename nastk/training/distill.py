"""Knowledge distillation for any task: a frozen teacher, the task's distillation terms, and
Adaptive Loss Weighting (ALW) that moves weight from the teacher to the ground truth.

This module holds the ``nastk distill`` config (:class:`DistillConfig`), the ALW schedule and
the loss; the command itself is :mod:`nastk.cli.commands.distill`. The teacher stays in eval mode
under ``torch.no_grad()``: its batch-norm statistics never drift and no gradient reaches it.

Loss of a batch at training progress ``p`` (fraction of steps done), with the task's loss
``L_gt``, the configured terms ``L_k`` weighted by ``losses: {k: lambda_k}`` and
``KD = sum_k lambda_k L_k``:

- ALW off: ``L = L_gt + KD``;
- ALW on:  ``L = (1 - a(p)) L_gt + a(p) KD``, where the teacher's share ``a(p)`` follows the
  configured schedule from ``start`` to ``end`` (AICSD fades the teacher out linearly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nastk.config.schema import PluginRef, RunConfig
from nastk.core.errors import ConfigError
from nastk.evaluation.train import TrainConfig
from nastk.task.contract import Task
from nastk.task.losses import combine_loss

__all__ = ["ALWSchedule", "DistillConfig", "ModelSpec", "TeacherSpec", "distill_loss_fn"]


class ALWSchedule(BaseModel):
    """Adaptive Loss Weighting: the teacher's share ``a(p)`` of the loss over training
    progress ``p`` in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="off: L = L_gt + KD (no fading)")
    schedule: Literal["linear", "cosine", "step", "constant"] = "linear"
    start: float = Field(0.9, ge=0.0, le=1.0, description="teacher share at the start")
    end: float = Field(0.1, ge=0.0, le=1.0, description="teacher share at the end")
    hold: float = Field(0.0, ge=0.0, lt=1.0,
                        description="fraction of training held at `start` before moving "
                                    "(linear, cosine); for step: where the share drops to `end`")

    def teacher_weight(self, progress: float) -> float:
        """``a(progress)``: the teacher term's share of the loss."""
        p = min(max(float(progress), 0.0), 1.0)
        if self.schedule == "constant":
            return self.start
        if self.schedule == "step":
            return self.start if p < self.hold else self.end
        q = min(max((p - self.hold) / (1.0 - self.hold), 0.0), 1.0)
        if self.schedule == "linear":
            return self.start + (self.end - self.start) * q
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * q))


class ModelSpec(BaseModel):
    """One network: a search space and an architecture of it, given inline (``arch``) or read
    from ``arch_from`` — a search run directory (its best trial) or an ``arch.json`` written by
    ``nastk export``."""

    model_config = ConfigDict(extra="forbid")

    space: PluginRef
    arch: dict[str, Any] | None = None
    arch_from: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.arch is None) == (self.arch_from is None):
            raise ValueError("give exactly one of `arch` (a mapping of dimension values) or "
                             "`arch_from` (a search run_dir or an arch.json)")
        return self


class TeacherSpec(ModelSpec):
    """The teacher: its network, its checkpoint, and how to train it when the checkpoint does
    not exist yet."""

    checkpoint: Path = Field(description="weights-only state dict; trained and written here "
                                         "first when missing")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="used only to train a missing teacher")


class DistillConfig(RunConfig):
    """``nastk distill CONFIG``: train a student with a teacher's help, and without it."""

    name: str = Field("distill", min_length=1)
    task: PluginRef
    student: ModelSpec
    teacher: TeacherSpec
    losses: dict[str, float] = Field(
        default_factory=lambda: {"kd": 1.0},
        description="distillation terms of the task and their weights (lambda)")
    alw: ALWSchedule = Field(default_factory=ALWSchedule)
    train: TrainConfig = Field(default_factory=TrainConfig, description="student training")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    baseline: bool = Field(True, description="also train the student without the teacher")
    splits: list[str] = Field(default_factory=lambda: ["val", "test"], min_length=1,
                              description="splits scored after training (those that exist)")

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        bad = {k: v for k, v in self.losses.items() if v < 0}
        if bad:
            raise ValueError(f"losses: weights must be >= 0, got {bad}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} repeat a value")
        return self


def distill_loss_fn(task: Task, teacher: nn.Module, losses: dict[str, float],
                    alw: ALWSchedule, trace: list[tuple[float, float]] | None = None
                    ) -> Callable[[Any, Any, torch.Tensor, float], dict[str, torch.Tensor]]:
    """The training loss with a teacher (see the module docstring), as named terms: the task's
    own terms (``task`` when its loss is one tensor), scaled by ``1 - a(p)`` under ALW, and
    ``distill_<name>`` for every weighted distillation term, scaled by ``a(p)``; their sum is
    the loss. ``trace`` collects ``(progress, teacher share)`` pairs."""
    available = task.kd_losses()
    unknown = sorted(set(losses) - set(available))
    if unknown:
        raise ConfigError(f"losses: {unknown} not offered by task {task.name!r}; it offers "
                          f"{sorted(available)}")
    weighted = [(k, available[k], w) for k, w in losses.items() if w > 0]

    def loss_fn(out: Any, targets: Any, inputs: torch.Tensor,
                progress: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            t_out = teacher(inputs)
        gt, gt_terms = combine_loss(task.loss(out, targets))
        own = gt_terms or {"task": gt}
        kd = {f"distill_{k}": w * f(out, t_out) for k, f, w in weighted}
        if not alw.enabled:
            return {**own, **kd}
        a = alw.teacher_weight(progress)
        if trace is not None:
            trace.append((progress, a))
        return {**{k: (1.0 - a) * v for k, v in own.items()},
                **{k: a * v for k, v in kd.items()}}

    return loss_fn
