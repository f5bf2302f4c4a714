"""DeepLabV3+ as a whole model: a ``backbones`` body under the segmentation task's
``head: deeplabv3plus`` (:mod:`~nastk.tasks.segmentation.deeplab`), built by a factory a
distillation can name as its teacher (``factory: nastk.tasks.segmentation.deeplab_model:
deeplabv3plus``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from nastk.search_spaces.backbones import build_body
from nastk.task.contract import Task
from nastk.tasks.segmentation.task import SegmentationModel

__all__ = ["deeplabv3plus"]


def deeplabv3plus(task: Task | None = None, backbone: str = "resnet101",
                  num_classes: int | None = None, output_stride: int = 16,
                  channels: int = 256, in_channels: int = 3) -> nn.Module:
    """A DeepLabV3+ segmentation model over a ``backbones`` body (``resnet18``, ``resnet50``,
    ``resnet101`` or ``mobilenet_v2``, torchvision layout) at ``output_stride`` 16 or 8: the
    :class:`~nastk.tasks.segmentation.task.SegmentationModel` the segmentation task builds with
    ``head: deeplabv3plus``, so a checkpoint written by one loads into the other. The classes
    and the input normalisation come from ``task`` when given (the distillation passes it)."""
    if num_classes is None:
        if task is None:
            raise ValueError("deeplabv3plus: give num_classes or the task")
        num_classes = int(task.num_classes)  # type: ignore[attr-defined]
    normalization: Any = getattr(task, "normalization", None) if task is not None else None
    body = build_body(backbone, in_channels, output_stride)
    return SegmentationModel(body, num_classes, "deeplabv3plus", channels, normalization)
