"""Saliency prediction: synthetic scenes with a known fixation model (the default), loaders for
local SALICON, MIT1003 and CAT2000 copies, benchmark metrics, and SalNAS's composite loss."""

from nastk.tasks.saliency.task import SaliencyModel, SaliencyTask

__all__ = ["SaliencyModel", "SaliencyTask"]
