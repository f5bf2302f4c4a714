"""The DetOFA-style path filter: a predictor of *relative* performance among architectures of
similar cost, and the pruning built on it.

DetOFA (Sony, arXiv 2303.13121) prunes a once-for-all supernet's paths with a
resource-conditioned "path filter" before detection fine-tuning; its code is not public, so the
details here are ours:

* **Buckets.** Architectures are grouped by cost (``flops``, ``params``, ``latency_ms`` or any
  number) into ``n_buckets`` buckets cut at the cost quantiles of the training set
  (:mod:`nastk.predictors.buckets`).
* **Model.** An MLP scores ``encoding ⊕ one-hot(bucket)``.
* **Loss.** Pairwise logistic ranking loss ``softplus(-(s_i - s_j))`` over pairs *inside the
  same bucket* where architecture ``i`` scored better than ``j``; pairs across buckets are never
  compared, so the filter learns "which of these similar-cost paths is better", not "bigger is
  better".
* **Pruning.** ``prune`` keeps the predicted top ``keep_ratio`` of every bucket: for a list of
  candidates exactly ``ceil(keep_ratio * n_b)`` (at least 1) of each bucket ``b``; for a search
  space a :class:`PrunedSpace` whose constraint check rejects architectures scoring below their
  bucket's threshold (thresholds estimated from samples of the space by a :class:`KeepRule`,
  :mod:`nastk.predictors.path_filter.keep_rule`), so every strategy's
  ``sample``/``mutate``/``crossover`` stays inside the kept part; for supernet training
  :func:`pruned_sampler_factory`, a drop-in ``sampler_factory`` for
  :class:`nastk.training.supernet.SupernetTrainer` that samples only unpruned paths.
"""

from nastk.predictors.path_filter.keep_rule import KeepRule, bucket_thresholds, check_keep_ratio
from nastk.predictors.path_filter.predictor import STATE_FORMAT, PathFilter, PathFilterOptions
from nastk.predictors.path_filter.pruned_space import PrunedSpace
from nastk.predictors.path_filter.sampler import PrunedPhaseSampler, pruned_sampler_factory

__all__ = ["STATE_FORMAT", "KeepRule", "PathFilter", "PathFilterOptions", "PrunedPhaseSampler",
           "PrunedSpace", "bucket_thresholds", "check_keep_ratio", "pruned_sampler_factory"]
