"""Self-knowledge distillation (SalNAS's Self-KD), for any task, in plain and supernet training.

The teacher is the model's own past: the equal-weight running average of its weights
(parameters and buffers) taken at the end of every epoch whose validation score improved on the
best so far (in a supernet, the largest subnet's score). The score (``score``) is the run's
objective (:class:`~nastk.core.objective.Objective`: a search's ``objective``, a supernet's
``training.objective``; by default the task's primary metric), and "improved" is its
:meth:`~nastk.core.objective.Objective.better`; or ``composite``, SalNAS's validation score
(lower is better, :func:`composite_score`): ``(1 - cc) + kld + (1 - sigmoid(nss)) + (1 - sim) +
(1 - auc_judd)``. From the first such epoch on, every training step learns from a blended
target ``alpha * ground truth + (1 - alpha) * teacher output``; the teacher runs under
``no_grad``, so no gradient reaches it, in eval mode (``teacher_mode: eval``, the default:
running batch-norm statistics) or, as SalNAS runs it, in train mode (``teacher_mode: train``:
batch-norm normalises with the batch's statistics and updates the teacher's running ones;
dropout layers stay off, SalNAS's teacher has none). The task
says how its targets blend (:meth:`nastk.task.contract.Task.blend_targets`: classification mixes the
one-hot labels with the teacher's softmax; saliency mixes density maps and keeps the true
fixations). ``alpha`` is constant, or ``progressive``: the teacher's share grows linearly over
training from 0 to ``1 - alpha``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.errors import NastkError
from nastk.core.objective import Objective

__all__ = ["COMPOSITE_METRICS", "SelfKD", "SelfKDConfig", "WeightAverage", "composite_score"]

#: the metrics SalNAS's composite validation score reads
COMPOSITE_METRICS = ("cc", "kld", "nss", "sim", "auc_judd")


def composite_score(metrics: Mapping[str, float]) -> float:
    """SalNAS's validation score of an epoch, lower is better: ``(1 - cc) + kld +
    (1 - sigmoid(nss)) + (1 - sim) + (1 - auc_judd)``."""
    missing = [m for m in COMPOSITE_METRICS if m not in metrics]
    if missing:
        raise NastkError(f"self_kd's composite score needs the metrics {list(COMPOSITE_METRICS)}, "
                         f"but the evaluation reports no {missing} (it has {sorted(metrics)})")
    m = {k: float(metrics[k]) for k in COMPOSITE_METRICS}
    return ((1.0 - m["cc"]) + m["kld"] + (1.0 - 1.0 / (1.0 + math.exp(-m["nss"])))
            + (1.0 - m["sim"]) + (1.0 - m["auc_judd"]))


class SelfKDConfig(BaseModel):
    """``self_kd:`` in ``evaluator.train`` or a supernet's ``training``."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.5, ge=0.0, le=1.0, description="share of the ground truth in the "
                                                          "blended target (1: no teacher)")
    schedule: Literal["constant", "progressive"] = Field(
        "constant", description="progressive: the teacher's share grows linearly from 0 at the "
                                "start to 1 - alpha at the end of training")
    teacher_mode: Literal["eval", "train"] = Field(
        "eval", description="mode the teacher runs in: eval (running batch-norm statistics) or "
                            "train (batch statistics, as SalNAS; dropout stays off)")
    score: Literal["objective", "composite"] = Field(
        "objective", description="what judges an epoch's improvement: the run's objective, or "
                                 "SalNAS's composite score (1-cc)+kld+(1-sigmoid(nss))+(1-sim)"
                                 "+(1-auc_judd), lower is better (saliency metrics)")

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
        #: the run's objective (its metric is an epoch's score with ``score: objective``)
        self.objective = objective
        #: what improving on the best means for :meth:`score_of`'s values
        self.judge = (objective if config.score == "objective"
                      else Objective(metric="self_kd_composite", direction="min"))
        self.best: float | None = None
        self.average = WeightAverage()
        self.improved_epochs: list[int] = []

    @property
    def teacher(self) -> nn.Module | None:
        return self.average.model

    def score_of(self, metrics: Mapping[str, float]) -> float:
        """An epoch's score from its validation ``metrics``: the objective's metric, or
        :func:`composite_score` (``score: composite``)."""
        if self.config.score == "composite":
            return composite_score(metrics)
        if self.objective.metric not in metrics:
            raise NastkError(f"self_kd judges epochs by {self.objective.metric!r}, but the "
                             f"evaluation split reports only {sorted(metrics)}; set "
                             "objective.metric to one of them")
        return float(metrics[self.objective.metric])

    def end_epoch(self, epoch: int, score: float, model: nn.Module) -> bool:
        """Add ``model``'s weights to the teacher when ``score`` (:meth:`score_of` this
        epoch's metrics) is better than the best so far; returns whether it was. A NaN score
        never is."""
        better = self.judge.better(score, self.best)
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
        teacher.train(self.config.teacher_mode == "train")
        if self.config.teacher_mode == "train":  # batch-stat norms; dropout stays off
            for m in teacher.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd) or getattr(
                        m, "stochastic_regularizer", False):
                    m.eval()
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
