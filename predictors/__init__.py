"""Performance predictors over a search space's encoding, and the DetOFA-style path filter.

Every predictor speaks ``fit(archs, scores)`` / ``predict(archs)`` (:class:`Predictor`); they
register under the ``nastk.predictors`` entry points (``gbdt``, ``random_forest``, ``gp``,
``ridge``, ``mlp``, ``ensemble``, ``path_filter``). :mod:`nastk.predictors.metrics` scores their
rankings (Kendall tau, Spearman, precision at top-k, tau within cost buckets).
"""

from nastk.prediction.base import NotFittedError, Predictor, PredictorError
from nastk.predictors.ensemble import EnsemblePredictor
from nastk.predictors.metrics import (
    bucketed_kendall_tau,
    evaluate_predictor,
    kendall_tau,
    precision_at_top_k,
    spearman,
)
from nastk.predictors.mlp import MLPPredictor
from nastk.predictors.path_filter import (
    PathFilter,
    PrunedPhaseSampler,
    PrunedSpace,
    pruned_sampler_factory,
)
from nastk.predictors.sklearn_models import (
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
