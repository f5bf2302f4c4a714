"""Object detection: synthetic scenes (default) or a local COCO / Pascal VOC copy."""

from nastk.tasks.detection.task import DetectionTask

__all__ = ["DetectionTask"]
