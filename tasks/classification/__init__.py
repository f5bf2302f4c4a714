"""Image classification task (sklearn digits or synthetic shapes)."""

from nastk.tasks.classification.task import ClassificationModel, ClassificationTask

__all__ = ["ClassificationModel", "ClassificationTask"]
