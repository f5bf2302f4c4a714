"""Search-space DSL: dimensions, architectures and spaces."""

from nastk.space.architecture import Architecture
from nastk.space.conditions import Condition, when
from nastk.space.continuous import Float
from nastk.space.dimension_spec import dimension_from_spec
from nastk.space.dimensions import (
    Categorical,
    CellDAG,
    Dimension,
    IntRange,
    StageList,
)
from nastk.space.search_space import SearchSpace

__all__ = ["Architecture", "Categorical", "CellDAG", "Condition", "Dimension", "Float",
           "IntRange", "SearchSpace", "StageList", "dimension_from_spec", "when"]
