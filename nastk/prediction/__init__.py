"""Performance prediction: the predictor base every registered predictor implements, and the
path-filter package (DetOFA: the contract, the ``path_filter:`` config block, costing, pruning
and fitting) through which the engine uses that plugin without importing it."""
