"""A dimension back from its JSON description (:meth:`Dimension.full_spec`), for every kind:
the finite ones of :mod:`nastk.space.dimensions` and :class:`~nastk.space.continuous.Float`."""

from __future__ import annotations

from typing import Any

from nastk.space.conditions import Condition
from nastk.space.continuous import Float
from nastk.space.dimensions import Categorical, CellDAG, Dimension, IntRange, StageList

__all__ = ["dimension_from_spec"]


def dimension_from_spec(spec: dict[str, Any]) -> Dimension:
    """Inverse of :meth:`Dimension.spec`."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    conditions = [Condition.from_spec(c) for c in spec.pop("when", [])]
    kinds = {"categorical": Categorical, "int": IntRange, "float": Float, "stages": StageList,
             "cell": CellDAG}
    if kind not in kinds:
        raise ValueError(f"unknown dimension kind {kind!r}; use one of {sorted(kinds)}")
    dim: Dimension = kinds[kind](**spec)
    return dim.only_if(*conditions) if conditions else dim
