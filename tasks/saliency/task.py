"""Saliency prediction: synthetic scenes (default) or a local SALICON / MIT1003 / CAT2000 copy.

A sample is ``(image [3, H, W], {"density": [Hg, Wg], "fixations": [k, 2]})``; batches keep the
targets as a list of per-image dicts (:meth:`SaliencyTask.collate`: the number of fixations
differs per image). The network is a body followed by a 1x1 convolution to one channel,
upsampled to the input's size and squashed by a sigmoid: a saliency map in (0, 1).

Loss: SalNAS's composite ``KLD + (1 - CC) + (1 - sigmoid(NSS))`` as named terms, each weight
configurable (``loss_weights``). Metrics over every image of the split at the ground truth's
resolution (:class:`nastk.tasks.saliency.meter.SaliencyMeter`): AUC-Judd, AUC-Borji, shuffled
AUC, NSS, CC, KLD, SIM, and information gain against the centre-bias baseline fitted on the
training split (``ig``) and against a uniform map (``ig_uniform``). Self-KD blends density
maps and keeps the true fixations (:meth:`SaliencyTask.blend_targets`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from nastk.core.options import QuietDefaults, options_of
from nastk.data.augment import Augment, TargetLayout
from nastk.data.images import ImageInput, ImageSizeOptions, size_field
from nastk.data.preparation import PreparationOptions, PreparedData
from nastk.data.splits import CachedSplits, SplitOptions, holdout_splits, synthetic_splits
from nastk.nn.body import out_channels_of
from nastk.nn.normalization import Normalization, normalization_layer
from nastk.report.predictions import save_image_grid
from nastk.task.contract import Task
from nastk.tasks.saliency.baseline import CenterBias
from nastk.tasks.saliency.datasets import load_dataset
from nastk.tasks.saliency.losses import saliency_loss
from nastk.tasks.saliency.meter import SaliencyMeter
from nastk.tasks.saliency.synthetic import make_saliency_scenes

__all__ = ["AUGMENT_PRESET", "Blur", "SaliencyModel", "SaliencyTask", "SyntheticSaliency"]

#: the training augmentation of a real data set unless the config says otherwise: horizontal
#: flips (fixations flip with the image; no crop, which would cut the centre bias)
AUGMENT_PRESET = Augment(flip=0.5)

#: the layout of a saliency target for augmentation
TARGETS = TargetLayout(maps=("density",), points=("fixations",), points_on="density")


class Blur(BaseModel):
    """The Gaussian blur of predictions before scoring (at the ground truth's resolution)."""

    model_config = ConfigDict(extra="forbid")

    sigma: float = Field(gt=0.0, description="standard deviation in ground-truth pixels")
    kernel: int | None = Field(11, ge=3, description="taps of the (square) kernel, odd: 11 is "
                               "the SALICON benchmark's (11x11 at sigma 10.5); null: 4 sigma "
                               "each side")

    @model_validator(mode="after")
    def _odd(self) -> Blur:
        if self.kernel is not None and self.kernel % 2 == 0:
            raise ValueError(f"blur.kernel must be odd (a centred kernel), got {self.kernel}")
        return self


class SyntheticSaliency(Dataset):
    """The synthetic scenes as a dataset of ``(image, {"density", "fixations"})``."""

    def __init__(self, images: np.ndarray, densities: np.ndarray,
                 fixations: list[np.ndarray]) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.densities = torch.from_numpy(np.ascontiguousarray(densities))
        self.fixations = [torch.as_tensor(f, dtype=torch.int64).reshape(-1, 2)
                          for f in fixations]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[i], {"density": self.densities[i], "fixations": self.fixations[i]}


class SaliencyModel(nn.Module):
    """A body, a 1x1 convolution to one channel, bilinear upsampling to the input's size and a
    sigmoid: ``[N, 1, H, W]`` saliency maps in (0, 1)."""

    def __init__(self, body: nn.Module, normalization: Normalization | None = None) -> None:
        super().__init__()
        #: the inputs' normalisation (:mod:`nastk.nn.normalization`), ``None`` for none
        self.normalize = normalization_layer(normalization)
        self.body = body
        self.head = nn.Conv2d(out_channels_of(body), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(x if self.normalize is None else self.normalize(x)))
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


class SaliencyTask(PreparedData, ImageInput, CachedSplits, Task):
    """Saliency prediction scored by CC (and every benchmark metric, see the module
    docstring)."""

    name: ClassVar[str] = "saliency"
    augment_preset: ClassVar[Augment] = AUGMENT_PRESET
    target_layout = TARGETS
    primary_metric: ClassVar[str] = "cc"
    direction: ClassVar[Literal["max", "min"]] = "max"
    metrics: ClassVar[tuple[str, ...]] = ("auc_judd", "auc_borji", "sauc", "nss", "cc", "kld",
                                          "sim", "ig", "ig_uniform")

    class Options(QuietDefaults, PreparationOptions, SplitOptions, ImageSizeOptions):
        """Options of :class:`SaliencyTask` (``task.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")
        quiet_defaults: ClassVar[tuple[str, ...]] = ("blur", "augment", "normalize")

        dataset: Literal["synthetic", "salicon", "mit1003", "cat2000"] = "synthetic"
        root: Path | None = Field(None, description="salicon/mit1003/cat2000: the local folder")
        size: int | tuple[int, int] = size_field((48, 64))
        n_samples: int = Field(400, ge=10, description="synthetic: number of scenes")
        n_observers: int = Field(15, ge=1, description="synthetic: simulated observers")
        fixations_per_observer: int = Field(8, ge=1)
        loss_weights: dict[Literal["kld", "cc", "nss"], float] = Field(
            default_factory=lambda: {"kld": 1.0, "cc": 1.0, "nss": 1.0},
            description="weights of the loss terms (0 drops one)")
        blur_sigma: float | None = Field(None, gt=0.0, description="Gaussian blur (pixels) "
                                                                   "of predictions before "
                                                                   "scoring, 4 sigma each "
                                                                   "side (see blur)")
        blur: Blur | None = Field(None, description="Gaussian blur of predictions before "
                                  "scoring: {sigma, kernel} (SALICON's protocol: {sigma: 10.5, "
                                  "kernel: 11})")

        @model_validator(mode="after")
        def _one_blur(self) -> SaliencyTask.Options:
            if self.blur is not None and self.blur_sigma is not None:
                raise ValueError("give blur ({sigma, kernel}) or blur_sigma, not both")
            return self
        auc_splits: int = Field(20, ge=1, description="random-negative splits of AUC-Borji "
                                                      "and shuffled AUC")

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"task {self.name!r}")
        self._baseline: CenterBias | None = None

    def __repr__(self) -> str:
        return f"SaliencyTask(dataset={self.options.dataset!r})"

    # -- data ---------------------------------------------------------------------------------
    def build_splits(self) -> dict[str, Dataset]:
        """``train``, ``val`` and (when there is one) ``test`` datasets of ``(image [3,H,W],
        {"density", "fixations"})`` (built once, see :meth:`splits`); ``train`` augmented as
        ``augment`` says."""
        o = self.options
        if o.dataset != "synthetic":
            assert o.root is not None
            splits = holdout_splits(load_dataset(o.dataset, o.root, "train", self.image_size),
                                    o, str(o.root), self._official_test)
        else:
            images, densities, fixations = make_saliency_scenes(
                o.n_samples, self.image_size, o.n_observers, o.fixations_per_observer, o.seed)
            splits = synthetic_splits(o.n_samples, o, lambda ix: SyntheticSaliency(
                images[ix], densities[ix], [fixations[i] for i in ix]))
        splits["train"] = self.augmented(splits["train"])
        return splits

    def _official_test(self) -> Dataset | None:
        """The official validation split as ``test``; ``None`` for a copy without one."""
        o = self.options
        assert o.root is not None
        try:
            return load_dataset(o.dataset, o.root, "val", self.image_size)
        except ValueError:  # a data set without an official validation split
            return None

    def collate(self, samples: list[Any]) -> Any:
        images, targets = zip(*samples, strict=True)
        return torch.stack(images), list(targets)

    def center_bias(self) -> CenterBias:
        """The centre-bias baseline fitted on the training split's density maps (for the
        information gain and as the reference a model must beat)."""
        if self._baseline is None:
            train = self.splits()["train"]
            maps = [train[i][1]["density"] for i in range(len(train))]
            self._baseline = CenterBias().fit(maps)
        return self._baseline

    # -- model, loss, metrics -----------------------------------------------------------------
    def wrap(self, body: nn.Module) -> nn.Module:
        return SaliencyModel(body, self.normalization)


    def loss(self, outputs: torch.Tensor, targets: list[dict[str, torch.Tensor]]
             ) -> dict[str, torch.Tensor]:
        return saliency_loss(outputs, targets, weights=dict(self.options.loss_weights))

    def blend_targets(self, targets: list[dict[str, torch.Tensor]], teacher_outputs: Any,
                      alpha: float) -> list[dict[str, torch.Tensor]]:
        """Self-KD: each density map becomes ``alpha`` x the (sum-normalised) ground truth +
        ``(1 - alpha)`` x the teacher's (sum-normalised) map at the ground truth's resolution;
        the true fixations are kept (NSS is scored on them)."""
        out = []
        for target, t_map in zip(targets, teacher_outputs.detach(), strict=True):
            gt = target["density"].float()
            t = F.interpolate(t_map[None].reshape(1, 1, *t_map.shape[-2:]), size=gt.shape[-2:],
                              mode="bilinear", align_corners=False)[0, 0]
            gt_n = gt / gt.sum().clamp_min(1e-12)
            t_n = t / t.sum().clamp_min(1e-12)
            out.append({**target, "density": alpha * gt_n + (1.0 - alpha) * t_n})
        return out

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """In-place distillation: KL(teacher || student) of the sum-normalised maps."""
        s = student.flatten(1)
        t = teacher.detach().flatten(1)
        s = s / s.sum(1, keepdim=True).clamp_min(1e-12)
        t = t / t.sum(1, keepdim=True).clamp_min(1e-12)
        eps = 2.2204e-16
        return (t * torch.log(eps + t / (s + eps))).sum(1).mean()

    def draw_predictions(self, inputs: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                         predictions: list[tuple[str, Any]], path: Any) -> Path:
        """A grid: one row per image; the image, its ground-truth density with the fixations
        as dots, and each labelled prediction (a heat map at the image's size)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(inputs)
        cols = 2 + len(predictions)
        fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 1.8 * n), squeeze=False)
        for i in range(n):
            image = inputs[i].detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
            density = targets[i]["density"].detach().cpu().numpy()
            fix = targets[i]["fixations"].detach().cpu().numpy()
            axes[i, 0].imshow(image)
            axes[i, 1].imshow(density, cmap="inferno")
            if len(fix):
                axes[i, 1].scatter(fix[:, 1], fix[:, 0], s=3, c="cyan", linewidths=0)
            for j, (_, maps) in enumerate(predictions):
                axes[i, 2 + j].imshow(maps[i].detach().cpu().reshape(maps[i].shape[-2:]).numpy(),
                                      cmap="inferno")
        titles = ["image", "ground truth + fixations", *(label for label, _ in predictions)]
        return save_image_grid(fig, axes, titles, path)

    def meter(self) -> _SplitMeter:
        o = self.options
        sigma, kernel = ((o.blur.sigma, o.blur.kernel) if o.blur is not None
                         else (o.blur_sigma, None))
        return _SplitMeter(SaliencyMeter(blur_sigma=sigma, blur_kernel=kernel,
                                         auc_splits=o.auc_splits, seed=o.seed,
                                         baseline=self.center_bias()))


class _SplitMeter:
    """The engine's meter protocol around :class:`SaliencyMeter` (it scores the predictions,
    which for this task are the network's maps)."""

    def __init__(self, inner: SaliencyMeter) -> None:
        self.inner = inner

    def update(self, outputs: torch.Tensor, predictions: torch.Tensor, targets: Any) -> None:
        self.inner.update(predictions, targets)

    def compute(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.inner.compute().items()
                if isinstance(v, (int, float)) and k in SaliencyTask.metrics}
