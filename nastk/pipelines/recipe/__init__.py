"""Recipes: a multi-step pipeline (``nastk recipe RECIPE.yaml``) as a chain of stages, each one
nastk command (supernet training, a search, a path-filter fit, an export), fed by the outputs of
the stages before it.

- :mod:`~nastk.pipelines.recipe.schema`: the file's format (:class:`Recipe`,
  :class:`StageSpec`, the per-kind options, each kind's :data:`OUTPUTS`);
- :mod:`~nastk.pipelines.recipe.references`: ``${stage.output}`` references, found, checked
  and substituted;
- :mod:`~nastk.pipelines.recipe.plan`: defaults merged into stage configs, stages resolved,
  and :func:`load_recipe`, which validates every stage before anything runs;
- :mod:`~nastk.pipelines.recipe.state`: ``recipe.json`` (:class:`RecipeState`);
- :mod:`~nastk.pipelines.recipe.runner`: :func:`run_recipe_stages` (skip, resume, refuse a
  changed done stage; ``--redo``, ``--until``, ``--only``).

What each kind of stage runs is given by the caller (:mod:`nastk.cli.commands.recipe`), so the
engine imports no command.
"""

from nastk.pipelines.recipe.plan import Plan, ResolvedStage, load_recipe, predicted_outputs
from nastk.pipelines.recipe.runner import (
    RecipeInterrupted,
    RecipeOutcome,
    StageReport,
    StageRunner,
    run_recipe_stages,
)
from nastk.pipelines.recipe.schema import (
    OUTPUTS,
    STAGE_KINDS,
    ExportOptions,
    PathFilterFitOptions,
    Recipe,
    StageSpec,
)
from nastk.pipelines.recipe.state import RecipeState

__all__ = [
    "OUTPUTS",
    "STAGE_KINDS",
    "ExportOptions",
    "PathFilterFitOptions",
    "Plan",
    "Recipe",
    "RecipeInterrupted",
    "RecipeOutcome",
    "RecipeState",
    "ResolvedStage",
    "StageReport",
    "StageRunner",
    "StageSpec",
    "load_recipe",
    "predicted_outputs",
    "run_recipe_stages",
]
