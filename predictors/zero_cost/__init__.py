"""Zero-cost proxies (synflow, jacov, nwot, snip, grad_norm, params, flops) of any space's
network on any task's input, and the predictors built on them (``zero_cost``,
``with_proxies``)."""

from nastk.predictors.zero_cost.predictors import ProxyFeaturesPredictor, ZeroCostPredictor
from nastk.predictors.zero_cost.proxies import PROXIES
from nastk.predictors.zero_cost.scorer import ZeroCostScorer

__all__ = ["PROXIES", "ProxyFeaturesPredictor", "ZeroCostPredictor", "ZeroCostScorer"]
