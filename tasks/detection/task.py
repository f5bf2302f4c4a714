"""Object detection: synthetic scenes (default) or a local COCO / Pascal VOC copy, an anchor-free
(CenterNet-style) or SSDLite-style head on any staged body, COCO-style and VOC AP (VOC07
11-point and VOC2010+ all-point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from nastk.core.errors import ConfigError
from nastk.core.options import QuietDefaults, options_of
from nastk.data.augment import Augment, Jitter, TargetLayout
from nastk.data.folders import DatasetError, folder_datasets
from nastk.data.images import ImageInput, ImageSizeOptions, size_field
from nastk.data.preparation import PreparationOptions, PreparedData
from nastk.data.splits import CachedSplits, SplitOptions, holdout_splits, synthetic_splits
from nastk.nn.body import require_staged
from nastk.report.predictions import save_image_grid
from nastk.task.contract import Task
from nastk.tasks.detection.datasets import VOC_CLASSES, collate_detection, load_dataset
from nastk.tasks.detection.heads import CenterNetHead, DetectionModel, SSDLiteHead
from nastk.tasks.detection.metrics import DetectionEvaluator
from nastk.tasks.detection.splits import SplitName, load_split, overlapping, parse_split
from nastk.tasks.detection.synthetic import SHAPE_CLASSES, make_scenes

__all__ = ["DetectionMeter", "DetectionTask", "SceneDataset"]

Target = dict[str, torch.Tensor]


#: the training augmentation of a real data set unless the config says otherwise: horizontal
#: flips, random scale-and-crop by 0.75 to 1.25 and a mild colour jitter (boxes clipped, those
#: under 2 pixels a side dropped)
AUGMENT_PRESET = Augment(flip=0.5, scale=(0.75, 1.25),
                         jitter=Jitter(brightness=0.2, contrast=0.2, saturation=0.2))
#: the layout of a detection target for augmentation
TARGETS = TargetLayout(boxes="boxes", per_box=("labels", "iscrowd", "difficult", "area",
                                              "orig_area"))

class SceneDataset(Dataset):
    """``(image [3, H, W], target dict)`` pairs held in memory (the synthetic scenes)."""

    def __init__(self, images: torch.Tensor, targets: list[Target]) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        return self.images[index], self.targets[index]


def _scene_target(raw: dict[str, np.ndarray], image_id: int) -> Target:
    boxes = torch.as_tensor(np.asarray(raw["boxes"], dtype=np.float32).reshape(-1, 4))
    n = boxes.shape[0]
    area = raw.get("area")
    return {"boxes": boxes,
            "labels": torch.as_tensor(np.asarray(raw["labels"], dtype=np.int64).reshape(-1)),
            "iscrowd": torch.zeros(n, dtype=torch.bool),
            "difficult": torch.zeros(n, dtype=torch.bool),
            "area": (torch.as_tensor(np.asarray(area, dtype=np.float32).reshape(-1))
                     if area is not None else (boxes[:, 2] - boxes[:, 0])
                     * (boxes[:, 3] - boxes[:, 1])),
            "image_id": torch.tensor(image_id, dtype=torch.int64)}


def _check_overlap(dataset: str, train: list[str] | None, test: str | None,
                   year: str | None) -> None:
    """A ``ValueError`` when the test split (``val`` when ``test`` is None) shares images with
    a training split (``train`` when ``train`` is None)."""
    test_name = parse_split(dataset, test or "val", year)
    for name in train or ["train"]:
        train_name = parse_split(dataset, name, year)
        if overlapping(train_name, test_name):
            which = (f"test_split {test_name}" if test is not None
                     else f"the default test split {test_name}")
            by = f"train_split {train_name}" if train else f"default train split {train_name}"
            raise ValueError(f"{which} shares images with the {by}: "
                             "the test scores would be on training images; set test_split to "
                             "a disjoint split (e.g. voc2007/test with VOC trainval, val2017 "
                             "with train2017)")


class DetectionTask(PreparedData, ImageInput, CachedSplits, Task):
    """Object detection scored by average precision over the whole split.

    ``dataset: synthetic`` (the default) draws ``n_samples`` textured scenes of 0 to
    ``max_objects`` shapes of ``num_classes`` classes (varied scale and aspect ratio, later
    shapes occluding earlier ones; :mod:`nastk.tasks.detection.synthetic`), split train/val/test
    with ``seed``. ``coco`` and ``voc`` read a local copy under ``root``
    (:mod:`nastk.tasks.detection.datasets`, resized to ``size`` with the boxes). By default, as
    for segmentation, ``val`` is a held-out ``holdout_fraction`` of the official ``train``
    split (of ``year``) and ``test`` is the official ``val`` split.

    Named splits (:mod:`nastk.tasks.detection.splits`) follow the benchmarks' protocols:
    ``train_split`` names the official split(s) trained on (several are concatenated) and
    ``test_split`` the one scored as ``test``; ``val`` (the search's reward split) is still a
    seeded ``holdout_fraction`` of the training data. VOC07+12 (``root`` the ``VOCdevkit``
    folder)::

        train_split: [voc2007/trainval, voc2012/trainval]
        test_split: voc2007/test

    COCO 2017: ``train_split: train2017``, ``test_split: val2017``. Names are checked with the
    options (the allowed forms are in the error), a test split that shares images with a
    training split is refused, and every named split is read when the splits are built (before
    any training): a missing ``VOC<year>`` folder, split list or annotation file is a
    :class:`~nastk.data.folders.DatasetError` naming the path.

    Heads (``head``): ``centernet`` (objects as points, stride 4; the default: simplest to train
    well on a CPU budget) or ``ssdlite`` (default boxes on every level of stride 8 and up,
    hard-negative mining, class-wise NMS). See :mod:`nastk.tasks.detection.heads`.

    Metrics (:mod:`nastk.tasks.detection.metrics`): ``ap50`` (COCO-style AP at IoU 0.5, 101 recall
    points; the primary metric: it separates architectures at CPU budgets where AP@[.5:.95]
    is mostly localisation noise), ``ap`` (AP@[.5:.95]), ``ap75``, ``ap_small``,
    ``ap_medium``, ``ap_large`` (COCO's absolute areas, 32² and 96², in pixels of the original
    image even when ``size`` resizes it; left out when the split has no box of that size),
    ``ar1``, ``ar10``, ``ar100`` (average recall at 1, 10, 100 detections per image),
    ``ar_small``, ``ar_medium``, ``ar_large``, ``voc07_ap50`` (VOC2007 11-point AP at IoU > 0.5,
    difficult boxes neither counted nor penalised), ``voc_allpoint_ap50`` (VOC2010+ all-point
    AP, the area under the monotone precision envelope, same matching: a different number),
    ``loss`` and ``ap50_<class>`` per class.
    """

    name: ClassVar[str] = "detection"
    augment_preset: ClassVar[Augment] = AUGMENT_PRESET
    target_layout = TARGETS
    primary_metric: ClassVar[str] = "ap50"
    metrics: ClassVar[tuple[str, ...]] = ("ap50", "ap", "ap75", "ap_small", "ap_medium",
                                           "ap_large", "ar1", "ar10", "ar100", "ar_small",
                                           "ar_medium", "ar_large", "voc07_ap50",
                                           "voc_allpoint_ap50", "loss")
    direction: ClassVar[Literal["max", "min"]] = "max"

    class Options(QuietDefaults, PreparationOptions, SplitOptions, ImageSizeOptions):
        """Options of :class:`DetectionTask` (``task.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")
        quiet_defaults: ClassVar[tuple[str, ...]] = ("train_split", "test_split", "augment",
                                                     "normalize")
        min_side: ClassVar[int] = 16

        dataset: Literal["synthetic", "coco", "voc"] = "synthetic"
        root: Path | None = Field(None, description="coco/voc: the local folder")
        year: str | None = Field(None, description="coco: the split suffix (2017 for "
                                 "instances_train2017.json); voc: 2007 (default) or 2012")
        train_split: list[str] | None = Field(
            None, description="coco/voc: the official split(s) trained on, concatenated; "
            "`val` is held out of them. voc: voc<year>/<split> (split: train, val, trainval, "
            "test), e.g. [voc2007/trainval, voc2012/trainval] (VOC07+12); coco: <split><year>, "
            "e.g. train2017; a bare split name takes `year`. Default: train")
        test_split: str | None = Field(
            None, description="coco/voc: the official split scored as `test`, e.g. "
            "voc2007/test or val2017 (same forms as train_split). Default: val")
        size: int | tuple[int, int] = size_field(64)
        n_samples: int = Field(600, ge=10, description="synthetic: number of scenes")
        num_classes: int = Field(3, ge=1, description="synthetic: object classes (shapes)")
        max_objects: int = Field(4, ge=1, description="synthetic: objects per scene, at most")
        min_objects: int = Field(0, ge=0, description="synthetic: objects per scene, at least")
        noise: float = Field(0.05, ge=0.0, description="synthetic: std of pixel noise")
        head: Literal["centernet", "ssdlite"] = "centernet"
        head_channels: int = Field(32, ge=4, description="width of the neck and head")
        out_stride: int = Field(4, ge=1, description="centernet: stride of the heat map (the "
                                "finest body level at or above it)")
        min_stride: int = Field(8, ge=1, description="ssdlite: finest level with default boxes")
        max_detections: int = Field(100, ge=1, description="detections kept per image")
        score_threshold: float = Field(0.01, ge=0.0, lt=1.0,
                                       description="ssdlite: class score kept before NMS")
        nms_threshold: float = Field(0.45, gt=0.0, le=1.0, description="ssdlite: NMS IoU")

        @field_validator("train_split", mode="before")
        @classmethod
        def _one_or_more(cls, value: Any) -> Any:
            return [value] if isinstance(value, str) else value

        @field_validator("train_split", "test_split")
        @classmethod
        def _split_names(cls, value: Any, info: ValidationInfo) -> Any:
            if value is None:
                return value
            dataset = info.data.get("dataset")
            if dataset is None:  # the dataset failed validation: reported there
                return value
            if dataset == "synthetic":
                raise ValueError("named splits are for a local copy of a real data set "
                                 "(dataset coco or voc), not for the synthetic scenes")
            names = value if isinstance(value, list) else [value]
            if not names:
                raise ValueError("name at least one split (or leave train_split out for the "
                                 "official train split)")
            parsed = [parse_split(dataset, n, info.data.get("year")) for n in names]
            twice = sorted({str(p) for p in parsed if parsed.count(p) > 1})
            if twice:
                raise ValueError(f"the split {twice[0]} is named twice")
            if info.field_name == "test_split" and "train_split" in info.data:
                # (absent: train_split failed validation, reported there)
                _check_overlap(dataset, info.data["train_split"], value, info.data.get("year"))
            return value

        @model_validator(mode="after")
        def _check(self) -> DetectionTask.Options:
            if self.dataset == "synthetic":
                if self.num_classes > len(SHAPE_CLASSES):
                    raise ValueError(f"num_classes {self.num_classes}: the synthetic scenes "
                                     f"have at most {len(SHAPE_CLASSES)} classes")
                if self.min_objects > self.max_objects:
                    raise ValueError(f"min_objects {self.min_objects} > max_objects "
                                     f"{self.max_objects}")
            elif self.test_split is None and self.train_split is not None:
                _check_overlap(self.dataset, self.train_split, None, self.year)
            return self

        def named_splits(self) -> tuple[list[SplitName], SplitName] | None:
            """The training splits and the test split, parsed (``None`` when neither
            ``train_split`` nor ``test_split`` is set: the official ``train`` and ``val``)."""
            if self.dataset == "synthetic" or (self.train_split is None
                                               and self.test_split is None):
                return None
            train = [parse_split(self.dataset, n, self.year)
                     for n in (self.train_split or ["train"])]
            return train, parse_split(self.dataset, self.test_split or "val", self.year)

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"task {self.name!r}")
        self._class_names: list[str] | None = None
        #: a head of every output geometry built, for losses and decoding
        self._heads: dict[tuple[str, int], CenterNetHead | SSDLiteHead] = {}

    def __repr__(self) -> str:
        return f"DetectionTask(dataset={self.options.dataset!r}, head={self.options.head!r})"

    # -- data ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        o = self.options
        if o.dataset == "synthetic":
            return list(SHAPE_CLASSES[: o.num_classes])
        if o.dataset == "voc":
            return list(VOC_CLASSES)
        if self._class_names is None:  # COCO: the categories of the annotation file
            base = folder_datasets(self.splits()["train"])[0]
            self._class_names = list(base.class_names)  # type: ignore[attr-defined]
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def build_splits(self) -> dict[str, Dataset]:
        """``train``, ``val`` and (when there is one) ``test`` datasets of ``(image [3,H,W],
        {"boxes", "labels", "iscrowd", "difficult", "area", "image_id"})`` (built once, see
        :meth:`splits`; a real data set's targets also carry ``orig_area`` and ``scale``, see
        :mod:`nastk.tasks.detection.datasets`); ``train`` augmented as ``augment`` says."""
        splits = self._unaugmented_splits()
        splits["train"] = self.augmented(splits["train"])
        return splits

    def _unaugmented_splits(self) -> dict[str, Dataset]:
        o = self.options
        named = o.named_splits()
        if named is not None:
            return self._named_splits(*named)
        if o.dataset != "synthetic":
            assert o.root is not None
            kwargs: dict[str, Any] = {} if o.year is None else {"year": o.year}
            return holdout_splits(
                load_dataset(o.dataset, o.root, "train", self.image_size, **kwargs), o,
                str(o.root), lambda: load_dataset(o.dataset, o.root, "val", self.image_size,
                                                  **kwargs))
        images, raw = make_scenes(o.n_samples, o.square_side(), o.num_classes, seed=o.seed,
                                  max_objects=o.max_objects, min_objects=o.min_objects,
                                  noise=o.noise)
        images_t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return synthetic_splits(o.n_samples, o, lambda ix: SceneDataset(
            images_t[ix], [_scene_target(raw[i], int(i)) for i in ix]))

    def _named_splits(self, train: list[SplitName], test: SplitName) -> dict[str, Dataset]:
        """``train_split`` (concatenated) less the held-out ``val``, and ``test_split``; every
        split is read (and checked) here, so a missing year folder, split list or annotation
        file fails before any training."""
        o = self.options
        assert o.root is not None
        parts = [load_split(o.root, name, self.image_size) for name in train]
        test_set = load_split(o.root, test, self.image_size)
        if o.dataset == "coco":  # labels are category ranks: every split needs the same ones
            first = parts[0]
            for name, other in [*zip(train[1:], parts[1:], strict=True), (test, test_set)]:
                if other.class_names != first.class_names:
                    raise DatasetError(
                        f"CocoDetection: the splits {train[0]} and {name} have different "
                        f"categories ({list(first.class_names)} in "
                        f"{getattr(first, 'annotation_file', None)}, "
                        f"{list(other.class_names)} in "
                        f"{getattr(other, 'annotation_file', None)}): their labels would not "
                        "agree")
        official: Dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        where = f"{o.root} ({' + '.join(str(n) for n in train)})"
        return holdout_splits(official, o, where, lambda: test_set)

    def collate(self, samples: list[Any]) -> tuple[torch.Tensor, list[Target]]:
        """Images stacked, targets kept as a list of per-image dicts (box counts differ)."""
        return collate_detection(samples)

    # -- model, loss, post-processing ---------------------------------------------------------
    def make_head(self, body: nn.Module) -> CenterNetHead | SSDLiteHead:
        o = self.options
        body = require_staged(body, f"the detection head {o.head!r}")
        if body.resizes_input:
            raise ConfigError(
                f"task detection: the body ({type(body).__name__}) resizes its input to each "
                f"architecture's resolution, which the {o.head!r} head cannot follow (its "
                f"anchors and output grid are those of the task's size {self.image_size}); "
                "leave the space's resolutions unset and set the task's size instead")
        if o.head == "centernet":
            return CenterNetHead(body, self.num_classes, self.image_size,
                                 channels=o.head_channels, out_stride=o.out_stride,
                                 max_detections=o.max_detections)
        return SSDLiteHead(body, self.num_classes, self.image_size, channels=o.head_channels,
                           min_stride=o.min_stride, score_threshold=o.score_threshold,
                           nms_threshold=o.nms_threshold, max_detections=o.max_detections)

    def wrap(self, body: nn.Module) -> DetectionModel:
        head = self.make_head(body)
        self._heads[head.signature] = head
        return DetectionModel(body, head, self.normalization)

    def _head(self, outputs: torch.Tensor) -> CenterNetHead | SSDLiteHead:
        """The head that produced ``outputs``: losses and decoding depend on the options and
        on the output geometry (stride, default boxes), not on the weights, so any head of
        that geometry serves."""
        key = (CenterNetHead.output_signature(outputs, self.image_size)
               if self.options.head == "centernet" else SSDLiteHead.output_signature(outputs))
        head = self._heads.get(key)
        if head is None:
            raise ValueError(f"DetectionTask: no {self.options.head} head built for outputs of "
                             f"shape {tuple(outputs.shape)} (built: {sorted(self._heads)}); "
                             "build the model with this task's wrap() at the task's input "
                             f"size {self.image_size}")
        return head

    def loss(self, outputs: torch.Tensor, targets: list[Target]) -> dict[str, torch.Tensor]:
        """Named terms: ``heatmap``, ``size``, ``offset`` (centernet) or ``cls``, ``box``
        (ssdlite)."""
        return self._head(outputs).loss(outputs, targets)

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The head's distillation loss toward a teacher's outputs (in-place distillation)."""
        return self._head(student).distillation_loss(student, teacher)

    def postprocess(self, outputs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes" [K, 4] xyxy pixels, "scores" [K], "labels" [K]}``."""
        return self._head(outputs).decode(outputs)

    # -- metrics ------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """The declared metrics plus ``ap50_<class>`` for every class."""
        return [*super().metric_names(),
                *(f"ap50_{n.lower().replace(' ', '_')}" for n in self.class_names)]

    def meter(self) -> DetectionMeter:
        return DetectionMeter(self)

    # -- pictures -----------------------------------------------------------------------------
    def draw_predictions(self, inputs: torch.Tensor, targets: list[Target],
                         predictions: list[tuple[str, Any]], path: Any,
                         min_score: float = 0.3) -> Path:
        """A grid: one row per image; the ground-truth boxes (crowd / difficult dashed), then
        each labelled model's detections scoring at least ``min_score``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        names = self.class_names
        colours = plt.get_cmap("tab10")
        n, cols = len(inputs), 1 + len(predictions)
        fig, axes = plt.subplots(n, cols, figsize=(2.4 * cols, 2.4 * n), squeeze=False)

        def draw(ax: Any, boxes: Any, labels: Any, scores: Any = None, dashed: Any = None
                 ) -> None:
            for j, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(),
                                                  strict=True)):
                x1, y1, x2, y2 = box
                style = "--" if dashed is not None and bool(dashed[j]) else "-"
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=1.2,
                                       linestyle=style, edgecolor=colours(label % 10)))
                text = names[label] if label < len(names) else str(label)
                if scores is not None:
                    text += f" {float(scores[j]):.2f}"
                ax.text(x1, y1, text, fontsize=5, color="white", va="bottom",
                        bbox={"facecolor": colours(label % 10), "pad": 0.5, "linewidth": 0})

        for i in range(n):
            image = inputs[i].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
            t = targets[i]
            for j in range(cols):
                axes[i, j].imshow(image)
            ignore = t.get("iscrowd", torch.zeros(0)).bool().cpu()
            if "difficult" in t:
                ignore = ignore | t["difficult"].bool().cpu()
            draw(axes[i, 0], t["boxes"].cpu(), t["labels"].cpu(), dashed=ignore)
            for j, (_, preds) in enumerate(predictions):
                p = preds[i]
                keep = p["scores"].cpu() >= min_score
                draw(axes[i, 1 + j], p["boxes"].cpu()[keep], p["labels"].cpu()[keep],
                     p["scores"].cpu()[keep])
        titles = ["ground truth", *(f"{label} (score >= {min_score})"
                                    for label, _ in predictions)]
        return save_image_grid(fig, axes, titles, path, dpi=120, fontsize=7)


class DetectionMeter:
    """The split's detections and ground truth (AP is a whole-split metric), and the mean
    training loss."""

    def __init__(self, task: DetectionTask) -> None:
        self.task = task
        self.evaluator = DetectionEvaluator(task.num_classes, task.class_names,
                                            max_detections=task.options.max_detections)
        self.loss_sum, self.batches = 0.0, 0

    def update(self, outputs: torch.Tensor, predictions: list[Target],
               targets: list[Target]) -> None:
        terms = self.task.loss(outputs, targets)
        self.loss_sum += float(sum(t.detach() for t in terms.values()))
        self.batches += 1
        self.evaluator.add(predictions, targets)

    def compute(self) -> dict[str, float]:
        if self.batches == 0:
            raise ValueError("evaluate: the loader yielded no batches")
        # a size class no box of the split falls in has no AP (NaN): it is left out
        metrics = {k: float(v) for k, v in self.evaluator.compute().items()
                   if np.isfinite(v)}
        metrics["loss"] = self.loss_sum / self.batches
        return metrics
