"""The core types every layer shares: errors, the objective, a result and a trial, Pareto
fronts, the plugin registries, weights files. Nothing here imports another part of nastk."""
