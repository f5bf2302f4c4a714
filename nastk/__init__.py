"""nastk: a task-agnostic neural-architecture-search toolkit."""

from nastk.core.errors import ConfigError, InvalidArchitectureError, NastkError
from nastk.core.objective import Objective
from nastk.core.result import Result, Status
from nastk.core.version import __version__
from nastk.space import (
    Architecture,
    Categorical,
    CellDAG,
    IntRange,
    SearchSpace,
    StageList,
)

__all__ = ["Architecture", "Categorical", "CellDAG", "ConfigError", "IntRange",
           "InvalidArchitectureError", "NastkError", "Objective", "Result", "SearchSpace",
           "StageList", "Status", "__version__", "registry"]
