"""Studies: many strategies x many tasks x many seeds, compared in one report."""
