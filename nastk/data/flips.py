"""Target-aware horizontal flips: the image and everything in its target that has a left and a
right, mirrored together, so a flip augments segmentation, saliency and detection samples
alike (a ``transform`` of any :class:`nastk.data.folders.FolderDataset`).

What :func:`hflip` mirrors in a target, by kind:

- a tensor target of two or more dims (a segmentation mask ``[H, W]``): along its last axis;
  a number or a 0-/1-dim tensor (a class label) is left as it is;
- in a dict target: the maps ``"density"``, ``"mask"`` and ``"masks"`` along their last axis;
  ``"boxes"`` (``[k, 4]`` xyxy in continuous pixel coordinates of the image: ``x1' = W - x2``,
  ``x2' = W - x1`` with ``W`` the image's width); ``"fixations"`` (``[k, 2]`` 0-based ``(row,
  col)`` pixel indices at the resolution of the ``"density"`` map, else of the image:
  ``col' = W_map - 1 - col``); every other entry (labels, areas, ids, names) is passed on
  untouched. Rows never change. The input is not modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

__all__ = ["MAP_KEYS", "RandomHFlip", "hflip"]

#: target entries that are maps over the image's pixels (mirrored along their last axis)
MAP_KEYS = ("density", "mask", "masks")


def _flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """xyxy boxes mirrored in an image ``width`` pixels wide."""
    if not boxes.numel():
        return boxes
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def _flip_points(points: torch.Tensor, width: int) -> torch.Tensor:
    """``(row, col)`` pixel indices mirrored on a map ``width`` pixels wide."""
    if not points.numel():
        return points
    out = points.clone()
    out[:, 1] = width - 1 - points[:, 1]
    return out


def hflip(image: torch.Tensor, target: Any) -> tuple[torch.Tensor, Any]:
    """Mirror a sample left-right: ``image`` (``[C, H, W]``) along its last axis and ``target``
    as the module docstring says."""
    if isinstance(target, torch.Tensor):
        return image.flip(-1), (target.flip(-1) if target.ndim >= 2 else target)
    if not isinstance(target, Mapping):
        return image.flip(-1), target
    out = dict(target)
    for key in MAP_KEYS:
        if key in target:
            out[key] = target[key].flip(-1)
    if "boxes" in target:
        out["boxes"] = _flip_boxes(target["boxes"], int(image.shape[-1]))
    if "fixations" in target:
        frame = target["density"] if "density" in target else image
        out["fixations"] = _flip_points(target["fixations"], int(frame.shape[-1]))
    return image.flip(-1), out


class RandomHFlip:
    """A ``transform`` applying :func:`hflip` with probability ``p``.

    The draws come from ``numpy.random.default_rng(seed)``; in a DataLoader worker the stream
    is ``default_rng([seed, worker_id + 1])``, so workers do not repeat each other's draws and
    a run is repeatable for a fixed number of workers.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHFlip: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.seed = int(seed)
        self._rng: np.random.Generator | None = None
        self._worker: int | None = None

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        worker = -1 if info is None else int(info.id)
        if self._rng is None or self._worker != worker:
            self._rng = np.random.default_rng([self.seed, worker + 1])
            self._worker = worker
        return self._rng

    def __call__(self, image: torch.Tensor, target: Any) -> tuple[torch.Tensor, Any]:
        if self._generator().random() < self.p:
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHFlip(p={self.p}, seed={self.seed})"
