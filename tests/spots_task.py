"""A test task that uses the whole task contract: targets that are lists of per-image dicts of
variable length (like detection's boxes), a loss of named terms, a custom collate, and
post-processing that only evaluation sees. Importing the module registers it as
``spots_test`` (configs name it with ``plugins: [spots_task]``).

Each 1x16x16 image holds 0 to 3 bright 3x3 spots on noise; its target is
``{"boxes": [k, 4] (x0, y0, x1, y1), "labels": [k]}``. The network predicts the number of spots
and their mean centre; ``postprocess`` turns that into ``{"count": int, "center": (x, y)}`` per
image, which is what the metrics score.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from nastk.core.registry import TASKS
from nastk.task.contract import Task

SIZE = 16


class SpotsDataset(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.images, self.targets = [], []
        for _ in range(n):
            img = rng.normal(0.0, 0.1, (1, SIZE, SIZE)).astype(np.float32)
            k = int(rng.integers(0, 4))
            boxes = []
            for _ in range(k):
                x, y = (int(v) for v in rng.integers(0, SIZE - 3, 2))
                img[0, y:y + 3, x:x + 3] += 1.0
                boxes.append([x, y, x + 3, y + 3])
            self.images.append(torch.from_numpy(img))
            self.targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                 "labels": torch.zeros(k, dtype=torch.int64)})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.images[i], self.targets[i]


class SpotsModel(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(body.out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.body(x)).flatten(1))


def _count_and_center(targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    counts = torch.tensor([float(len(t["labels"])) for t in targets])
    centers = torch.stack([((t["boxes"][:, :2] + t["boxes"][:, 2:]) / 2).mean(0) / SIZE
                           if len(t["labels"]) else torch.full((2,), 0.5) for t in targets])
    return counts, centers


class SpotsMeter:
    def __init__(self) -> None:
        self.hits, self.n, self.center_err = 0, 0, 0.0

    def update(self, outputs: torch.Tensor, predictions: Any, targets: Any) -> None:
        assert isinstance(outputs, torch.Tensor)
        assert isinstance(predictions, list) and all(isinstance(p, dict) for p in predictions), \
            "evaluation must see the task's post-processed predictions"
        assert isinstance(targets, list) and all(isinstance(t, dict) for t in targets)
        counts, centers = _count_and_center(targets)
        for p, c, ctr in zip(predictions, counts, centers, strict=True):
            self.hits += int(p["count"] == int(c))
            self.center_err += float((p["center"] - ctr).abs().mean())
            self.n += 1

    def compute(self) -> dict[str, float]:
        return {"count_accuracy": self.hits / self.n, "center_error": self.center_err / self.n}


class SpotsTask(Task):
    name: ClassVar[str] = "spots_test"
    primary_metric: ClassVar[str] = "count_accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("count_accuracy", "center_error")
    postprocessed: ClassVar[int] = 0  # calls of postprocess, across instances

    def __init__(self, n_samples: int = 96, seed: int = 0) -> None:
        self.n_samples, self.seed = n_samples, seed
        self._splits: dict[str, Dataset] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, SIZE, SIZE)

    def splits(self) -> dict[str, Dataset]:
        if self._splits is None:
            n_val = self.n_samples // 4
            self._splits = {"train": SpotsDataset(self.n_samples - n_val, self.seed),
                            "val": SpotsDataset(n_val, self.seed + 1)}
        return dict(self._splits)

    def collate(self, samples: list[Any]) -> Any:
        images, targets = zip(*samples, strict=True)
        return torch.stack(images), list(targets)

    def wrap(self, body: nn.Module) -> nn.Module:
        return SpotsModel(body)

    def loss(self, outputs: torch.Tensor, targets: Any) -> dict[str, torch.Tensor]:
        assert isinstance(outputs, torch.Tensor), "training must see the raw network outputs"
        counts, centers = _count_and_center(targets)
        counts, centers = counts.to(outputs.device), centers.to(outputs.device)
        return {"count": F.mse_loss(outputs[:, 0], counts),
                "center": F.mse_loss(outputs[:, 1:], centers)}

    def postprocess(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        type(self).postprocessed += 1
        return [{"count": int(torch.clamp(o[0], min=0).round()), "center": o[1:]}
                for o in outputs]

    def meter(self) -> SpotsMeter:
        return SpotsMeter()


if "spots_test" not in TASKS:
    TASKS.register("spots_test", SpotsTask)
