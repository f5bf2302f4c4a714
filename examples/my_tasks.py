"""The README's task tutorial: a task with dict targets, a loss of named terms and
post-processing, registered as ``blobs``.

Each grey 16x16 image holds one Gaussian blob; the target is ``{"center": (x, y) in [0, 1],
"radius": r in pixels}``. The network regresses both; the search minimises the mean distance
between the predicted and the true centre, in pixels.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import Dataset

from nastk.core.registry import TASKS
from nastk.task.contract import Task


class Blobs(Dataset):
    """``(image [1, S, S], {"center": [2], "radius": []})`` samples, drawn once from ``seed``."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        centers = rng.uniform(0.2, 0.8, (n, 2)).astype(np.float32)
        radii = rng.uniform(1.0, 3.0, n).astype(np.float32)
        self.images = torch.stack([torch.from_numpy(
            np.exp(-((xx - cx * size) ** 2 + (yy - cy * size) ** 2) / (2 * r * r))[None]
            + rng.normal(0, 0.05, (1, size, size)).astype(np.float32))
            for (cx, cy), r in zip(centers, radii, strict=True)])
        self.centers, self.radii = torch.from_numpy(centers), torch.from_numpy(radii)

    def __len__(self) -> int:
        return len(self.radii)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[i], {"center": self.centers[i], "radius": self.radii[i]}


class BlobModel(nn.Module):
    """The space's body, global average pooling, and a linear layer to (x, y, radius)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body  # the engine finds the body here (costs, pretrained weights)
        self.head = nn.Linear(body.out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


class BlobMeter:
    """Mean centre distance and radius error (pixels) over a split."""

    def __init__(self, size: int) -> None:
        self.size, self.n, self.center, self.radius = size, 0, 0.0, 0.0

    def update(self, outputs: torch.Tensor, predictions: dict[str, torch.Tensor],
               targets: dict[str, torch.Tensor]) -> None:
        d = (predictions["center"] - targets["center"]).norm(dim=1) * self.size
        self.center += float(d.sum())
        self.radius += float((predictions["radius"] - targets["radius"]).abs().sum())
        self.n += len(d)

    def compute(self) -> dict[str, float]:
        return {"center_error": self.center / self.n, "radius_error": self.radius / self.n}


@TASKS.register("blobs")
class BlobTask(Task):
    """Locate one blob per image; scored by the centre's distance in pixels (lower is better)."""

    name: ClassVar[str] = "blobs"
    primary_metric: ClassVar[str] = "center_error"
    direction: ClassVar[Literal["max", "min"]] = "min"
    metrics: ClassVar[tuple[str, ...]] = ("center_error", "radius_error")  # evaluate's keys

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")

        n_samples: int = Field(400, ge=20)
        size: int = Field(16, ge=8)
        seed: int = 0

    def __init__(self, **options: Any) -> None:
        self.options = self.Options(**options)
        self._splits: dict[str, Dataset] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.options.size, self.options.size)

    def splits(self) -> dict[str, Dataset]:
        if self._splits is None:
            o = self.options
            n_val = o.n_samples // 5
            self._splits = {"train": Blobs(o.n_samples - n_val, o.size, o.seed),
                            "val": Blobs(n_val, o.size, o.seed + 1)}
        return dict(self._splits)

    def wrap(self, body: nn.Module) -> nn.Module:
        return BlobModel(body)

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
        # named terms: their sum is optimised, each is recorded as train_loss_<term>
        return {"center": F.mse_loss(outputs[:, :2], targets["center"]),
                "radius": 0.01 * F.mse_loss(outputs[:, 2], targets["radius"])}

    def postprocess(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        # evaluation only: clamp to what a prediction can be
        return {"center": outputs[:, :2].clamp(0, 1), "radius": outputs[:, 2].clamp(min=0)}

    def meter(self) -> BlobMeter:
        return BlobMeter(self.options.size)
