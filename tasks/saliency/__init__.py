"""Saliency prediction: synthetic scenes with a known fixation model (the default), loaders for
local SALICON, MIT1003 and CAT2000 copies, benchmark metrics, and SalNAS's composite loss.

The modules: ``synthetic`` (scenes), ``datasets`` (the loaders), ``task`` (the task); the
metrics of one image, one concept a module, following the benchmark's conventions
(``shared/TASKS.md`` §1, each module's docstring says which it keeps): ``geometry`` (maps,
shapes, resizing, fixation points and the binary fixation map), ``blur`` (the evaluation
blur), ``auc`` (AUC-Judd, AUC-Borji, shuffled AUC), ``distribution`` (CC, KLD, SIM, NSS,
information gain), ``baseline`` (uniform and centre-bias baselines); ``meter``
(``SaliencyMeter``: means over a split, per image first) and ``losses`` (SalNAS's loss).

SalNAS's own metric code is not followed where it departs from these conventions (unbiased std
without eps in CC, NaN NSS without fixations, min-max before SIM, AUC-Judd on one image per
batch, a broken shuffled AUC, no IG).
"""

from nastk.tasks.saliency.task import SaliencyModel, SaliencyTask

__all__ = ["SaliencyModel", "SaliencyTask"]
