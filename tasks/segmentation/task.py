"""Semantic segmentation: synthetic scenes (default) or local CamVid / Cityscapes / Pascal VOC."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from nastk.core.options import QuietDefaults, options_of
from nastk.data.augment import Augment, TargetLayout
from nastk.data.images import ImageInput, ImageSizeOptions, size_field
from nastk.data.preparation import PreparationOptions, PreparedData
from nastk.data.splits import CachedSplits, SplitOptions, holdout_indices, synthetic_splits
from nastk.nn.body import is_staged, out_channels_of
from nastk.nn.neck import FeaturePyramidNeck
from nastk.nn.normalization import Normalization, normalization_layer
from nastk.task.contract import Task
from nastk.tasks.segmentation.datasets import CLASS_NAMES, load_dataset
from nastk.tasks.segmentation.deeplab import DeepLabV3PlusDecoder
from nastk.tasks.segmentation.distill import icsd_loss, pixel_kd_loss
from nastk.tasks.segmentation.metrics import ConfusionMatrix
from nastk.tasks.segmentation.synthetic import SCENE_CLASSES, make_scenes

__all__ = ["AUGMENT_PRESET", "SegmentationMeter", "SegmentationModel", "SegmentationTask"]

#: the training augmentation of a real data set unless the config says otherwise: random
#: scale-and-crop by 0.5 to 2 and horizontal flips (the usual Cityscapes / VOC recipe)
AUGMENT_PRESET = Augment(flip=0.5, scale=(0.5, 2.0))


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegmentationModel(nn.Module):
    """A body plus a segmentation head; outputs class logits at the input's resolution.

    ``head="linear"``: a 3x3 conv-BN-ReLU and a 1x1 classifier on the body's output (for bodies
    that already decode, such as ``nas_segm``). ``head="fpn"``: the engine's
    :class:`~nastk.nn.neck.FeaturePyramidNeck` over a staged body's multi-scale features (each
    scale projected to ``head_channels`` by a 1x1 conv, merged top-down by upsampling and
    adding), then 3x3 conv-BN-ReLU and the classifier on the finest merged map, for
    encoder-only bodies such as ``small_cnn`` and ``ofa_mbv3``. ``head="deeplabv3plus"``:
    DeepLabV3+'s ASPP and decoder (:mod:`~nastk.tasks.segmentation.deeplab`, ``head_channels``
    wide: 256 in the paper) over a staged body's last and stride-4 features, then the
    classifier.

    Named features (:meth:`feature_modules`, read by feature distillation): ``neck``, the
    head's decoded map (fpn: the neck's finest merged map; linear: the 3x3 conv-BN-ReLU over the
    body's output; deeplabv3plus: the decoder's output); ``aspp``, the ASPP output before its
    ReLU (``deeplabv3plus`` only).
    """

    def __init__(self, body: nn.Module, num_classes: int, head: str = "linear",
                 head_channels: int = 32, normalization: Normalization | None = None) -> None:
        super().__init__()
        #: the inputs' normalisation (:mod:`nastk.nn.normalization`), ``None`` for none
        self.normalize = normalization_layer(normalization)
        self.body = body
        self.head_kind = head
        self.decoder: DeepLabV3PlusDecoder | None = None
        if head == "deeplabv3plus":
            self.neck = None
            self.decoder = DeepLabV3PlusDecoder(body, head_channels)
            self.fuse: nn.Module = nn.Identity()
            self.classifier = nn.Conv2d(head_channels, num_classes, 1)
            return
        if head == "fpn":
            if not is_staged(body):
                raise TypeError(f"head 'fpn' needs a staged body (forward_features, "
                                f"feature_channels, feature_strides); {type(body).__name__} "
                                "is not one. Use head: linear")
            self.neck: FeaturePyramidNeck | None = FeaturePyramidNeck.for_body(body,
                                                                               head_channels)
            in_head = head_channels
        else:
            self.neck = None
            in_head = out_channels_of(body)
        self.fuse = _conv_bn_relu(in_head, head_channels, 3)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.normalize is not None:
            x = self.normalize(x)
        if self.decoder is not None:
            y = self.decoder(self.body.forward_features(x))
        elif self.neck is not None:
            y = self.neck(self.body.forward_features(x))[0]
        else:
            y = self.body(x)
        y = self.classifier(self.fuse(y))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)

    def feature_modules(self) -> dict[str, str]:
        """Named features as paths of the modules whose outputs they are (see the class
        docstring)."""
        if self.decoder is not None:
            named = {"neck": "decoder"}
        elif self.neck is not None:
            named = {"neck": "neck"}  # its finest merged map (the first of the list)
        else:
            named = {"neck": "fuse"}
        if self.decoder is not None:
            named["aspp"] = "decoder.aspp.project"
        return named


class SegmentationTask(PreparedData, ImageInput, CachedSplits, Task):
    """Semantic segmentation scored by mIoU (confusion matrix over the whole split).

    ``dataset: synthetic`` (the default) draws ``n_samples`` scenes of textured, occluding
    objects on a textured background (:mod:`nastk.tasks.segmentation.synthetic`), split
    train/val/test with ``seed``. ``camvid``, ``cityscapes`` and ``voc`` read a local copy
    under ``root`` (:mod:`nastk.tasks.segmentation.datasets`, resized to ``size``); as in nas-segm,
    ``val`` is a held-out ``holdout_fraction`` of the official training split (the search's
    reward split) and ``test`` is the official validation split.

    Metrics: ``miou``, ``pixel_accuracy``, ``mean_accuracy``, ``fw_iou``, ``score`` (the
    geometric mean of mIoU, mean accuracy and frequency-weighted IoU: nas-segm's reward),
    ``loss`` and ``iou_<class>`` for every class present; ``omit_classes`` are left out of the
    class means. Distillation losses: ``pixel_kd`` and ``icsd``
    (:mod:`nastk.tasks.segmentation.distill`); ``nastk distill`` adds ``pairwise`` on the
    models' named features (:meth:`SegmentationModel.feature_modules`).

    ``head: deeplabv3plus`` (with ``head_channels: 256``) over a ``backbones`` body at
    ``output_stride`` 16 or 8 is DeepLabV3+ (:mod:`~nastk.tasks.segmentation.deeplab`).
    """

    name: ClassVar[str] = "segmentation"
    augment_preset: ClassVar[Augment] = AUGMENT_PRESET
    primary_metric: ClassVar[str] = "miou"
    metrics: ClassVar[tuple[str, ...]] = ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou",
                                           "score", "loss")
    direction: ClassVar[Literal["max", "min"]] = "max"

    class Options(QuietDefaults, PreparationOptions, SplitOptions, ImageSizeOptions):
        """Options of :class:`SegmentationTask` (``task.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")
        quiet_defaults: ClassVar[tuple[str, ...]] = ("augment", "normalize", "eval_at")

        dataset: Literal["synthetic", "camvid", "cityscapes", "voc"] = "synthetic"
        root: Path | None = Field(None, description="camvid/cityscapes/voc: the local folder")
        size: int | tuple[int, int] = size_field(32)
        n_samples: int = Field(600, ge=10, description="synthetic: number of scenes")
        num_classes: int = Field(5, ge=2, description="synthetic: classes incl. background")
        noise: float = Field(0.05, ge=0.0, description="synthetic: std of pixel noise")
        max_objects: int = Field(4, ge=1, description="synthetic: objects per scene, at most")
        ignore_index: int = Field(255, description="label value that is not scored")
        omit_classes: list[int] = Field(default_factory=list,
                                        description="classes left out of the class means "
                                                    "(nas-segm omits VOC's background, 0)")
        head: Literal["auto", "linear", "fpn", "deeplabv3plus"] = Field(
            "auto", description="auto: fpn when the body is staged (multi-scale features), else "
                            "linear; deeplabv3plus: ASPP + decoder over a staged body")
        head_channels: int = Field(32, ge=1, description="width of the head (deeplabv3plus: "
                                   "256 in the paper)")
        kd_temperature: float = Field(1.0, gt=0.0, description="temperature of pixel_kd, icsd")
        icsd_normalize: bool = Field(True, description="L2-normalise the rows of the ICSD "
                                                       "similarity matrices before matching")
        eval_at: Literal["default", "label", "input"] = Field(
            "default", description="resolution val and test are scored at: label, the label "
            "file's own (logits upsampled to it; the protocol of Cityscapes and VOC); input, "
            "the working size (labels resized by nearest neighbour); default: label for a real "
            "data set, input for generated scenes")

        @model_validator(mode="after")
        def _check(self) -> SegmentationTask.Options:
            if self.dataset == "synthetic" and self.num_classes > len(SCENE_CLASSES):
                raise ValueError(f"num_classes {self.num_classes}: the synthetic scenes have at "
                                 f"most {len(SCENE_CLASSES)} classes")
            bad = [c for c in self.omit_classes if not 0 <= c < self.n_classes]
            if bad:
                raise ValueError(f"omit_classes {bad} not in [0, {self.n_classes})")
            return self

        @property
        def scores_at_label_size(self) -> bool:
            """Whether val and test labels keep their files' resolution."""
            if self.eval_at == "default":
                return self.dataset != "synthetic"
            return self.eval_at == "label"

        @property
        def n_classes(self) -> int:
            return (self.num_classes if self.dataset == "synthetic"
                    else len(CLASS_NAMES[self.dataset]))

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"task {self.name!r}")

    def __repr__(self) -> str:
        return f"SegmentationTask(dataset={self.options.dataset!r})"

    # -- data ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.options.n_classes

    @property
    def class_names(self) -> list[str]:
        o = self.options
        if o.dataset == "synthetic":
            return list(SCENE_CLASSES[: o.num_classes])
        return list(CLASS_NAMES[o.dataset])

    def build_splits(self) -> dict[str, Dataset]:
        """``train``, ``val`` and (when there is one) ``test`` datasets of ``(image [3,H,W],
        mask [H,W])`` (built once, see :meth:`splits`): ``train`` augmented as ``augment``
        says; ``val`` and ``test`` labels at their files' resolution when scored there
        (``eval_at``)."""
        o = self.options
        if o.dataset != "synthetic":
            assert o.root is not None
            own = o.scores_at_label_size
            official = load_dataset(o.dataset, o.root, "train", self.image_size)
            train_ix, val_ix = holdout_indices(len(official), o.holdout_fraction, o.seed,
                                               str(o.root))
            scored = official.with_labels_at_own_size() if own else official
            splits: dict[str, Dataset] = {
                "train": self.augmented(Subset(official, train_ix)),
                "val": Subset(scored, val_ix),
                "test": load_dataset(o.dataset, o.root, "val", self.image_size,
                                     label_own_size=own)}
            return splits
        images, masks = make_scenes(o.n_samples, o.square_side(), o.num_classes, seed=o.seed,
                                    noise=o.noise, max_objects=o.max_objects)
        splits = synthetic_splits(o.n_samples, o, lambda ix: TensorDataset(
            torch.from_numpy(images[ix]), torch.from_numpy(masks[ix])))
        splits["train"] = self.augmented(splits["train"])
        return splits

    @property
    def target_layout(self) -> TargetLayout:  # type: ignore[override]
        """A mask, padded with the options' ignore label."""
        return TargetLayout(mask=True, ignore_index=self.options.ignore_index)

    def collate(self, samples: list[Any]) -> tuple[torch.Tensor, Any]:
        """Images stacked; masks stacked when they have one size, else a list (labels kept at
        their files' resolution)."""
        images, masks = zip(*samples, strict=True)
        if len({tuple(m.shape) for m in masks}) == 1:
            return torch.stack(images), torch.stack(masks)
        return torch.stack(images), list(masks)

    # what torch's default collate gives for masks of one size: the loaders may gather batches
    collate.is_default = True  # type: ignore[attr-defined]

    # -- model, loss, metrics -----------------------------------------------------------------
    def wrap(self, body: nn.Module) -> nn.Module:
        head = self.options.head
        if head == "auto":
            head = "fpn" if is_staged(body) else "linear"
        return SegmentationModel(body, self.num_classes, head, self.options.head_channels,
                                 self.normalization)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, ignore_index=self.options.ignore_index)

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Pixel-wise KD (used by in-place distillation in supernet training)."""
        return pixel_kd_loss(student, teacher, self.options.kd_temperature)

    def kd_losses(self) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """``pixel_kd``: KL(teacher || student) of the class distribution at every pixel;
        ``icsd``: inter-class similarity distillation."""
        t = self.options.kd_temperature
        normalize = self.options.icsd_normalize
        c = self.num_classes

        def icsd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
            if student.shape[1] != c:
                raise ValueError(f"icsd: logits have {student.shape[1]} classes, the task has "
                                 f"{c}")
            return icsd_loss(student, teacher, temperature=t, normalize=normalize)

        return {"pixel_kd": lambda s, te: pixel_kd_loss(s, te, t), "icsd": icsd}

    def metric_names(self) -> list[str]:
        """The declared metrics plus ``iou_<class>`` for every class."""
        return [*super().metric_names(),
                *(f"iou_{n.lower().replace(' ', '_')}" for n in self.class_names)]

    def meter(self) -> SegmentationMeter:
        """Confusion-matrix metrics over a whole split (fed by the engine's evaluation loop)."""
        o = self.options
        return SegmentationMeter(self.num_classes, o.ignore_index, o.omit_classes,
                                 self.class_names)


class SegmentationMeter:
    """Streaming confusion matrix and cross-entropy over batches of per-pixel logits."""

    def __init__(self, num_classes: int, ignore_index: int, omit_classes: list[int],
                 class_names: list[str]) -> None:
        self.cm = ConfusionMatrix(num_classes, ignore_index)
        self.ignore_index = ignore_index
        self.omit_classes = list(omit_classes)
        self.class_names = list(class_names)
        self.loss_sum, self.counted = 0.0, 0

    def update(self, outputs: torch.Tensor, predictions: torch.Tensor,
               targets: torch.Tensor | list[torch.Tensor]) -> None:
        """Add a batch. Labels of another size than the logits (kept at their files'
        resolution: a ``[B, H, W]`` tensor, or a list of ``[H, W]`` masks of different sizes)
        are scored on the logits upsampled to each label's size (bilinear,
        ``align_corners=False``), one image at a time."""
        if isinstance(targets, torch.Tensor) and targets.shape[-2:] == outputs.shape[-2:]:
            self._add(outputs, predictions, targets)
            return
        for i, label in enumerate(targets):
            logits = outputs[i:i + 1]
            if tuple(label.shape[-2:]) != tuple(logits.shape[-2:]):
                logits = F.interpolate(logits, size=tuple(label.shape[-2:]), mode="bilinear",
                                       align_corners=False)
            self._add(logits, logits, label[None])

    def _add(self, outputs: torch.Tensor, predictions: torch.Tensor,
             targets: torch.Tensor) -> None:
        self.loss_sum += float(F.cross_entropy(outputs, targets, ignore_index=self.ignore_index,
                                               reduction="sum"))
        self.counted += int((targets != self.ignore_index).sum())
        self.cm.update(predictions, targets)

    def compute(self) -> dict[str, float]:
        if self.counted == 0:
            raise ValueError("evaluate: the loader yielded no labelled pixels")
        scores = self.cm.compute(omit_classes=self.omit_classes)
        metrics = {k: float(scores[k]) for k in
                   ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou", "score")}
        metrics["loss"] = self.loss_sum / self.counted
        for name, iou in zip(self.class_names, scores["iou"], strict=True):
            if np.isfinite(iou):
                metrics[f"iou_{name.lower().replace(' ', '_')}"] = float(iou)
        return metrics
