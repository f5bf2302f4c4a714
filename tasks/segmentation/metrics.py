"""Streaming semantic-segmentation metrics from a confusion matrix.

:class:`ConfusionMatrix` accumulates a ``C x C`` matrix of pixel counts over any number of
batches (rows = ground truth, columns = prediction); :func:`scores_from_confusion` turns such a
matrix into the usual scores:

- ``pixel_accuracy``: correctly labelled pixels / counted pixels;
- ``mean_accuracy``: mean over the classes present in the ground truth of the per-class
  recall ``TP / (TP + FN)``;
- ``miou``: mean over classes of ``IoU = TP / (TP + FP + FN)``; a class with an empty union
  (neither in the ground truth nor predicted) has IoU NaN and is left out of the mean, a class
  predicted but absent from the ground truth has IoU 0 and counts;
- ``fw_iou``: frequency-weighted IoU, ``sum_c freq_c * IoU_c`` with ``freq_c`` the share of
  ground-truth pixels of class ``c``;
- ``score``: the geometric mean of ``miou``, ``mean_accuracy`` and ``fw_iou`` (the reward of
  nas-segm, Nekrasov et al. 2019).

Pixels whose target is the ignore index (255 by default) are not counted at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ConfusionMatrix", "scores_from_confusion"]


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a RuntimeWarning) if there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def scores_from_confusion(matrix: np.ndarray, omit_classes: Sequence[int] = ()) -> dict[str, Any]:
    """Segmentation scores of a confusion ``matrix`` (``C x C`` counts, rows = ground truth,
    columns = prediction).

    Returns ``pixel_accuracy``, ``mean_accuracy``, ``miou``, ``fw_iou`` and ``score`` (floats),
    and ``iou`` and ``accuracy_per_class`` (lists of ``C`` floats; NaN for a class with an empty
    union, respectively a class absent from the ground truth); see the module docstring.

    ``omit_classes`` lists class ids left out of the *class means* — ``miou``,
    ``mean_accuracy``, ``fw_iou`` (whose frequencies are renormalised over the remaining
    classes) and hence ``score`` — e.g. a background class. It does **not** change
    ``pixel_accuracy``, which always counts every non-ignored pixel, nor the per-class lists.
    A class mean with no class left to average is NaN, and so is then ``score``.

    Raises ``ValueError`` if the matrix is not square, has negative entries, counts no pixel at
    all, or ``omit_classes`` names a class outside ``[0, C)``.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"the confusion matrix must be square C x C with C >= 1, "
                         f"got shape {m.shape}")
    m = m.astype(np.float64)
    if np.isnan(m).any() or (m < 0).any():
        raise ValueError("the confusion matrix must hold non-negative pixel counts")
    num_classes = m.shape[0]
    omit = {int(c) for c in omit_classes}
    bad = sorted(c for c in omit if not 0 <= c < num_classes)
    if bad:
        raise ValueError(f"omit_classes {bad} are not class ids of a {num_classes}-class "
                         f"confusion matrix (valid: 0..{num_classes - 1})")
    total = m.sum()
    if total == 0:
        raise ValueError("no pixel was counted: the confusion matrix is empty (every target "
                         "pixel was the ignore index, or no batch was added)")

    tp = np.diag(m)
    gt = m.sum(axis=1)  # pixels of each class in the ground truth
    pred = m.sum(axis=0)  # pixels predicted as each class
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)

    keep = np.array([c not in omit for c in range(num_classes)])
    miou = _nanmean(iou[keep])
    mean_accuracy = _nanmean(acc[keep])
    gt_kept = gt[keep]
    if gt_kept.sum() > 0:
        freq = gt_kept / gt_kept.sum()
        # a NaN IoU has an empty union, hence no ground-truth pixel: its frequency is 0
        fw_iou = float(np.sum(freq * np.nan_to_num(iou[keep], nan=0.0)))
    else:
        fw_iou = math.nan
    parts = (miou, mean_accuracy, fw_iou)
    if any(math.isnan(p) for p in parts):
        score = math.nan
    else:
        score = float(np.prod(parts)) ** (1.0 / 3.0)
    return {
        "pixel_accuracy": float(tp.sum() / total),
        "mean_accuracy": mean_accuracy,
        "miou": miou,
        "fw_iou": fw_iou,
        "score": score,
        "iou": [float(v) for v in iou],
        "accuracy_per_class": [float(v) for v in acc],
    }


