"""Data plumbing every task shares: the one loader factory, seeded splits, folder datasets and
where tabular benchmarks keep their tables."""
