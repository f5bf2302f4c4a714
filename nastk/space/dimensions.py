"""Search-space dimensions.

Every dimension is a product of *decisions*: small categorical choices, each with a known number
of options. That single view gives every strategy what it needs without knowing the dimension's
kind: random sampling draws each decision, mutation redraws one, the RL controller emits one token
per decision, and predictors read a fixed-length numeric encoding.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

import networkx as nx
import numpy as np

from nastk.core.errors import InvalidArchitectureError
from nastk.space.conditions import Condition

Scalar = int | float | str | bool


def _check_choices(name: str, choices: Sequence[Scalar]) -> tuple[Scalar, ...]:
    if not name or not isinstance(name, str):
        raise ValueError(f"a dimension needs a non-empty string name, got {name!r}")
    out = tuple(choices)
    if len(out) == 0:
        raise ValueError(f"dimension {name!r}: needs at least one choice")
    if len(set(out)) != len(out):
        raise ValueError(f"dimension {name!r}: choices {list(out)} contain duplicates")
    for c in out:
        if not isinstance(c, (int, float, str, bool)):
            raise ValueError(f"dimension {name!r}: choice {c!r} is not an int, float, str or bool")
    return out


def _is_numeric(choices: Sequence[Scalar]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


class Dimension(ABC):
    """One named axis of a search space; :meth:`only_if` makes it conditional."""

    name: str
    #: the conditions under which the dimension exists (all must hold; none: always), see
    #: :mod:`nastk.space.conditions`
    when: tuple[Condition, ...] = ()

    def only_if(self, *conditions: Condition) -> Self:
        """This dimension, active only when every one of ``conditions`` holds on the
        dimensions listed before it (e.g. ``only_if(when("depth", ">=", 3))``); returns
        itself."""
        for c in conditions:
            if not isinstance(c, Condition):
                raise ValueError(f"dimension {self.name!r}: only_if takes conditions "
                                 f"(nastk.space.conditions.when), got {c!r}")
            if c.dim == self.name:
                raise ValueError(f"dimension {self.name!r}: a condition on itself ({c.describe()})")
        self.when = (*self.when, *conditions)
        return self

    def full_spec(self) -> dict[str, Any]:
        """:meth:`spec` with the conditions (``when``) when there are any."""
        spec = self.spec()
        if self.when:
            spec["when"] = [c.spec() for c in self.when]
        return spec

    # -- the decision view ------------------------------------------------------------------
    @abstractmethod
    def decisions(self) -> list[int]:
        """Number of options of each decision this dimension is made of."""

    @abstractmethod
    def to_decisions(self, value: Any) -> list[int]:
        """Indices of ``value``'s options (``value`` must be valid)."""

    @abstractmethod
    def from_decisions(self, indices: Sequence[int]) -> Any:
        """The value whose decisions are ``indices``."""

    # -- checks -----------------------------------------------------------------------------
    @abstractmethod
    def validate(self, value: Any) -> Any:
        """Return ``value`` in canonical form or raise :class:`InvalidArchitectureError`."""

    @abstractmethod
    def describe(self) -> str:
        """Allowed values in words, used in error messages and ``nastk list``."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON description (kind and parameters) of this dimension."""

    # -- derived operations -------------------------------------------------------------------
    def is_valid(self, value: Any) -> bool:
        """Whether ``value`` passes :meth:`validate`."""
        try:
            self.validate(value)
        except InvalidArchitectureError:
            return False
        return True

    def sample(self, rng: np.random.Generator) -> Any:
        """A uniformly random valid value."""
        for _ in range(1000):
            value = self.from_decisions([int(rng.integers(n)) for n in self.decisions()])
            if self.is_valid(value):
                return value
        raise RuntimeError(f"dimension {self.name!r}: no valid value found in 1000 draws")

    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        """A valid value that differs from ``value`` in exactly one decision (if any exists)."""
        options = self.neighbours(value)
        if not options:
            return value
        return options[int(rng.integers(len(options)))]

    def neighbours(self, value: Any) -> list[Any]:
        """Every valid value that differs from ``value`` in exactly one decision."""
        base = self.to_decisions(value)
        out = []
        for i, n in enumerate(self.decisions()):
            for j in range(n):
                if j == base[i]:
                    continue
                cand = self.from_decisions([*base[:i], j, *base[i + 1 :]])
                if self.is_valid(cand):
                    out.append(cand)
        return out

    def encode(self, value: Any) -> list[float]:
        """Fixed-length numeric vector (one-hot per decision unless the dimension is ordinal)."""
        vec: list[float] = []
        for idx, n in zip(self.to_decisions(value), self.decisions(), strict=True):
            one_hot = [0.0] * n
            one_hot[idx] = 1.0
            vec.extend(one_hot)
        return vec

    def encoding_size(self) -> int:
        """Length of :meth:`encode`'s output."""
        return sum(self.decisions())

    def size(self) -> int:
        """Number of distinct valid values."""
        return math.prod(self.decisions())


