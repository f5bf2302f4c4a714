"""The supernet contract: a body holding every architecture of a space, and the model around it.

A search space that supports weight sharing subclasses :class:`SupernetSpace` and returns a
:class:`SupernetBody` from ``build_supernet``. The body activates one architecture at a time
(``set_active``) and can hand out that architecture as a plain network (``extract``) whose
outputs equal the supernet's. :class:`SupernetModel` puts a task's head around the body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace


class SupernetBody(nn.Module, ABC):
    """A weight-sharing network body. Like a plain body it has ``out_channels`` (and, for dense
    heads, it is also a :class:`nastk.nn.body.StagedBody`); its output channels do not depend on
    the active architecture, so a task's ordinary head fits every sub-network."""

    out_channels: int

    @abstractmethod
    def set_active(self, arch: Architecture) -> None:
        """Make ``arch`` the sub-network that ``forward`` runs."""

    @abstractmethod
    def extract(self, arch: Architecture) -> nn.Module:
        """A plain body (ordinary torch layers, only the active weights, copied) whose output
        equals this supernet's for ``arch``; same ``out_channels`` / ``feature_channels``."""

    def reorganize_channels(self) -> None:
        """Sort channels by importance so that narrow sub-networks keep the most important
        ones (called before shrinking width). Bodies without elastic width keep the default."""


class SupernetSpace(SearchSpace):
    """A search space whose architectures share the weights of one supernet."""

    @abstractmethod
    def build_supernet(self, in_channels: int) -> SupernetBody:
        """The supernet body holding every architecture of this space."""

    def largest(self) -> Architecture:
        """The biggest architecture (the sandwich rule's upper bound): the last option of every
        decision; spaces whose options are not ordered small-to-large override this."""
        return self.validate(self.from_decisions([n - 1 for n in self.decisions()]))

    def smallest(self) -> Architecture:
        """The smallest architecture: the first option of every decision."""
        return self.validate(self.from_decisions([0] * len(self.decisions())))

    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        """A stand-alone body for ``arch`` (extracted from a fresh supernet)."""
        body = self.build_supernet(in_channels)
        arch = self.validate(arch)
        body.set_active(arch)
        return body.extract(arch)


class SupernetModel(nn.Module):
    """A task's network around a supernet body: ``set_active`` then ``forward``; ``extract``
    returns the task's plain network for one architecture with the head weights copied."""

    def __init__(self, space: SupernetSpace, task: object) -> None:
        super().__init__()
        from nastk.task.contract import Task

        if not isinstance(task, Task):
            raise TypeError(f"expected a nastk Task, got {type(task).__name__}")
        self.space = space
        self.task = task
        self.net = task.wrap(space.build_supernet(task.input_shape[0]))
        if not isinstance(getattr(self.net, "body", None), SupernetBody):
            raise TypeError(f"task {task.name!r}: wrap() must keep the body as `.body`")
        self.active: Architecture | None = None

    @property
    def body(self) -> SupernetBody:
        return self.net.body

    def set_active(self, arch: Architecture) -> None:
        arch = self.space.validate(arch)
        self.body.set_active(arch)
        self.active = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError("SupernetModel: call set_active(arch) before forward")
        return self.net(x)

    @torch.no_grad()
    def extract(self, arch: Architecture | None = None) -> nn.Module:
        """The task's plain network for ``arch`` (default: the active one)."""
        arch = self.active if arch is None else self.space.validate(arch)
        if arch is None:
            raise RuntimeError("SupernetModel.extract: no architecture given or active")
        previous = self.active
        self.set_active(arch)
        sub = self.task.wrap(self.body.extract(arch))
        own = self.net.state_dict()
        for name, tensor in sub.state_dict().items():
            if not name.startswith("body."):
                tensor.copy_(own[name])
        if previous is not None:
            self.set_active(previous)
        device = next(self.net.parameters()).device
        return sub.to(device).train(self.training)
