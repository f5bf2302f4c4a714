"""Checks of the options search spaces share, as pydantic field types and plain functions.

A space's ``Options`` model states what a list option must be by its type, and the error names
the option, the bad value and the fix::

    from typing import Annotated

    from nastk.space.validators import AscendingChoices, Choices, OddSizes, StageInts

    class Options(BaseModel):
        widths: StageInts = [16, 32]                     # one width per stage, each >= 1
        depths: Choices[int] = [1, 2, 3]                 # searched: each once, > 0
        expands: AscendingChoices[int | float] = [3, 6]  # ... and smallest first
        kernels: Annotated[AscendingChoices[int], OddSizes] = [3, 5]

The ascending form is for supernet spaces, whose ``largest`` / ``smallest`` architectures are
the last / first choice of every dimension. Checks that involve several options (a value per
stage) run in a model validator through :func:`one_per_stage`.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationInfo

__all__ = ["AscendingChoices", "Choices", "OddSizes", "StageInts", "check_ascending",
           "check_choices", "check_odd", "check_stage_ints", "one_per_stage"]

T = TypeVar("T")


def _nonempty_positive(values: Sequence[Any], name: str) -> None:
    if not values:
        raise ValueError(f"{name}: needs at least one choice")
    bad = [x for x in values if isinstance(x, numbers.Real) and x <= 0]
    if bad:
        raise ValueError(f"{name}: choices must be > 0, got {list(values)}; drop {bad}")


def check_choices(values: Sequence[Any], name: str) -> Sequence[Any]:
    """``values`` if they are searchable choices of the option ``name``: at least one, each
    listed once (any order), numbers ``> 0``; else a ``ValueError`` saying which and the
    fix."""
    _nonempty_positive(values, name)
    unique = list(dict.fromkeys(values))
    if len(unique) != len(values):
        raise ValueError(f"{name}: choices contain duplicates: {list(values)}; list each once, "
                         f"e.g. {unique}")
    return values


def check_ascending(values: Sequence[Any], name: str) -> Sequence[Any]:
    """``values`` if they are choices of ``name`` (see :func:`check_choices`) listed strictly
    ascending, smallest first; else a ``ValueError`` that gives them in order."""
    _nonempty_positive(values, name)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"{name}: choices must be strictly ascending (smallest first, no "
                         f"duplicates), got {list(values)}; use {sorted(set(values))}")
    return values


def check_odd(values: Sequence[int], name: str) -> Sequence[int]:
    """``values`` if every one is odd (kernel sizes: ``k // 2`` pads a kernel symmetrically
    only when ``k`` is odd); else a ``ValueError`` naming the even ones."""
    even = [k for k in values if k % 2 == 0]
    if even:
        raise ValueError(f"{name}: kernel sizes must be odd, got {list(values)}; replace {even} "
                         f"by odd sizes (3, 5, 7, ...)")
    return values


def check_stage_ints(values: Sequence[int], name: str) -> Sequence[int]:
    """``values`` if they are per-stage ints (widths, depths, strides): a value for at least
    one stage, each ``>= 1``; else a ``ValueError`` naming the option and the bad values."""
    if not values:
        raise ValueError(f"{name}: needs a value for at least one stage")
    bad = [x for x in values if x < 1]
    if bad:
        raise ValueError(f"{name}: values must be >= 1, got {list(values)}; replace {bad}")
    return values


def one_per_stage(options: BaseModel, names: Sequence[str], n: int, stages: str) -> None:
    """A ``ValueError`` unless each option of ``names`` (a list on ``options``) holds one value
    per stage: ``n`` values; ``stages`` describes the stages in the message."""
    for name in names:
        value = getattr(options, name)
        if len(value) != n:
            raise ValueError(f"{name} needs one value per stage ({stages}), got {value}")


def _field(check: Any) -> AfterValidator:
    """A pydantic after-validator running ``check(value, field name)``."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        return check(value, info.field_name or "value")

    return AfterValidator(validate)


#: choices of a searched option: at least one, each once (any order), numbers ``> 0``
Choices = Annotated[list[T], _field(check_choices)]
#: choices listed strictly ascending (smallest first): the order supernet spaces rely on
AscendingChoices = Annotated[list[T], _field(check_ascending)]
#: one int ``>= 1`` per stage (widths, depths, strides), at least one stage
StageInts = Annotated[list[int], _field(check_stage_ints)]
#: marks a list of kernel sizes: every one odd (``Annotated[Choices[int], OddSizes]``)
OddSizes = _field(check_odd)
