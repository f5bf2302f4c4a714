"""Performance predictors over a search space's encoding, and the DetOFA-style path filter.

Every predictor speaks ``fit(archs, scores)`` / ``predict(archs)`` (:class:`Predictor`); they
register under the ``nastk.predictors`` entry points (``gbdt``, ``random_forest``, ``gp``,
``ridge``, ``mlp``, ``ensemble``, ``path_filter``). :mod:`predictors.metrics` scores their
rankings (Kendall tau, Spearman, precision at top-k, tau within cost buckets).
"""

from nastk.predictor import NotFittedError, Predictor, PredictorError
from predictors.ensemble import EnsemblePredictor
from predictors.metrics import (
    bucketed_kendall_tau,
    evaluate_predictor,
    kendall_tau,
    precision_at_top_k,
    spearman,
)
from predictors.mlp import MLPPredictor
from predictors.path_filter import (
    PathFilter,
    PrunedPhaseSampler,
    PrunedSpace,
    pruned_sampler_factory,
)
from predictors.sklearn_models import (
    GaussianProcessPredictor,
    GradientBoostingPredictor,
    RandomForestPredictor,
    RidgePredictor,
)

__all__ = ["EnsemblePredictor", "GaussianProcessPredictor", "GradientBoostingPredictor",
           "MLPPredictor", "NotFittedError", "PathFilter", "Predictor", "PredictorError",
           "PrunedPhaseSampler", "PrunedSpace", "RandomForestPredictor", "RidgePredictor",
           "bucketed_kendall_tau", "evaluate_predictor", "kendall_tau", "precision_at_top_k",
           "pruned_sampler_factory", "spearman"]
