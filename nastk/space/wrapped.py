"""A space that narrows another one: :class:`WrappedSpace`, the base of cost constraints
(:class:`~nastk.space.cost_range.CostRangeSpace`) and path-filter pruning
(``nastk.predictors.path_filter.PrunedSpace``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

if TYPE_CHECKING:
    from torch import nn

    from nastk.nn.layouts import KeyTable

__all__ = ["WrappedSpace"]


class WrappedSpace(SearchSpace):
    """``base`` with fewer valid architectures: the same dimensions, and everything about an
    architecture's form and its network is ``base``'s -- the canonical form, the encoding, the
    network built, its rendering, the cost table, the public checkpoint layouts, and any
    attribute the wrapper lacks (e.g. ``largest``, ``build_supernet``). A subclass narrows
    :meth:`check_constraints` (calling ``base``'s first) and, if it must, :meth:`sample`;
    :meth:`size` is ``base``'s, an upper bound, unless the subclass knows better."""

    def __init__(self, base: SearchSpace, name: str | None = None) -> None:
        super().__init__(base.dimensions, name=base.name if name is None else name)
        self.base = base

    @property  # type: ignore[override]
    def public_formats(self) -> tuple[str, ...]:
        return self.base.public_formats

    @property  # type: ignore[override]
    def hyperparameters(self) -> tuple[str, ...]:
        return self.base.hyperparameters

    def __getattr__(self, name: str) -> Any:
        base = self.__dict__.get("base")
        if base is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(base, name)

    def check_constraints(self, arch: Architecture) -> None:
        self.base.check_constraints(arch)

    def size(self) -> int | float:
        return self.base.size()

    def canonical(self, arch: Architecture) -> Architecture:
        return self.base.canonical(arch)

    def encode(self, arch: Architecture) -> np.ndarray:
        return self.base.encode(arch)

    def encoding_size(self) -> int:
        return self.base.encoding_size()

    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        return self.base.build(arch, in_channels)

    def render(self, arch: Architecture) -> str | None:
        return self.base.render(arch)

    def public_layout(self, fmt: str, arch: Architecture | None = None) -> KeyTable:
        return self.base.public_layout(fmt, arch)

    def body_costs(self, arch: Architecture,
                   input_shape: Sequence[int]) -> dict[str, float] | None:
        return self.base.body_costs(arch, input_shape)

    def body_geometry(self, arch: Architecture, input_shape: Sequence[int]) -> tuple[Any, ...]:
        return self.base.body_geometry(arch, input_shape)