class ConfusionMatrix:
    """A streaming ``num_classes x num_classes`` confusion matrix (rows = ground truth, columns
    = prediction).

    Call :meth:`update` once per batch and :meth:`compute` at the end. Target pixels equal to
    ``ignore_index`` are skipped (``None``: every pixel counts). Counts are kept as ``int64`` on
    the CPU; the per-batch counting runs on the device of the inputs.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a valid class id of "
                             f"num_classes={num_classes}; choose a value outside "
                             f"0..{num_classes - 1} (e.g. 255) or None")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._counts = torch.zeros(num_classes * num_classes, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, pixels={self.total})")

    # -- accumulation -------------------------------------------------------------------------
    def _labels(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred`` as labels of the same shape as ``target`` (argmax of logits over dim 1)."""
        if pred.shape == target.shape:
            if pred.is_floating_point() or pred.is_complex() or pred.dtype == torch.bool:
                raise TypeError(f"pred has the shape of target {tuple(target.shape)}, so it "
                                f"must hold integer labels, got dtype {pred.dtype}; pass logits "
                                f"as [B, C, H, W]")
            return pred
        if (pred.dim() == target.dim() + 1 and pred.dim() >= 2
                and pred.shape[0] == target.shape[0] and pred.shape[2:] == target.shape[1:]):
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"logits have {pred.shape[1]} channels but the confusion "
                                 f"matrix has num_classes={self.num_classes}")
            return pred.argmax(dim=1)
        raise ValueError(f"pred must be labels of the target's shape {tuple(target.shape)} or "
                         f"logits [B, C, H, W] = [{target.shape[0] if target.dim() else '?'}, "
                         f"{self.num_classes}, ...]; got shape {tuple(pred.shape)}")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: ``pred`` is integer labels ``[B, H, W]`` or logits ``[B, C, H, W]``
        (argmax over dim 1), ``target`` integer labels ``[B, H, W]``.

        Raises ``ValueError`` if a non-ignored target value lies outside ``[0, num_classes)``
        (the message names it) or a predicted label does, and ``TypeError`` for a non-integer
        target.
        """
        if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TypeError(f"pred and target must be torch tensors, got "
                            f"{type(pred).__name__} and {type(target).__name__}")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class ids, got dtype {target.dtype}")
        labels = self._labels(pred, target).to(target.device)
        target = target.reshape(-1).long()
        labels = labels.reshape(-1).long()
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            target, labels = target[keep], labels[keep]
        if target.numel() == 0:
            return
        c = self.num_classes
        bad_t = (target < 0) | (target >= c)
        if bool(bad_t.any()):
            value = int(target[bad_t][0])
            raise ValueError(f"target value {value} is outside the classes 0..{c - 1} "
                             f"(num_classes={c}) and is not the ignore_index "
                             f"({self.ignore_index})")
        bad_p = (labels < 0) | (labels >= c)
        if bool(bad_p.any()):
            raise ValueError(f"predicted label {int(labels[bad_p][0])} is outside the classes "
                             f"0..{c - 1} (num_classes={c})")
        counts = torch.bincount(target * c + labels, minlength=c * c)
        self._counts += counts.cpu()

    def reset(self) -> None:
        """Forget every counted pixel."""
        self._counts.zero_()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of ``other`` (same ``num_classes``) to this matrix; returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class confusion matrix into a "
                             f"{self.num_classes}-class one")
        self._counts += other._counts
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    # -- results ------------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """A copy of the counts: ``int64`` array ``[C, C]``, rows = ground truth, columns =
        prediction."""
        c = self.num_classes
        return self._counts.reshape(c, c).numpy().copy()

    @property
    def total(self) -> int:
        """Number of pixels counted so far (ignored pixels excluded)."""
        return int(self._counts.sum())

    def compute(self, omit_classes: Sequence[int] = ()) -> dict[str, Any]:
        """The scores of :func:`scores_from_confusion` for the pixels counted so far.

        ``omit_classes`` leaves those classes out of ``miou``, ``mean_accuracy``, ``fw_iou``
        and ``score`` but not out of ``pixel_accuracy``. Raises ``ValueError`` if no pixel was
        counted.
        """
        return scores_from_confusion(self.matrix, omit_classes)
