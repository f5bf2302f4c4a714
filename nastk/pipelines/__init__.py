"""Pipelines of runs: recipes (chained stages) and studies (tasks x strategies x seeds)."""
