"""When a dimension exists: conditions on the values of the dimensions listed before it.

``Categorical("op_3", OPS).only_if(when("depth", ">=", 3))`` makes ``op_3`` *active* only in
architectures whose ``depth`` is at least 3; elsewhere it is absent from the architecture and
its key, and a value given for it is refused with the condition that failed. A dimension may
carry several conditions (all must hold) and may depend on a dimension that is itself
conditional, to any depth: a condition on an inactive dimension does not hold.

Operators: ``==``, ``!=``, ``in``, ``not in`` (a list of values), ``<``, ``<=``, ``>``, ``>=``
(numbers). :class:`~nastk.space.search_space.SearchSpace` evaluates them in the order the
dimensions are listed, so a condition may only name a dimension listed before its own.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["OPERATORS", "Condition", "when"]


def _in(a: Any, b: Any) -> bool:
    return a in b


def _not_in(a: Any, b: Any) -> bool:
    return a not in b


#: operator text -> how it compares the dimension's value with the condition's
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "in": _in, "not in": _not_in,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ORDERED = ("<", "<=", ">", ">=")


def _plain(value: Any) -> Any:
    """Lists as tuples (values are compared with architectures' frozen values)."""
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


@dataclass(frozen=True)
class Condition:
    """``dim op value``: holds on an architecture whose dimension ``dim`` is present and
    compares so with ``value``."""

    dim: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.dim, str) or not self.dim:
            raise ValueError(f"a condition needs a dimension name, got {self.dim!r}")
        if self.op not in OPERATORS:
            raise ValueError(f"condition on {self.dim!r}: operator {self.op!r} unknown; use "
                             f"one of {list(OPERATORS)}")
        value = _plain(self.value)
        if self.op in ("in", "not in") and not isinstance(value, tuple):
            raise ValueError(f"condition {self.dim} {self.op} {self.value!r}: give a list of "
                             "values")
        if self.op in _ORDERED and (isinstance(value, bool)
                                    or not isinstance(value, (int, float))):
            raise ValueError(f"condition {self.dim} {self.op} {self.value!r}: {self.op} "
                             "compares numbers")
        object.__setattr__(self, "value", value)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition holds on ``values`` (an absent dimension: it does not)."""
        if self.dim not in values:
            return False
        try:
            return bool(OPERATORS[self.op](values[self.dim], self.value))
        except TypeError:  # an ordering between a number and a string
            return False

    def describe(self) -> str:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.dim} {self.op} {value!r}"

    def spec(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"dim": self.dim, "op": self.op, "value": value}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Condition:
        return cls(spec["dim"], spec["op"], spec["value"])


def when(dim: str, op: str, value: Any) -> Condition:
    """``when("depth", ">=", 3)``: the condition ``depth >= 3``."""
    return Condition(dim, op, value)


def failed(conditions: Sequence[Condition], values: Mapping[str, Any]) -> Condition | None:
    """The first of ``conditions`` that does not hold on ``values`` (``None``: all hold)."""
    for c in conditions:
        if not c.holds(values):
            return c
    return None