class Categorical(Dimension):
    """One choice among a list of scalars (``ordinal=True`` encodes the index as a number)."""

    def __init__(self, name: str, choices: Sequence[Scalar], ordinal: bool = False) -> None:
        self.name = name
        self.choices = _check_choices(name, choices)
        self.ordinal = ordinal

    def decisions(self) -> list[int]:
        return [len(self.choices)]

    def to_decisions(self, value: Any) -> list[int]:
        return [self.choices.index(value)]

    def from_decisions(self, indices: Sequence[int]) -> Any:
        return self.choices[indices[0]]

    def validate(self, value: Any) -> Any:
        for c in self.choices:  # 3 matches 3.0, but True must not match 1 nor "1" match 1
            if (c == value and isinstance(c, bool) == isinstance(value, bool)
                    and isinstance(c, str) == isinstance(value, str)):
                return c
        raise InvalidArchitectureError(
            f"dimension {self.name!r}: {value!r} not in {list(self.choices)}"
        )

    def encode(self, value: Any) -> list[float]:
        if self.ordinal:
            n = len(self.choices)
            return [self.choices.index(value) / max(n - 1, 1)]
        return super().encode(value)

    def encoding_size(self) -> int:
        return 1 if self.ordinal else len(self.choices)

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def spec(self) -> dict[str, Any]:
        return {"kind": "categorical", "name": self.name, "choices": list(self.choices),
                "ordinal": self.ordinal}


