"""Warm starts across tasks: earlier runs' evaluated architectures as a prior for a new search
(:mod:`nastk.transfer.sources` reads them, :mod:`nastk.transfer.prior` weighs them by how well
each earlier task's ranking agrees with the new task's first results)."""
