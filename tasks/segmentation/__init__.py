"""Semantic segmentation: synthetic scenes, CamVid / Cityscapes / Pascal VOC loaders, mIoU
metrics, and distillation losses (pixel KD, ICSD)."""

from nastk.tasks.segmentation.task import SegmentationModel, SegmentationTask

__all__ = ["SegmentationModel", "SegmentationTask"]
