"""Network parts: the staged-body contract, the feature-pyramid neck, batch norm helpers, and
the elastic layers and supernet model of weight-sharing spaces."""
