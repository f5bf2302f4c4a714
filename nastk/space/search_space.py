"""SearchSpace: a named list of dimensions, the operations strategies need, and model building."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Dimension, dimension_from_spec

if TYPE_CHECKING:
    import torch.nn as nn

    from nastk.nn.layouts import KeyTable


class SearchSpace:
    """A product of dimensions.

    Strategies only use the methods defined here (``sample``, ``mutate``, ``crossover``,
    ``neighbours``, ``encode``, the decision view), so any space works with any strategy.
    Spaces that describe networks subclass this and implement :meth:`build`.
    """

    name: str = "space"

    def __init__(self, dimensions: Sequence[Dimension], name: str | None = None) -> None:
        if name is not None:
            self.name = name
        dims = list(dimensions)
        if not dims:
            raise ValueError(f"search space {self.name!r}: needs at least one dimension")
        names = [d.name for d in dims]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"search space {self.name!r}: duplicate dimension names {sorted(dup)}")
        self.dimensions: tuple[Dimension, ...] = tuple(dims)
        self._by_name = {d.name: d for d in dims}

    # -- introspection ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Dimension:
        return self._by_name[name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.dimensions)} dimensions)"

    def describe(self) -> dict[str, str]:
        """Dimension name -> allowed values in words."""
        return {d.name: d.describe() for d in self.dimensions}

    def render(self, arch: Architecture) -> str | None:
        """Compact one-line text of ``arch`` for leaderboards and reports; ``None`` (the
        default) means the generic ``name=value`` listing. Spaces with many dimensions
        override it (nas_segm prints its genotype)."""
        return None

    def spec(self) -> dict[str, Any]:
        """JSON description of the dimensions (enough to rebuild a plain SearchSpace)."""
        return {"name": self.name, "dimensions": [d.spec() for d in self.dimensions]}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SearchSpace:
        return SearchSpace([dimension_from_spec(d) for d in spec["dimensions"]],
                           name=spec.get("name", "space"))

    def size(self) -> int:
        """Number of distinct valid architectures (exact; may be a very large int)."""
        return math.prod(d.size() for d in self.dimensions)

    # -- validation ---------------------------------------------------------------------------
    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        """Return the canonical :class:`Architecture` or raise an error naming the bad dimension
        and its allowed values."""
        values = dict(arch)
        missing = [d.name for d in self.dimensions if d.name not in values]
        extra = sorted(set(values) - set(self._by_name))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing dimensions {missing}")
            if extra:
                parts.append(f"unknown dimensions {extra}")
            raise InvalidArchitectureError(
                f"search space {self.name!r}: {'; '.join(parts)}; expected exactly "
                f"{[d.name for d in self.dimensions]}")
        out = {}
        for d in self.dimensions:
            try:
                out[d.name] = d.validate(values[d.name])
            except InvalidArchitectureError as err:
                raise InvalidArchitectureError(f"search space {self.name!r}: {err}") from None
        arch_out = self.canonical(Architecture(out))
        self.check_constraints(arch_out)
        return arch_out

    def canonical(self, arch: Architecture) -> Architecture:
        """The one form of the architectures that make the same network (e.g. the choices of a
        block beyond its stage's depth held at the first option), so that one network has one
        key and is never evaluated twice; ``arch`` itself by default. :meth:`validate`,
        :meth:`sample`, :meth:`mutate`, :meth:`crossover` and :meth:`neighbours` return
        canonical architectures; a space that overrides this also counts networks, not
        decision vectors, in :meth:`size`."""
        return arch

    def check_constraints(self, arch: Architecture) -> None:
        """Cross-dimension rules; override and raise :class:`InvalidArchitectureError`."""

    def is_valid(self, arch: Architecture | Mapping[str, Any]) -> bool:
        try:
            self.validate(arch)
        except InvalidArchitectureError:
            return False
        return True

    # -- sampling and variation ---------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random valid architecture."""
        for _ in range(1000):
            arch = self.canonical(Architecture({d.name: d.sample(rng) for d in self.dimensions}))
            if self.is_valid(arch):
                return arch
        raise RuntimeError(f"search space {self.name!r}: no valid architecture in 1000 draws")

    def mutate(self, arch: Architecture, rng: np.random.Generator,
               prob: float | None = None) -> Architecture:
        """Change each dimension with probability ``prob`` (default ``1 / #dimensions``); at
        least one dimension always changes when the space allows it."""
        p = 1.0 / len(self.dimensions) if prob is None else prob
        arch = self.canonical(arch)
        changeable = [d for d in self.dimensions if len(d.neighbours(arch[d.name])) > 0]
        if not changeable:
            return arch
        for _ in range(100):
            values = dict(arch)
            picked = [d for d in changeable if rng.random() < p]
            if not picked:
                picked = [changeable[int(rng.integers(len(changeable)))]]
            for d in picked:
                values[d.name] = d.mutate(values[d.name], rng)
            child = self.canonical(Architecture(values))  # a change that does nothing is
            if child != arch and self.is_valid(child):       # drawn again
                return child
        return arch

    def crossover(self, a: Architecture, b: Architecture,
                  rng: np.random.Generator) -> Architecture:
        """Uniform crossover: each dimension comes from ``a`` or ``b`` with equal odds."""
        for _ in range(100):
            child = self.canonical(Architecture({d.name: (a if rng.random() < 0.5 else b)[d.name]
                                                 for d in self.dimensions}))
            if self.is_valid(child):
                return child
        return a

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every valid architecture one decision away from ``arch`` (each network once)."""
        arch = self.canonical(arch)
        out: dict[str, Architecture] = {}
        for d in self.dimensions:
            for v in d.neighbours(arch[d.name]):
                cand = self.canonical(arch.replace(**{d.name: v}))
                if cand != arch and cand.key not in out and self.is_valid(cand):
                    out[cand.key] = cand
        return list(out.values())

    # -- numeric views ------------------------------------------------------------------------
    def encode(self, arch: Architecture) -> np.ndarray:
        """Fixed-length float vector (see :meth:`Dimension.encode`)."""
        vec: list[float] = []
        for d in self.dimensions:
            vec.extend(d.encode(arch[d.name]))
        return np.asarray(vec, dtype=np.float32)

    def encoding_size(self) -> int:
        return sum(d.encoding_size() for d in self.dimensions)

    def decisions(self) -> list[int]:
        """Option counts of every decision, dimension after dimension."""
        return [n for d in self.dimensions for n in d.decisions()]

    def to_decisions(self, arch: Architecture) -> list[int]:
        return [i for d in self.dimensions for i in d.to_decisions(arch[d.name])]

    def from_decisions(self, indices: Sequence[int]) -> Architecture:
        """The architecture made of these decisions (it may still fail :meth:`validate`)."""
        values, pos = {}, 0
        for d in self.dimensions:
            k = len(d.decisions())
            values[d.name] = d.from_decisions(list(indices[pos:pos + k]))
            pos += k
        if pos != len(indices):
            raise ValueError(f"search space {self.name!r}: expected {pos} decisions, "
                             f"got {len(indices)}")
        return Architecture(values)

    # -- models -------------------------------------------------------------------------------
    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        """Build the network body for ``arch``. Spaces that describe networks override this and
        return a module with an ``out_channels`` attribute; bodies whose stages dense heads can
        read subclass :class:`nastk.nn.body.StagedBody` (``forward_features``, ``feature_channels``,
        ``feature_strides``)."""
        raise TypeError(
            f"search space {self.name!r} describes no network ({type(self).__name__} does not "
            "override build); pair it with an evaluator that needs no model, e.g. a function "
            "or tabular evaluator")

    #: the ``init.format`` values besides ``nastk`` whose checkpoints this space's networks read
    public_formats: tuple[str, ...] = ()

    def public_layout(self, fmt: str, arch: Architecture | None = None) -> KeyTable:
        """The key table (:mod:`nastk.nn.layouts`) of checkpoints in public layout ``fmt``
        (``ofa``, ``torchvision``) for this space's networks; ``arch`` is the architecture being
        loaded, when the table depends on it (``None`` for a supernet). Spaces that read public
        checkpoints list their formats in :attr:`public_formats` and override this."""
        reads = (f"it reads {', '.join(self.public_formats)}" if self.public_formats
                 else "it reads nastk's own checkpoints only")
        raise ConfigError(f"init.format: {fmt!r} is not a layout search space {self.name!r} "
                          f"reads ({reads}); use a space built for that checkpoint, e.g. "
                          "ofa_mbv3_full for format ofa, backbones for format torchvision")

    def body_costs(self, arch: Architecture,
                   input_shape: Sequence[int]) -> dict[str, float] | None:
        """``{"params", "flops"}`` of the body :meth:`build` makes for ``arch`` at inputs of
        ``input_shape``, computed without building it (a cost table), exactly what
        :func:`nastk.evaluation.cost.count_params` / ``count_flops`` count on the built body;
        ``None`` (the default): this space has no table, costs are counted on built networks.
        The engine (:class:`nastk.evaluation.cost.TableCosts`) adds the cost of the rest of a
        task's model, counted once per :meth:`body_geometry`."""
        return None

    def body_geometry(self, arch: Architecture, input_shape: Sequence[int]) -> tuple[Any, ...]:
        """What the rest of a task's model (its head, the input normalisation) sees of the body
        of ``arch`` at ``input_shape``: two architectures with one geometry have bodies whose
        outputs have the same shapes, so the rest of their models costs the same. Default: the
        input shape; a space whose architectures change the body's output size (a resolution
        dimension) adds that."""
        return tuple(int(s) for s in input_shape)
