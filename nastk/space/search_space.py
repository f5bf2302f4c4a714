"""SearchSpace: a named list of dimensions, the operations strategies need, and model building."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.space.architecture import Architecture
from nastk.space.conditions import failed
from nastk.space.dimension_spec import dimension_from_spec
from nastk.space.dimensions import Dimension

if TYPE_CHECKING:
    import torch.nn as nn

    from nastk.nn.layouts import KeyTable


def first_value(d: Dimension) -> Any:
    """The value of ``d``'s first decisions (what a dimension takes when a neighbour's change
    activates it); its first valid value when that one is not."""
    value = d.from_decisions([0] * len(d.decisions()))
    return value if d.is_valid(value) else d.sample(np.random.default_rng(0))


def _values(d: Dimension) -> list[Any]:
    """Every valid value of ``d`` (a dimension a condition reads: its decisions are few)."""
    out: dict[str, Any] = {}
    for idx in itertools.product(*(range(n) for n in d.decisions())):
        value = d.from_decisions(list(idx))
        if d.is_valid(value):
            out[repr(d.validate(value))] = d.validate(value)
    return list(out.values())


class SearchSpace:
    """A product of dimensions (some of which may exist only under conditions on others:
    :mod:`nastk.space.conditions`).

    Strategies only use the methods defined here (``sample``, ``mutate``, ``crossover``,
    ``neighbours``, ``encode``, the decision view), so any space works with any strategy.
    Spaces that describe networks subclass this and implement :meth:`build`.
    """

    name: str = "space"
    #: dimensions that are training settings rather than parts of the network: each names a
    #: field of :class:`~nastk.evaluation.train.TrainConfig` (``lr``, ``weight_decay``,
    #: ``momentum``, ...), and the train evaluator trains each candidate with its values there
    #: (joint architecture and hyperparameter search). :meth:`build` ignores them; a
    #: subclass declares them as a class attribute or a property. Default: none.
    hyperparameters: tuple[str, ...] = ()

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
        #: whether some dimension exists only under conditions (:mod:`nastk.space.conditions`)
        self.conditional = any(d.when for d in dims)
        if self.conditional:
            self._check_conditions()

    def _check_conditions(self) -> None:
        """Each condition names a dimension listed before its own, with values it can take."""
        seen: dict[str, Dimension] = {}
        for d in self.dimensions:
            for c in d.when:
                ref = seen.get(c.dim)
                if ref is None:
                    where = ("is listed after it" if c.dim in self._by_name
                             else "does not exist")
                    raise ValueError(f"search space {self.name!r}: dimension {d.name!r} is "
                                     f"conditional on {c.describe()}, but {c.dim!r} {where}; "
                                     "list the dimensions a condition reads first")
                wanted = c.value if c.op in ("in", "not in") else (
                    (c.value,) if c.op in ("==", "!=") else ())
                bad = [v for v in wanted if not ref.is_valid(v)]
                if bad:
                    raise ValueError(f"search space {self.name!r}: dimension {d.name!r}'s "
                                     f"condition {c.describe()}: {bad[0]!r} is not a value of "
                                     f"{c.dim!r} ({ref.describe()})")
            seen[d.name] = d

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
        return {"name": self.name, "dimensions": [d.full_spec() for d in self.dimensions]}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SearchSpace:
        return SearchSpace([dimension_from_spec(d) for d in spec["dimensions"]],
                           name=spec.get("name", "space"))

    def size(self) -> int | float:
        """Number of distinct valid architectures (exact; may be a very large int;
        ``math.inf`` with a continuous dimension, :class:`~nastk.space.continuous.Float`). With
        conditional dimensions: summed over the values of the dimensions conditions read,
        each branch the product of the sizes of the dimensions active in it."""
        if not self.conditional:
            return math.prod(d.size() for d in self.dimensions)
        read = {c.dim for d in self.dimensions for c in d.when}
        dims = self.dimensions
        memo: dict[tuple[int, tuple[tuple[str, Any], ...]], int | float] = {}

        def count(i: int, values: dict[str, Any]) -> int | float:
            if i == len(dims):
                return 1
            key = (i, tuple(sorted(values.items(), key=lambda kv: kv[0])))
            if key in memo:
                return memo[key]
            d = dims[i]
            if failed(d.when, values) is not None:
                total = count(i + 1, values)
            elif d.name in read and math.isinf(d.size()):
                total = math.inf  # a continuous dimension a condition reads
            elif d.name in read:
                total = sum(count(i + 1, {**values, d.name: v}) for v in _values(d))
            else:
                total = d.size() * count(i + 1, values)
            memo[key] = total
            return total

        return count(0, {})

    # -- conditional dimensions ---------------------------------------------------------------
    def active(self, values: Mapping[str, Any]) -> list[Dimension]:
        """The dimensions that exist in an architecture with ``values`` (every one, without
        conditions)."""
        if not self.conditional:
            return list(self.dimensions)
        present: dict[str, Any] = {}
        out = []
        for d in self.dimensions:
            if failed(d.when, present) is None:
                out.append(d)
                if d.name in values:
                    present[d.name] = values[d.name]
        return out

    def complete(self, values: Mapping[str, Any],
                 fill: Callable[[Dimension], Any] | None = None) -> Architecture:
        """``values`` with the inactive dimensions dropped and the active ones it lacks given
        ``fill(dimension)`` (default: the value of the dimension's first decisions), in the
        order conditions are evaluated: how a strategy that sets some dimensions turns them
        into an architecture of a conditional space (not validated)."""
        fill = first_value if fill is None else fill
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if failed(d.when, out) is not None:
                continue
            out[d.name] = values[d.name] if d.name in values else fill(d)
        return Architecture(out)

    # -- validation ---------------------------------------------------------------------------
    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        """Return the canonical :class:`Architecture` or raise an error naming the bad dimension
        and its allowed values."""
        values = dict(arch)
        if self.conditional:
            return self._validate_conditional(values)
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
        return self._finished({d.name: self._checked(d, values[d.name])
                               for d in self.dimensions})

    def _checked(self, d: Dimension, value: Any) -> Any:
        """``d``'s canonical ``value``; its error prefixed with this space's name."""
        try:
            return d.validate(value)
        except InvalidArchitectureError as err:
            raise InvalidArchitectureError(f"search space {self.name!r}: {err}") from None

    def _finished(self, values: dict[str, Any]) -> Architecture:
        """Validated ``values`` in canonical form, checked against the cross-dimension
        rules."""
        arch_out = self.canonical(Architecture(values))
        self.check_constraints(arch_out)
        return arch_out

    def _validate_conditional(self, values: dict[str, Any]) -> Architecture:
        """:meth:`validate` of a space with conditional dimensions: the active dimensions
        must be given, the inactive ones must not (the error names the condition)."""
        extra = sorted(set(values) - set(self._by_name))
        if extra:
            raise InvalidArchitectureError(
                f"search space {self.name!r}: unknown dimensions {extra}; its dimensions are "
                f"{[d.name for d in self.dimensions]}")
        out: dict[str, Any] = {}
        for d in self.dimensions:
            cond = failed(d.when, out)
            if cond is not None:
                if d.name in values:
                    now = (f"{cond.dim} is {out[cond.dim]!r}" if cond.dim in out
                           else f"{cond.dim} is inactive")
                    raise InvalidArchitectureError(
                        f"search space {self.name!r}: dimension {d.name!r} is inactive here: "
                        f"it exists only when {cond.describe()} ({now}); leave it out")
                continue
            if d.name not in values:
                why = (f" (active because {' and '.join(c.describe() for c in d.when)})"
                       if d.when else "")
                raise InvalidArchitectureError(
                    f"search space {self.name!r}: missing dimension {d.name!r}{why}")
            out[d.name] = self._checked(d, values[d.name])
        return self._finished(out)

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
            # each active dimension drawn, in the order conditions read
            arch = self.canonical(self.complete({}, lambda d: d.sample(rng)))
            if self.is_valid(arch):
                return arch
        raise RuntimeError(f"search space {self.name!r}: no valid architecture in 1000 draws")

    def mutate(self, arch: Architecture, rng: np.random.Generator,
               prob: float | None = None) -> Architecture:
        """Change each dimension with probability ``prob`` (default ``1 / #dimensions``); at
        least one dimension always changes when the space allows it."""
        arch = self.canonical(arch)
        dims = self.active(arch)  # every dimension, without conditions
        p = 1.0 / len(dims) if prob is None else prob
        changeable = [d for d in dims if len(d.neighbours(arch[d.name])) > 0]
        if not changeable:
            return arch
        for _ in range(100):
            values = dict(arch)
            picked = [d for d in changeable if rng.random() < p]
            if not picked:
                picked = [changeable[int(rng.integers(len(changeable)))]]
            for d in picked:
                values[d.name] = d.mutate(values[d.name], rng)
            # dimensions a change activates are drawn, those it deactivates dropped
            child = self.canonical(self.complete(values, lambda d: d.sample(rng)))
            if child != arch and self.is_valid(child):  # a change that does nothing: again
                return child
        return arch

    def crossover(self, a: Architecture, b: Architecture,
                  rng: np.random.Generator) -> Architecture:
        """Uniform crossover: each dimension comes from ``a`` or ``b`` with equal odds."""
        for _ in range(100):
            def pick(d: Dimension) -> Any:  # from either parent; drawn if neither has it
                first, second = (a, b) if rng.random() < 0.5 else (b, a)
                return (first[d.name] if d.name in first else
                        second[d.name] if d.name in second else d.sample(rng))
            child = self.canonical(self.complete({}, pick))
            if self.is_valid(child):
                return child
        return a

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every valid architecture one decision away from ``arch`` (each network once)."""
        arch = self.canonical(arch)
        out: dict[str, Architecture] = {}
        for d in self.active(arch):
            for v in d.neighbours(arch[d.name]):
                # a dimension the change activates takes its first value
                cand = self.canonical(self.complete(arch.replace(**{d.name: v}),
                                                     first_value))
                if cand != arch and cand.key not in out and self.is_valid(cand):
                    out[cand.key] = cand
        return list(out.values())

    # -- numeric views ------------------------------------------------------------------------
    def encode(self, arch: Architecture) -> np.ndarray:
        """Fixed-length float vector (see :meth:`Dimension.encode`)."""
        vec: list[float] = []
        mask: list[float] = []  # one activity bit per conditional dimension, at the end
        for d in self.dimensions:
            on = not d.when or d.name in arch  # only a conditional dimension may be absent
            vec.extend(d.encode(arch[d.name]) if on else [0.0] * d.encoding_size())
            if d.when:
                mask.append(1.0 if on else 0.0)
        return np.asarray(vec + mask, dtype=np.float32)

    def encoding_size(self) -> int:
        """Length of :meth:`encode`: the dimensions' encodings (zeros for an inactive one),
        then, with conditional dimensions, one activity bit for each of them."""
        return (sum(d.encoding_size() for d in self.dimensions)
                + sum(1 for d in self.dimensions if d.when))

    def decisions(self) -> list[int]:
        """Option counts of every decision, dimension after dimension."""
        return [n for d in self.dimensions for n in d.decisions()]

    def to_decisions(self, arch: Architecture) -> list[int]:
        """The decisions of ``arch``, a fixed length: an inactive dimension's are zeros."""
        return [i for d in self.dimensions  # only a conditional dimension may be absent
                for i in (d.to_decisions(arch[d.name]) if not d.when or d.name in arch
                          else [0] * len(d.decisions()))]

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
        return self.complete(values, first_value)  # inactive dimensions' are ignored

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
