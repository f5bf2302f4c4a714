"""Image classification: generated glyphs (the default) or shapes, scikit-learn's digits, or a
folder of class folders (the ImageNet layout, :mod:`nastk.tasks.classification.imagefolder`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from nastk.core.options import QuietDefaults, options_of
from nastk.data.augment import Augment, Jitter
from nastk.data.images import ImageSizeOptions, check_size
from nastk.data.preparation import PreparationOptions, PreparedData
from nastk.data.splits import CachedSplits, check_data_options, holdout_indices
from nastk.nn.body import out_channels_of
from nastk.nn.normalization import IMAGENET, Normalization, normalization_layer
from nastk.task.contract import Task
from nastk.tasks.classification.imagefolder import ImageFolder, class_folders
from nastk.tasks.classification.synthetic import MAX_GLYPHS, SHAPES, make_glyphs, make_shapes

__all__ = ["AccuracyMeter", "ClassificationModel", "ClassificationTask"]


#: per data set, the values that options left unset take (``imagefolder``'s ``test_fraction``
#: is settled when the splits are built: 0.1 without ``root/val``, none with it)
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "glyphs": {"n_samples": 4000, "image_size": 10, "num_classes": 16, "val_fraction": 0.35,
               "test_fraction": 0.15, "channels": 1},
    "synthetic": {"n_samples": 3000, "image_size": 16, "num_classes": 6, "val_fraction": 0.2,
                  "test_fraction": 0.2, "channels": 1},
    "digits": {"val_fraction": 0.2, "test_fraction": 0.2, "channels": 1},
    "imagefolder": {"val_fraction": 0.1, "channels": 3, "size": 32, "stratify": True,
                    "data_check": "full"},
}

#: the options only ``dataset: imagefolder`` reads (left out of the options' dump otherwise,
#: so that a generated data set's options, and a run's identity, are what they were)
FOLDER_OPTIONS = ("root", "size", "stratify", "data_check")

#: the training augmentation of an image folder unless the config says otherwise: random
#: resized crops of 8% to 100% of the area, horizontal flips, and once-for-all's ImageNet
#: colour jitter (brightness 32/255, saturation 0.5)
AUGMENT_PRESET = Augment(flip=0.5, resized_crop=(0.08, 1.0),
                         jitter=Jitter(brightness=32 / 255, saturation=0.5))
#: ImageNet's statistics for grey images (the means of its three channels')
IMAGENET_GREY = Normalization(mean=(sum(IMAGENET.mean) / 3,), std=(sum(IMAGENET.std) / 3,))
#: the options only the generated data sets read, refused with ``imagefolder``
GENERATED_OPTIONS = ("n_samples", "image_size", "num_classes")
#: ``imagefolder``'s test share of ``root/train`` when there is no ``root/val``
FOLDER_TEST_FRACTION = 0.1


def _misplaced(name: str, dataset: str) -> str:
    """Why option ``name`` is refused with ``dataset``."""
    if dataset == "imagefolder":
        why = {"image_size": "use size, the side (or (height, width)) images are resized to",
               "num_classes": "the classes are root/train's subfolders",
               "n_samples": "every image under root is read"}[name]
        return f"{name}: not an option of dataset 'imagefolder' ({why}); leave it unset"
    hint = "; generated images take image_size" if name == "size" else ""
    return (f"{name}: only dataset 'imagefolder' reads it, the dataset is {dataset!r} "
            f"(allowed datasets: glyphs, synthetic, digits, imagefolder){hint}")


class ClassificationModel(nn.Module):
    """A search space's body followed by global average pooling, dropout and a linear layer;
    with ``hidden``, a 1x1 conv (no bias) to ``hidden`` channels and h-swish after the pooling
    (``pre_logits``: MobileNetV3's and once-for-all's feature-mix layer)."""

    def __init__(self, body: nn.Module, num_classes: int, dropout: float = 0.0,
                 normalization: Normalization | None = None, in_channels: int = 3,
                 hidden: int | None = None) -> None:
        super().__init__()
        channels = out_channels_of(body)
        #: the inputs' normalisation (:mod:`nastk.nn.normalization`), ``None`` for none
        self.normalize = normalization_layer(normalization, in_channels)
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = (nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False),
                                         nn.Hardswish()) if hidden else None)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(hidden or channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            x = self.normalize(x)
        x = self.pool(self.body(x))
        if self.pre_logits is not None:
            x = self.pre_logits(x)
        return self.head(self.dropout(x.flatten(1)))


class ClassificationTask(PreparedData, CachedSplits, Task):
    """Image classification (generated glyphs or shapes, sklearn digits, or an image folder).

    ``dataset: glyphs`` (the default) draws ``n_samples`` images of 16 random 5x5 glyphs, a data
    set on which small-CNN architectures differ by three times the seed-to-seed noise;
    ``dataset: synthetic`` draws geometric shapes (both:
    :mod:`nastk.tasks.classification.synthetic`);
    ``dataset: digits`` uses scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
    classes, no download), on which nearly every architecture scores alike. All are split
    train/val/test, stratified by class,
    with ``seed``.

    ``dataset: imagefolder`` reads ``root/train/<class>/*`` (and ``root/val/<class>/*`` when
    there is one: the ImageNet layout, :mod:`nastk.tasks.classification.imagefolder`), every
    image resized to ``size``; the classes are ``root/train``'s sorted subfolder names. As in
    the other tasks, ``val`` (the search's reward split) is a held-out ``val_fraction`` of
    ``root/train`` and ``test`` is ``root/val``, the official validation split; without
    ``root/val``, ``test`` is a held-out ``test_fraction`` of ``root/train`` (0.1 unless set;
    0: no test split). Held-out shares are drawn with ``seed``, stratified by class unless
    ``stratify: false``.

    The model is the space's body plus global average pooling, optional dropout
    and a linear classifier; the loss is cross entropy.
    """

    name: ClassVar[str] = "classification"
    augment_preset: ClassVar[Augment] = AUGMENT_PRESET
    primary_metric: ClassVar[str] = "accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "loss")
    direction: ClassVar[Literal["max", "min"]] = "max"

    class Options(QuietDefaults, PreparationOptions):
        """Options of :class:`ClassificationTask` (``task.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")
        # the folder options stay unset (None) unless the dataset is imagefolder, which fills
        # them in: a generated data set's dump, and a run's identity, are what they were
        quiet_defaults: ClassVar[tuple[str, ...]] = ("augment", "normalize", "head_hidden",
                                                     *FOLDER_OPTIONS)

        dataset: Literal["glyphs", "synthetic", "digits", "imagefolder"] = Field(
            "glyphs", description="glyphs: 16 random 5x5 glyphs (generated; small CNNs "
            "differ on it by 3x the seed noise); synthetic: geometric shapes (generated); "
            "digits: scikit-learn's bundled 8x8 handwritten digits; imagefolder: your "
            "root/train/<class>/ (and root/val/<class>/) image folders, the ImageNet layout")
        val_fraction: float | None = Field(
            None, gt=0.0, lt=1.0, description="share of all examples (default 0.35 for "
            "glyphs, 0.2 synthetic and digits); imagefolder: share of root/train held out as "
            "val (default 0.1)")
        test_fraction: float | None = Field(
            None, ge=0.0, lt=1.0, description="share of all examples; 0 means no test split "
            "(default 0.15 for glyphs, else 0.2); imagefolder without root/val: share of "
            "root/train held out as test (default 0.1); with root/val, test is root/val and "
            "this stays unset")
        seed: int = Field(0, description="seed of the split (and of the generated data)")
        n_samples: int | None = Field(None, ge=10, description="generated: number of images "
                                      "(default 4000 glyphs, 3000 shapes)")
        image_size: int | None = Field(None, ge=8, le=256, description="generated: image side "
                                       "in pixels (default 10 glyphs, 16 shapes)")
        num_classes: int | None = Field(
            None, ge=2, le=MAX_GLYPHS, description=f"generated: classes (default 16 glyphs, at "
            f"most {MAX_GLYPHS}; 6 shapes, at most {len(SHAPES)})")
        noise: float = Field(0.1, ge=0.0, description="generated: std of per-pixel noise")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the classifier")
        head_hidden: int | None = Field(
            None, ge=1, description="a 1x1 conv (no bias) to this many channels and h-swish "
            "between the pooling and the classifier (MobileNetV3's feature-mix layer; 1280 to "
            "load a once-for-all checkpoint's classifier); unset: pooling, then the classifier")
        channels: Literal[1, 3] | None = Field(
            None, description="image channels (default 1; imagefolder 3): 3 repeats the grey "
                              "images as RGB, so that a body pretrained here fits RGB tasks "
                              "(segmentation, saliency, detection); imagefolder: 3 reads RGB, "
                              "1 grey levels")
        root: Path | None = Field(None, description="imagefolder: the folder holding train/"
                                                    "<class>/ (and optionally val/<class>/)")
        size: int | tuple[int, int] | None = Field(
            None, description="imagefolder: image side, or (height, width), every image is "
                              "resized to (default 32)")
        stratify: bool | None = Field(
            None, description="imagefolder: draw the held-out shares of root/train stratified "
                              "by class (default true); false: a plain seeded share")
        data_check: Literal["full", "sample", "first-batch"] | None = Field(
            None, description="imagefolder: what a run checks of the folder before its first "
            "trial, besides reading each split's first batch (default full): full, every file "
            "exists and its image header decodes; sample, 32 items spread over each split are "
            "read whole; first-batch, nothing more")

        @field_validator("size")
        @classmethod
        def _size(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
            if v is None:
                return v
            check_size(v, "size")
            if any(s < ImageSizeOptions.min_side for s in ((v,) if isinstance(v, int) else v)):
                raise ValueError(f"size {v} is too small; use at least "
                                 f"{ImageSizeOptions.min_side} pixels a side")
            return v

        @model_validator(mode="after")
        def _defaults(self) -> ClassificationTask.Options:
            folder = self.dataset == "imagefolder"
            for name in GENERATED_OPTIONS if folder else FOLDER_OPTIONS:
                if getattr(self, name) is not None:
                    raise ValueError(_misplaced(name, self.dataset))
            for name, value in DATASET_DEFAULTS[self.dataset].items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
            if folder:
                if self.root is None:
                    raise ValueError("root: dataset 'imagefolder' needs `root`, the folder "
                                     "holding train/<class>/ (and optionally val/<class>/)")
                if self.test_fraction is not None:
                    check_data_options("synthetic", None, self.val_fraction,
                                       self.test_fraction)
                return self
            if self.dataset == "synthetic" and self.num_classes > len(SHAPES):
                raise ValueError(f"num_classes {self.num_classes}: the shapes data set has "
                                 f"{len(SHAPES)} shapes; use at most {len(SHAPES)} (or "
                                 f"dataset: glyphs, up to {MAX_GLYPHS} classes)")
            check_data_options("synthetic", None, self.val_fraction, self.test_fraction)
            return self

        @property
        def folder_size(self) -> tuple[int, int]:
            """imagefolder: ``size`` as ``(height, width)``."""
            s = self.size
            assert s is not None
            return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"task {self.name!r}")
        #: split name -> sorted indices into the full data set (filled by :meth:`splits`;
        #: imagefolder: into ``root/train``'s items, for the splits drawn from it)
        self.split_indices: dict[str, np.ndarray] = {}
        self._classes: list[str] | None = None

    def __repr__(self) -> str:
        return f"ClassificationTask(dataset={self.options.dataset!r})"

    # -- data ---------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = self.options.channels
        if self.options.dataset == "digits":
            return (c, 8, 8)
        if self.options.dataset == "imagefolder":
            return (c, *self.options.folder_size)
        return (c, self.options.image_size, self.options.image_size)

    @property
    def num_classes(self) -> int:
        if self.options.dataset == "imagefolder":
            return len(self.class_names)
        return 10 if self.options.dataset == "digits" else self.options.num_classes

    @property
    def class_names(self) -> list[str]:
        """imagefolder: the class names, ``root/train``'s sorted subfolders (a label is an
        index into them); the generated data sets and digits: ``'0'``, ``'1'``, ..."""
        if self.options.dataset != "imagefolder":
            return [str(i) for i in range(self.num_classes)]
        if self._classes is None:  # (building the splits sets them too)
            train = Path(self.options.root).expanduser() / "train"  # type: ignore[arg-type]
            names = class_folders(train) if train.is_dir() else []
            # none: the loader raises its error, naming the path and the layout
            self._classes = names or list(self._folder("train").classes)
        return list(self._classes)

    def _folder(self, split: str, classes: list[str] | None = None) -> ImageFolder:
        o = self.options
        assert o.root is not None and o.channels is not None
        return ImageFolder(o.root, split, o.folder_size, classes=classes, channels=o.channels)

    def _load_grey(self) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        if o.dataset == "digits":
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
            return x, digits.target.astype(np.int64)
        if o.dataset == "glyphs":
            return make_glyphs(o.n_samples, o.image_size, o.num_classes, o.noise, o.seed)
        return make_shapes(o.n_samples, o.image_size, o.num_classes, o.noise, o.seed)

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._load_grey()
        if self.options.channels == 3:
            x = np.ascontiguousarray(np.repeat(x, 3, axis=1))
        return x, y

    def build_splits(self) -> dict[str, Dataset]:
        """``train``, ``val`` and (unless ``test_fraction`` is 0) ``test`` TensorDatasets of
        ``(image, label)``, stratified by class (built once, see :meth:`splits`;
        :attr:`split_indices` says which examples of the full data set each split holds);
        imagefolder: see :meth:`_folder_splits`."""
        from sklearn.model_selection import train_test_split

        o = self.options
        if o.dataset == "imagefolder":
            return self._folder_splits()
        x, y = self._load()
        idx = np.arange(len(y))
        parts: dict[str, np.ndarray] = {}
        if o.test_fraction > 0:
            idx, parts["test"] = train_test_split(idx, test_size=o.test_fraction,
                                                  stratify=y[idx], random_state=o.seed)
        val_share = o.val_fraction / (1.0 - o.test_fraction)
        parts["train"], parts["val"] = train_test_split(idx, test_size=val_share,
                                                        stratify=y[idx], random_state=o.seed)
        order = [n for n in ("train", "val", "test") if n in parts]
        self.split_indices = {n: np.sort(parts[n]) for n in order}
        return self._augmented({n: TensorDataset(torch.from_numpy(x[ix]), torch.from_numpy(y[ix]))
                                for n, ix in self.split_indices.items()})

    def _folder_splits(self) -> dict[str, Dataset]:
        """imagefolder: ``train`` and ``val`` (a held-out ``val_fraction``) are subsets of
        ``root/train``'s :class:`ImageFolder`; ``test`` is ``root/val``'s when there is one,
        else a held-out ``test_fraction`` of ``root/train`` (none when it is 0)."""
        o = self.options
        train = self._folder("train")
        self._classes = list(train.classes)
        labels = train.labels
        where = f"imagefolder {train.root / 'train'}"
        idx = np.arange(len(train))
        parts: dict[str, np.ndarray] = {}
        test: Dataset | None = None
        if (train.root / "val").is_dir():
            if o.test_fraction is not None:
                raise ValueError(f"test_fraction: {train.root / 'val'} exists and is the test "
                                 f"split; leave test_fraction unset (got {o.test_fraction}), "
                                 "or move root/val away to hold out a test share of "
                                 "root/train")
            test = self._folder("val", train.classes)
        else:
            test_fraction = FOLDER_TEST_FRACTION if o.test_fraction is None else o.test_fraction
            check_data_options("synthetic", None, o.val_fraction, test_fraction)
            if test_fraction > 0:
                idx, parts["test"] = self._hold_out(idx, labels, test_fraction,
                                                    "test_fraction", where)
            val_share = o.val_fraction / (1.0 - test_fraction)  # of what the test left
            idx, parts["val"] = self._hold_out(idx, labels, val_share, "val_fraction", where)
            parts["train"] = idx
            self.split_indices = {n: np.sort(parts[n]) for n in ("train", "val", "test")
                                  if n in parts}
            return self._augmented({n: Subset(train, ix.tolist())
                                    for n, ix in self.split_indices.items()})
        idx, parts["val"] = self._hold_out(idx, labels, o.val_fraction, "val_fraction", where)
        self.split_indices = {"train": np.sort(idx), "val": np.sort(parts["val"])}
        out: dict[str, Dataset] = {n: Subset(train, ix.tolist())
                                   for n, ix in self.split_indices.items()}
        out["test"] = test
        return self._augmented(out)

    def _augmented(self, splits: dict[str, Dataset]) -> dict[str, Dataset]:
        """``splits`` with ``train`` augmented as the ``augment`` option says."""
        splits["train"] = self.augmented(splits["train"])
        return splits

    @property
    def real_data(self) -> bool:
        """Whether the task reads a real data set (an image folder; the others are generated
        or, like digits, bundled and tiny)."""
        return self.options.dataset == "imagefolder"

    def _hold_out(self, idx: np.ndarray, labels: np.ndarray, fraction: float, field: str,
                  where: str) -> tuple[np.ndarray, np.ndarray]:
        """``(kept, held_out)`` entries of ``idx``: a seeded ``fraction`` of them held out,
        stratified by ``labels`` when the ``stratify`` option says so."""
        o = self.options
        if not o.stratify:
            try:
                kept, held = holdout_indices(len(idx), fraction, o.seed, where)
            except ValueError:
                raise ValueError(f"{field}: {where}: {len(idx)} images are too few to hold out "
                                 f"{fraction:.0%} of them") from None
            return idx[kept], idx[held]
        from sklearn.model_selection import train_test_split

        try:
            kept, held = train_test_split(idx, test_size=fraction, stratify=labels[idx],
                                          random_state=o.seed)
        except ValueError as err:
            raise ValueError(
                f"{field}: {where}: cannot hold out a share of {fraction:.3g} of {len(idx)} "
                f"images stratified by their {len(np.unique(labels[idx]))} classes ({err}); "
                "add images, change the fraction, or set stratify: false") from None
        return kept, held

    # -- model, loss, metrics -----------------------------------------------------------------
    def wrap(self, body: nn.Module) -> nn.Module:
        return ClassificationModel(body, self.num_classes, self.options.dropout,
                                   self.normalization, self.input_shape[0],
                                   self.options.head_hidden)

    @property
    def normalization(self) -> Normalization | None:
        """The inputs' normalisation (the ``normalize`` option resolved; ImageNet's
        statistics averaged over the channels for grey images)."""
        norm = super().normalization
        if norm is IMAGENET and self.options.channels == 1:
            return IMAGENET_GREY
        return norm

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def blend_targets(self, targets: torch.Tensor, teacher_outputs: torch.Tensor,
                      alpha: float) -> torch.Tensor:
        """Self-KD: ``alpha`` x one-hot labels + ``(1 - alpha)`` x the teacher's softmax (class
        probabilities, which the cross-entropy loss accepts as soft targets)."""
        hard = targets if targets.is_floating_point() else F.one_hot(
            targets, self.num_classes).to(teacher_outputs.dtype)
        return alpha * hard + (1.0 - alpha) * F.softmax(teacher_outputs.detach(), dim=1)

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL(teacher || student) on class probabilities (soft-target cross-entropy up to a
        constant), the teacher detached."""
        return F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher.detach(), dim=1),
                        reduction="batchmean")

    def meter(self) -> AccuracyMeter:
        """``accuracy`` and mean cross-entropy ``loss`` over a split (the engine's evaluation
        loop feeds it; see :meth:`nastk.task.contract.Task.evaluate`)."""
        return AccuracyMeter()


class AccuracyMeter:
    """Streaming top-1 accuracy and mean cross-entropy over batches of logits."""

    def __init__(self) -> None:
        self.correct, self.total, self.loss_sum = 0, 0, 0.0

    def update(self, outputs: torch.Tensor, predictions: torch.Tensor,
               targets: torch.Tensor) -> None:
        self.loss_sum += float(F.cross_entropy(outputs, targets, reduction="sum"))
        self.correct += int((predictions.argmax(dim=1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> dict[str, float]:
        if self.total == 0:
            raise ValueError("evaluate: the loader yielded no examples")
        return {"accuracy": self.correct / self.total, "loss": self.loss_sum / self.total}
