"""Everything the engine does with a DetOFA-style path filter, the ``path_filter`` predictor
plugin reached through the registry and typed against :class:`PathFilter`:

* :mod:`~nastk.prediction.path_filter.contract`: the contract the plugin implements, and the
  registry lookups that refuse a registered ``path_filter`` not implementing it;
* :mod:`~nastk.prediction.path_filter.use`: ``path_filter:`` in a search or supernet config;
* :mod:`~nastk.prediction.path_filter.costs`: what a path costs (params or FLOPs of a
  supernet's sub-network or of a task's model), and the check that a cost function agrees with
  evaluated costs;
* :mod:`~nastk.prediction.path_filter.pruning`: loading a fitted filter, pruning a search space
  (a search config's ``path_filter:``), sampling kept paths in supernet training;
* :mod:`~nastk.prediction.path_filter.fitting`: fitting on a finished run's results (`nastk
  path-filter fit`, the recipe's ``path_filter_fit`` stage) or on a search's warm-up
  (the ``path_filter_search`` strategy).
"""

from nastk.prediction.path_filter.contract import (
    PLUGIN_NAME,
    CostFn,
    PathFilter,
    make_path_filter,
    path_filter_class,
)
from nastk.prediction.path_filter.costs import (
    COST_TOLERANCE,
    MODEL_COSTS,
    cached_cost_fn,
    check_cost_fn_agrees,
    check_model_cost,
    model_cost_fn,
    path_cost_fn,
    subnet_cost_fn,
)
from nastk.prediction.path_filter.fitting import (
    FitSummary,
    TrainingSet,
    filter_options,
    fit_on_results,
    prune_after_warmup,
    training_set,
)
from nastk.prediction.path_filter.pruning import (
    load_path_filter,
    pruned_search_space,
    supernet_sampler_factory,
)
from nastk.prediction.path_filter.use import PathFilterUse

__all__ = ["COST_TOLERANCE", "MODEL_COSTS", "PLUGIN_NAME", "CostFn", "FitSummary", "PathFilter",
           "PathFilterUse", "TrainingSet", "cached_cost_fn", "check_cost_fn_agrees",
           "check_model_cost", "filter_options", "fit_on_results", "load_path_filter",
           "make_path_filter", "model_cost_fn", "path_cost_fn", "path_filter_class",
           "prune_after_warmup", "pruned_search_space", "subnet_cost_fn",
           "supernet_sampler_factory", "training_set"]
