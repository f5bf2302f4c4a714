"""Self-knowledge distillation (SalNAS's Self-KD), for any task, in plain and supernet training.

The teacher is the model's own past: the equal-weight running average of its weights
(parameters and buffers) taken at the end of every epoch whose validation score improved on the
best so far (in a supernet, the largest subnet's score). The score is the run's objective
(:class:`~nastk.core.objective.Objective`: a search's ``objective``, a supernet's
``training.objective``; by default the task's primary metric), and "improved" is its
:meth:`~nastk.core.objective.Objective.better`. From the first such epoch on, every
training step learns from a blended target ``alpha * ground truth + (1 - alpha) * teacher
output``; the teacher runs in eval mode under ``no_grad``, so no gradient reaches it. The task
says how its targets blend (:meth:`nastk.task.contract.Task.blend_targets`: classification mixes the
one-hot labels with the teacher's softmax; saliency mixes density maps and keeps the true
fixations). ``alpha`` is constant, or ``progressive``: the teacher's share grows linearly over
training from 0 to ``1 - alpha``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.objective import Objective

__all__ = ["SelfKD", "SelfKDConfig", "WeightAverage"]


class SelfKDConfig(BaseModel):
    """``self_kd:`` in ``evaluator.train`` or a supernet's ``training``."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.5, ge=0.0, le=1.0, description="share of the ground truth in the "
                                                          "blended target (1: no teacher)")
    schedule: Literal["constant", "progressive"] = Field(
        "constant", description="progressive: the teacher's share grows linearly from 0 at the "
                                "start to 1 - alpha at the end of training")

    def ground_truth_share(self, progress: float) -> float:
        """``alpha`` at training progress ``progress`` in [0, 1]."""
        if self.schedule == "constant":
            return self.alpha
        p = min(max(float(progress), 0.0), 1.0)
        return 1.0 - p * (1.0 - self.alpha)


class WeightAverage:
    """The equal-weight running average of a model's weights over the snapshots it is given:
    after ``n`` calls of :meth:`add`, every floating-point parameter and buffer of
    :attr:`model` is the mean of the ``n`` snapshots (integer buffers, such as batch norm's
    step count, are the latest snapshot's)."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.n = 0

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        if self.model is None:
            self.model = copy.deepcopy(model)
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.model.eval()
            self.n = 1
            return
        self.n += 1
        own = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = own[name]
            if target.is_floating_point():
                target.add_((value.detach().to(target) - target) / self.n)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """For checkpoints: the averaged weights and the number of snapshots."""
        if self.model is None:
            return {"n": 0}
        return {"n": self.n, "weights": {k: v.detach().cpu() for k, v in
                                         self.model.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any], like: nn.Module) -> None:
        """Restore from :meth:`state_dict`; ``like`` is a model of the same structure."""
        self.n = int(state.get("n", 0))
        if not self.n:
            self.model = None
            return
        self.model = copy.deepcopy(like)
        self.model.load_state_dict(state["weights"])
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()


class SelfKD:
    """The running state of Self-KD in one training run: the best validation score so far by
    ``objective`` and the teacher (a :class:`WeightAverage` of the improving epochs'
    weights)."""

    def __init__(self, config: SelfKDConfig, objective: Objective) -> None:
        self.config = config
        #: what an epoch's score is (its metric) and what improving on the best means
        self.objective = objective
        self.best: float | None = None
        self.average = WeightAverage()
        self.improved_epochs: list[int] = []

    @property
    def teacher(self) -> nn.Module | None:
        return self.average.model

    def end_epoch(self, epoch: int, score: float, model: nn.Module) -> bool:
        """Add ``model``'s weights to the teacher when ``score`` (the value of the objective's
        metric this epoch) is better than the best so far; returns whether it was. A NaN score
        never is."""
        better = self.objective.better(score, self.best)
        if better:
            self.best = float(score)
            self.average.add(model)
            self.improved_epochs.append(int(epoch))
        return better

    @torch.no_grad()
    def teacher_outputs(self, inputs: torch.Tensor,
                        prepare: Any = None) -> Any:
        """The teacher's outputs for ``inputs`` (no gradient); ``prepare(teacher)`` is called
        first (a supernet teacher activates its largest subnet there)."""
        teacher = self.teacher
        assert teacher is not None
        if prepare is not None:
            prepare(teacher)
        return teacher(inputs)

    def blend(self, task: Any, targets: Any, inputs: torch.Tensor, progress: float,
              prepare: Any = None) -> Any:
        """The training target of a batch: ``targets`` unchanged before the first improving
        epoch, else the task's blend with the teacher's outputs."""
        if self.teacher is None:
            return targets
        alpha = self.config.ground_truth_share(progress)
        if alpha >= 1.0:
            return targets
        return task.blend_targets(targets, self.teacher_outputs(inputs, prepare), alpha)
