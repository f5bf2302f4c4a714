"""Performance prediction: the predictor base every registered predictor implements and the
path-filter contract (DetOFA) that the engine uses without importing a plugin."""