class IntRange(Dimension):
    """An integer in ``[low, high]`` on a grid of ``step``; encoded as one number in [0, 1]."""

    def __init__(self, name: str, low: int, high: int, step: int = 1,
                 log: bool = False) -> None:
        if not name:
            raise ValueError("a dimension needs a non-empty name")
        if step < 1 or high < low:
            raise ValueError(f"dimension {name!r}: need low <= high and step >= 1, "
                             f"got low={low}, high={high}, step={step}")
        if (high - low) % step:
            raise ValueError(f"dimension {name!r}: high - low ({high - low}) is not a multiple "
                             f"of step {step}")
        if log and low < 1:
            raise ValueError(f"dimension {name!r}: a log-scale range needs low >= 1, got {low}")
        self.name, self.low, self.high, self.step = name, int(low), int(high), int(step)
        #: sampled log-uniformly and encoded on a log scale (e.g. a batch size or a width)
        self.log = bool(log)

    def sample(self, rng: np.random.Generator) -> Any:
        if not self.log:
            return super().sample(rng)
        u = rng.uniform(math.log(self.low), math.log(self.high + 1))  # log-uniform, then the
        v = min(int(math.exp(u)), self.high)                          # grid point below
        return self.low + (v - self.low) // self.step * self.step

    @property
    def count(self) -> int:
        return (self.high - self.low) // self.step + 1

    def decisions(self) -> list[int]:
        return [self.count]

    def to_decisions(self, value: Any) -> list[int]:
        return [(int(value) - self.low) // self.step]

    def from_decisions(self, indices: Sequence[int]) -> Any:
        return self.low + int(indices[0]) * self.step

    def validate(self, value: Any) -> Any:
        ok = (
            (isinstance(value, (int, np.integer)) and not isinstance(value, bool))
            or (isinstance(value, float) and value.is_integer())
        )
        if ok:
            v = int(value)
            if self.low <= v <= self.high and (v - self.low) % self.step == 0:
                return v
        raise InvalidArchitectureError(f"dimension {self.name!r}: {value!r} not in "
                                       f"{self.describe()}")

    def encode(self, value: Any) -> list[float]:
        if self.log:
            span = math.log(self.high) - math.log(self.low)
            return [(math.log(int(value)) - math.log(self.low)) / span if span else 0.0]
        return [(int(value) - self.low) / max(self.high - self.low, 1)]

    def encoding_size(self) -> int:
        return 1

    def describe(self) -> str:
        text = (f"range({self.low}, {self.high + 1}, {self.step})" if self.step != 1
                else f"integers {self.low}..{self.high}")
        return text + (" (log scale)" if self.log else "")

    def spec(self) -> dict[str, Any]:
        out = {"kind": "int", "name": self.name, "low": self.low, "high": self.high,
               "step": self.step}
        if self.log:
            out["log"] = True
        return out


class StageList(Dimension):
    """One choice per stage (e.g. the kernel size of each of 4 stages); the value is a tuple.
    ``stage_choices`` gives every stage its own set (one list per stage; ``choices`` is then
    ignored and becomes their union in first-seen order)."""

    def __init__(self, name: str, choices: Sequence[Scalar], stages: int,
                 stage_choices: Sequence[Sequence[Scalar]] | None = None) -> None:
        self.name = name
        if stage_choices is not None:
            sets = [_check_choices(name, c) for c in stage_choices]
            if len(sets) != stages:
                raise ValueError(f"dimension {name!r}: stage_choices needs {stages} lists (one "
                                 f"per stage), got {len(sets)}")
            choices = list(dict.fromkeys(v for c in sets for v in c))
        self.choices = _check_choices(name, choices)
        if stages < 1:
            raise ValueError(f"dimension {name!r}: stages must be >= 1, got {stages}")
        self.stages = int(stages)
        self.stage_choices: tuple[tuple[Scalar, ...], ...] | None = (
            None if stage_choices is None else tuple(sets))
        self._item = Categorical(name, self.choices, ordinal=_is_numeric(self.choices))
        self._items = ([self._item] * self.stages if self.stage_choices is None else
                       [Categorical(name, c, ordinal=_is_numeric(c))
                        for c in self.stage_choices])

    def decisions(self) -> list[int]:
        return [len(item.choices) for item in self._items]

    def to_decisions(self, value: Any) -> list[int]:
        return [item.choices.index(v) for item, v in zip(self._items, value, strict=True)]

    def from_decisions(self, indices: Sequence[int]) -> Any:
        return tuple(item.choices[i] for item, i in zip(self._items, indices, strict=True))

    def validate(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != self.stages:
            raise InvalidArchitectureError(
                f"dimension {self.name!r}: expected a list of {self.stages} values (one per "
                f"stage), each {self._describe_items()}; got {value!r}")
        out = []
        for i, (item, v) in enumerate(zip(self._items, value, strict=True)):
            try:
                out.append(item.validate(v))
            except InvalidArchitectureError:
                raise InvalidArchitectureError(
                    f"dimension {self.name!r}: stage {i} value {v!r} not in "
                    f"{list(item.choices)}") from None
        return tuple(out)

    def encode(self, value: Any) -> list[float]:
        vec: list[float] = []
        for item, v in zip(self._items, value, strict=True):
            vec.extend(item.encode(v))
        return vec

    def encoding_size(self) -> int:
        return sum(item.encoding_size() for item in self._items)

    def _describe_items(self) -> str:
        if self.stage_choices is None:
            return self._item.describe()
        return "one of its stage's set " + str([list(c) for c in self.stage_choices])

    def describe(self) -> str:
        if self.stage_choices is None:
            return f"{self.stages} values, each one of {list(self.choices)}"
        return f"{self.stages} values, stage i one of {[list(c) for c in self.stage_choices]}[i]"

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "stages", "name": self.name,
                               "choices": list(self.choices), "stages": self.stages}
        if self.stage_choices is not None:
            out["stage_choices"] = [list(c) for c in self.stage_choices]
        return out


class CellDAG(Dimension):
    """A cell as a DAG: nodes ``0..nodes-1`` in topological order, an operation on every edge
    ``i -> j`` (``i < j``). The value is a tuple of op names, one per edge in :attr:`edges`
    order. With ``zero_op`` set and ``require_connected``, a cell whose output cannot be reached
    from its input through non-zero edges is invalid."""

    def __init__(self, name: str, nodes: int, ops: Sequence[str], zero_op: str | None = None,
                 require_connected: bool = False) -> None:
        self.name = name
        self.ops = _check_choices(name, ops)
        if nodes < 2:
            raise ValueError(f"dimension {name!r}: a cell needs at least 2 nodes, got {nodes}")
        if zero_op is not None and zero_op not in self.ops:
            raise ValueError(f"dimension {name!r}: zero_op {zero_op!r} not in ops {list(ops)}")
        if require_connected and zero_op is None:
            raise ValueError(f"dimension {name!r}: require_connected needs zero_op")
        self.nodes = int(nodes)
        self.zero_op = zero_op
        self.require_connected = require_connected
        self.edges: tuple[tuple[int, int], ...] = tuple(
            (i, j) for j in range(nodes) for i in range(j))
        self._size: int | None = None

    def decisions(self) -> list[int]:
        return [len(self.ops)] * len(self.edges)

    def to_decisions(self, value: Any) -> list[int]:
        return [self.ops.index(v) for v in value]

    def from_decisions(self, indices: Sequence[int]) -> Any:
        return tuple(self.ops[i] for i in indices)

    def graph(self, value: Any) -> nx.DiGraph:
        """The cell as a networkx DiGraph, each edge carrying its ``op``."""
        g = nx.DiGraph()
        g.add_nodes_from(range(self.nodes))
        for (i, j), op in zip(self.edges, value, strict=True):
            g.add_edge(i, j, op=op)
        return g

    def is_connected(self, value: Any) -> bool:
        """Whether the output node is reachable from the input through non-zero edges."""
        g = nx.DiGraph()
        g.add_nodes_from(range(self.nodes))
        g.add_edges_from(e for e, op in zip(self.edges, value, strict=True) if op != self.zero_op)
        return nx.has_path(g, 0, self.nodes - 1)

    def validate(self, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != len(self.edges):
            raise InvalidArchitectureError(
                f"dimension {self.name!r}: expected {len(self.edges)} ops (edges "
                f"{list(self.edges)}), each one of {list(self.ops)}; got {value!r}")
        for e, op in zip(self.edges, value, strict=True):
            if op not in self.ops:
                raise InvalidArchitectureError(
                    f"dimension {self.name!r}: edge {e[0]}->{e[1]} op {op!r} not in "
                    f"{list(self.ops)}")
        value = tuple(value)
        if self.require_connected and not self.is_connected(value):
            raise InvalidArchitectureError(
                f"dimension {self.name!r}: output node {self.nodes - 1} is not reachable from "
                f"node 0 through non-{self.zero_op!r} edges")
        return value

    def size(self) -> int:
        if not self.require_connected:
            return super().size()
        if self._size is None:  # enumeration; cached because strategies ask often
            self._size = sum(1 for v in itertools.product(self.ops, repeat=len(self.edges))
                             if self.is_connected(v))
        return self._size

    def describe(self) -> str:
        return f"{len(self.edges)} edge ops, each one of {list(self.ops)}"

    def spec(self) -> dict[str, Any]:
        return {"kind": "cell", "name": self.name, "nodes": self.nodes, "ops": list(self.ops),
                "zero_op": self.zero_op, "require_connected": self.require_connected}
