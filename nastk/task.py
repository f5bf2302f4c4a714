"""The task interface: data, the model around a search space's body, loss and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from nastk.space.architecture import Architecture
    from nastk.space.search_space import SearchSpace


class Task(ABC):
    """A learning problem a search can optimise for.

    A task owns its data (a synthetic default that ships plus loaders for real formats), wraps a
    search space's network body with its head, and scores models. ``primary_metric`` and
    ``direction`` define what "better" means unless a config says otherwise.
    """

    name: ClassVar[str] = "task"
    primary_metric: ClassVar[str]
    direction: ClassVar[Literal["max", "min"]] = "max"

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example (C, H, W), used to build models and measure costs."""

    @abstractmethod
    def splits(self) -> dict[str, Dataset]:
        """Datasets by split name; must contain ``train`` and ``val`` (``test`` optional)."""

    @abstractmethod
    def wrap(self, body: nn.Module) -> nn.Module:
        """This task's network around a body (a module with ``out_channels``, as built by a
        search space or a supernet); the result exposes the body as its ``body`` attribute."""

    def build_model(self, space: SearchSpace, arch: Architecture) -> nn.Module:
        """The full network for ``arch``: the space's body plus this task's head."""
        return self.wrap(space.build(arch, self.input_shape[0]))

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch."""

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Loss pulling a student's outputs toward a teacher's (used by in-place distillation in
        supernet training; the teacher's outputs carry no gradient). Default: mean squared
        error; classification-like tasks override it with a KL divergence on soft targets."""
        import torch.nn.functional as F

        return F.mse_loss(student, teacher.detach())

    def kd_losses(self) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """Distillation terms a ``nastk distill`` config may weight, by name; each maps
        (student outputs, teacher outputs) to a scalar and must not backpropagate into the
        teacher. Default: ``{"kd": distillation_loss}``; dense tasks add their own."""
        return {"kd": self.distillation_loss}

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Metrics of ``model`` on ``loader`` (must include ``primary_metric``)."""
