"""Image classification: generated glyphs (the default) or shapes, or scikit-learn's digits."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from nastk.core.options import options_of
from nastk.data.splits import CachedSplits, check_data_options
from nastk.nn.body import out_channels_of
from nastk.task.contract import Task
from nastk.tasks.classification.synthetic import MAX_GLYPHS, SHAPES, make_glyphs, make_shapes

__all__ = ["AccuracyMeter", "ClassificationModel", "ClassificationTask"]


#: per data set, the values that options left unset take
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "glyphs": {"n_samples": 4000, "image_size": 10, "num_classes": 16, "val_fraction": 0.35,
               "test_fraction": 0.15},
    "synthetic": {"n_samples": 3000, "image_size": 16, "num_classes": 6, "val_fraction": 0.2,
                  "test_fraction": 0.2},
    "digits": {"val_fraction": 0.2, "test_fraction": 0.2},
}


class ClassificationModel(nn.Module):
    """A search space's body followed by global average pooling, dropout and a linear layer."""

    def __init__(self, body: nn.Module, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        channels = out_channels_of(body)
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.body(x)).flatten(1)
        return self.head(self.dropout(x))


class ClassificationTask(CachedSplits, Task):
    """Image classification (generated glyphs or shapes, or sklearn digits), scored by accuracy.

    ``dataset: glyphs`` (the default) draws ``n_samples`` images of 16 random 5x5 glyphs, a data
    set on which small-CNN architectures differ by three times the seed-to-seed noise;
    ``dataset: synthetic`` draws geometric shapes (both:
    :mod:`nastk.tasks.classification.synthetic`);
    ``dataset: digits`` uses scikit-learn's bundled 8x8 handwritten digits (1797 images, 10
    classes, no download), on which nearly every architecture scores alike. All are split
    train/val/test, stratified by class,
    with ``seed``. The model is the space's body plus global average pooling, optional dropout
    and a linear classifier; the loss is cross entropy.
    """

    name: ClassVar[str] = "classification"
    primary_metric: ClassVar[str] = "accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "loss")
    direction: ClassVar[Literal["max", "min"]] = "max"

    class Options(BaseModel):
        """Options of :class:`ClassificationTask` (``task.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        dataset: Literal["glyphs", "synthetic", "digits"] = Field(
            "glyphs", description="glyphs: 16 random 5x5 glyphs (generated; small CNNs "
            "differ on it by 3x the seed noise); synthetic: geometric shapes (generated); "
            "digits: scikit-learn's bundled 8x8 handwritten digits")
        val_fraction: float | None = Field(
            None, gt=0.0, lt=1.0, description="share of all examples (default 0.35 for "
            "glyphs, else 0.2)")
        test_fraction: float | None = Field(
            None, ge=0.0, lt=1.0, description="share of all examples; 0 means no test split "
            "(default 0.15 for glyphs, else 0.2)")
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
        channels: Literal[1, 3] = Field(
            1, description="image channels: 3 repeats the grey images as RGB, so that a body "
                           "pretrained here fits RGB tasks (segmentation, saliency, detection)")

        @model_validator(mode="after")
        def _defaults(self) -> ClassificationTask.Options:
            for name, value in DATASET_DEFAULTS[self.dataset].items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
            if self.dataset == "synthetic" and self.num_classes > len(SHAPES):
                raise ValueError(f"num_classes {self.num_classes}: the shapes data set has "
                                 f"{len(SHAPES)} shapes; use at most {len(SHAPES)} (or "
                                 f"dataset: glyphs, up to {MAX_GLYPHS} classes)")
            check_data_options("synthetic", None, self.val_fraction, self.test_fraction)
            return self

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"task {self.name!r}")
        #: split name -> sorted indices into the full data set (filled by :meth:`splits`)
        self.split_indices: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"ClassificationTask(dataset={self.options.dataset!r})"

    # -- data ---------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = self.options.channels
        if self.options.dataset == "digits":
            return (c, 8, 8)
        return (c, self.options.image_size, self.options.image_size)

    @property
    def num_classes(self) -> int:
        return 10 if self.options.dataset == "digits" else self.options.num_classes

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
        :attr:`split_indices` says which examples of the full data set each split holds)."""
        from sklearn.model_selection import train_test_split

        o = self.options
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
        return {n: TensorDataset(torch.from_numpy(x[ix]), torch.from_numpy(y[ix]))
                for n, ix in self.split_indices.items()}

    # -- model, loss, metrics -----------------------------------------------------------------
    def wrap(self, body: nn.Module) -> nn.Module:
        return ClassificationModel(body, self.num_classes, self.options.dropout)

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
