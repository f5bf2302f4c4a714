"""Learning-rate schedules of nastk's training loops: a half cosine from the peak learning rate
to 0, set on every parameter group (times its ``lr_mult``) before each optimizer step.

The curve is the same for both loops, its arithmetic is not, and each keeps its own so that a
given seed still trains the same weights bit for bit:

- :func:`cosine_lr` computes the rate in closed form from the training progress; supernet
  training sets it at every step of a progressive-shrinking phase (:func:`set_lr`);
- :class:`StepwiseCosine` multiplies each group's rate by the ratio of consecutive cosine
  values after every step (:func:`cosine_ratio`), the recursion of torch's
  ``CosineAnnealingLR`` that the train evaluator has always used; rounding makes it differ
  from the closed form in the last bits.

The train evaluator also offers DeepLab's **poly** schedule (``train.lr_schedule: poly``):
:class:`StepwisePoly` sets every group's rate before step ``i`` (from 0) of ``total`` to
``peak * (1 - i / total) ** power`` (:func:`poly_lr`; power 0.9, per iteration, as AICSD and
pytorch-deeplab-xception do), in closed form from each group's peak.
"""

from __future__ import annotations

import math

import torch

__all__ = ["StepwiseCosine", "StepwisePoly", "cosine_lr", "cosine_ratio", "poly_lr", "set_lr"]


def cosine_lr(peak: float, progress: float) -> float:
    """``peak`` annealed to 0 along a half cosine at ``progress`` in [0, 1] (held at 0 after
    1)."""
    return 0.5 * peak * (1 + math.cos(math.pi * min(progress, 1.0)))


def poly_lr(peak: float, progress: float, power: float = 0.9) -> float:
    """``peak * (1 - progress) ** power`` at ``progress`` in [0, 1] (0 after 1)."""
    return peak * max(0.0, 1.0 - progress) ** power


def cosine_ratio(step: int, total: int) -> float:
    """The rate at ``step`` (from 1) over the rate at ``step - 1`` of a half cosine over
    ``total`` steps."""
    return (1 + math.cos(math.pi * step / total)) / (1 + math.cos(math.pi * (step - 1) / total))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set every parameter group's rate to ``lr`` times the group's ``lr_mult``; returns
    ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr


class StepwiseCosine:
    """Anneals every parameter group of ``optimizer`` from its current rate (its peak) to 0
    over ``total`` optimizer steps (held at 0 after): call :meth:`advance` after each step."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int) -> None:
        if total < 1:
            raise ValueError(f"a schedule needs at least one step, got total={total}")
        self.optimizer = optimizer
        self.total = total
        #: optimizer steps taken so far
        self.steps = 0

    def advance(self) -> None:
        """One optimizer step was taken: lower every group's rate to the next step's."""
        self.steps += 1
        ratio = cosine_ratio(self.steps, self.total) if self.steps <= self.total else 0.0
        for group in self.optimizer.param_groups:
            group["lr"] = ratio * group["lr"]


class StepwisePoly:
    """DeepLab's poly schedule over ``total`` optimizer steps: after the ``i``-th step
    (:meth:`advance`), every group's rate is ``peak * (1 - i / total) ** power``, ``peak``
    being the group's rate when the schedule was made (0 after ``total`` steps)."""

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, power: float = 0.9) -> None:
        if total < 1:
            raise ValueError(f"a schedule needs at least one step, got total={total}")
        self.optimizer = optimizer
        self.total = total
        self.power = power
        self.peaks = [group["lr"] for group in optimizer.param_groups]
        #: optimizer steps taken so far
        self.steps = 0

    def advance(self) -> None:
        """One optimizer step was taken: set every group's rate for the next one."""
        self.steps += 1
        for group, peak in zip(self.optimizer.param_groups, self.peaks, strict=False):
            group["lr"] = poly_lr(peak, self.steps / self.total, self.power)
