"""Detection average precision over a whole split: the COCO and Pascal VOC protocols (VOC07
11-point and VOC2010+ all-point AP).

Inputs, one dict per image (torch tensors, numpy arrays or nested lists):

- prediction: ``{"boxes": [K, 4] xyxy, "scores": [K], "labels": [K] int}``;
- ground truth: ``{"boxes": [G, 4] xyxy, "labels": [G] int}`` and optionally ``"iscrowd": [G]
  bool`` (crowd / ignore regions), ``"difficult": [G] bool`` (VOC), ``"area": [G] float``
  (COCO's annotation area, in the pixels of the boxes; default: the box area), ``"scale": [2]
  float`` (``(sx, sy)``: pixels of the boxes per pixel of the original image, for an image
  that was resized; default ``(1, 1)``) and ``"orig_area": [G] float`` (the annotation's area
  in original pixels; default: ``area / (sx * sy)``).

**Sizes in original pixels.** COCO's area ranges are absolute (32², 96² pixels *of the
original image*), so the size classes use areas in original pixels: a ground-truth box's
``orig_area`` (or ``area / (sx * sy)``) and a detection's box area divided by ``sx * sy``. A
box of 40 x 40 original pixels resized by 0.5 (20 x 20) is still medium. Images evaluated at
their own size (no ``scale``) are unaffected.

Labels are contiguous ``0..num_classes-1``. Coordinates are continuous pixels: a box is
``(x2 - x1)`` wide, without VOC's ``+ 1`` integer-pixel convention, for both protocols.

**COCO** (:func:`coco_ap`), as pycocotools' ``COCOeval`` for boxes: IoU thresholds
``0.50:0.05:0.95``, 101 recall thresholds ``0:0.01:1``, at most ``max_detections`` detections
per image *and category* (the highest-scored ones, stable sort), area ranges all ``[0, 1e10]``,
small ``[0, 32²]``, medium ``[32², 96²]``, large ``[96², 1e10]`` (bounds inclusive, as in
pycocotools, compared with the ground truth's ``area`` and, for unmatched detections, the
detection's box area; both in original pixels, see above). Per image, category and threshold,
each detection (by descending score) takes the best-IoU ground truth with ``IoU >= t`` that is
not yet matched, preferring boxes that are not ignored (ties in IoU go to the later box, as in
pycocotools); crowd boxes may be matched by any number of detections and their IoU is
``intersection / detection area``. A detection matched to an ignored box (crowd, or area out of
range) is ignored, and so is an unmatched detection whose area is out of range. Per category,
the detections of all images are sorted by score (stable, images in the order given), precision
is made monotone from the right and sampled at the recall thresholds (``searchsorted`` left; 0
past the last recall reached). AR@k is the final recall with at most ``k`` detections per image.
Metrics are means over IoU thresholds, recall thresholds and the categories that have at least
one non-ignored ground-truth box in the area range. The ``difficult`` flag is not read by COCO
(such a box counts as a normal one); pass it as ``iscrowd`` too to have COCO ignore those boxes.

**VOC** (:func:`voc07_ap`, :func:`voc_allpoint_ap`), as the VOC devkits: per class, all
detections sorted by descending score (stable); each is compared with the ground-truth box of
its image and class of highest IoU (the first one on ties); ``IoU > iou_threshold`` (strict) and
the box is difficult: neither TP nor FP; not yet matched: TP (and the box is marked); already
matched: FP (no fallback to the second best); otherwise FP. Recall counts the non-difficult
boxes only. From the same precision / recall curve, two different numbers: the VOC2007
**11-point** AP (:func:`average_precision_11pt`: the mean over ``t = 0, 0.1, ..., 1`` (exactly
``i / 10``) of the max precision at recall ``>= t``) and the VOC2010+ **all-point** AP
(:func:`average_precision_all_points`: the area under the precision envelope, made monotone from
the right, summed over every change of recall). Crowd boxes (``iscrowd``) are treated as
difficult (with the ordinary IoU). Every detection counts (no per-image cap).

**Undefined values are NaN**: a category contributes only if it has ground truth (COCO: a
non-ignored box in the area range; VOC: a non-difficult box); a metric with no contributing
category (e.g. ``ap_large`` when the split has no large box, or every metric when the split has
no ground-truth box at all) is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "DetectionEvaluator",
    "average_precision_11pt",
    "average_precision_all_points",
    "coco_ap",
    "voc07_ap",
    "voc_allpoint_ap",
]

#: COCO's IoU thresholds 0.50:0.05:0.95 (the same float values as pycocotools).
IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
#: COCO's 101 recall thresholds 0:0.01:1 (the same float values as pycocotools).
RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)
#: COCO's area ranges (inclusive bounds, in square pixels).
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
_EPS = float(np.spacing(1))


# -- inputs -----------------------------------------------------------------------------------
@dataclass
class _Image:
    """One image's detections and ground truth as numpy arrays."""

    dt_boxes: np.ndarray  # [K, 4] float64
    dt_scores: np.ndarray  # [K] float64
    dt_labels: np.ndarray  # [K] int64
    gt_boxes: np.ndarray  # [G, 4] float64
    gt_labels: np.ndarray  # [G] int64
    gt_crowd: np.ndarray  # [G] bool
    gt_difficult: np.ndarray  # [G] bool
    gt_area: np.ndarray  # [G] float64, in original pixels
    area_scale: float = 1.0  # sx * sy: box area in its pixels / area in original pixels


def _array(value: Any, dtype: Any) -> np.ndarray:
    """A numpy copy of a tensor / array / sequence."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=dtype, copy=True)


def _box_array(value: Any, what: str) -> np.ndarray:
    boxes = _array(value, np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} boxes must have shape [N, 4], got {boxes.shape}")
    return boxes


def _labels(value: Any, n: int, num_classes: int, what: str) -> np.ndarray:
    raw = _array(value, None).reshape(-1)
    if raw.size != n:
        raise ValueError(f"{what} has {raw.size} labels for {n} boxes")
    if raw.size and not np.all(np.mod(raw.astype(np.float64), 1) == 0):
        raise ValueError(f"{what} labels must be integers, got {raw}")
    labels = raw.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"{what} labels {sorted(set(bad.tolist()))} are outside "
                         f"0..{num_classes - 1}")
    return labels


def _flags(target: Mapping[str, Any], key: str, n: int) -> np.ndarray:
    if target.get(key) is None:
        return np.zeros(n, dtype=bool)
    flags = _array(target[key], None).reshape(-1).astype(bool)
    if flags.size != n:
        raise ValueError(f"ground truth {key!r} has {flags.size} entries for {n} boxes")
    return flags


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
            * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def _area_scale(target: Mapping[str, Any], i: int) -> float:
    """``sx * sy`` of the target's ``"scale"`` (1 without one)."""
    if target.get("scale") is None:
        return 1.0
    scale = _array(target["scale"], np.float64).reshape(-1)
    if scale.size != 2 or not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        raise ValueError(f"image {i}: ground truth 'scale' must be 2 positive numbers (sx, sy), "
                         f"got {scale.tolist()}")
    return float(scale[0] * scale[1])


def _to_images(predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
               num_classes: int) -> list[_Image]:
    """Validated numpy copies of per-image predictions and targets."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets: one of "
                         f"each per image")
    images = []
    for i, (pred, tgt) in enumerate(zip(predictions, targets, strict=True)):
        dt_boxes = _box_array(pred["boxes"], f"image {i}: predicted")
        dt_scores = _array(pred["scores"], np.float64).reshape(-1)
        if dt_scores.size != dt_boxes.shape[0]:
            raise ValueError(f"image {i}: {dt_scores.size} scores for {dt_boxes.shape[0]} "
                             f"predicted boxes")
        dt_labels = _labels(pred["labels"], dt_boxes.shape[0], num_classes,
                            f"image {i}: prediction")
        gt_boxes = _box_array(tgt["boxes"], f"image {i}: ground-truth")
        g = gt_boxes.shape[0]
        gt_labels = _labels(tgt["labels"], g, num_classes, f"image {i}: ground truth")
        scale = _area_scale(tgt, i)
        key = "orig_area" if tgt.get("orig_area") is not None else "area"
        if tgt.get(key) is None:
            gt_area = _areas(gt_boxes)
        else:
            gt_area = _array(tgt[key], np.float64).reshape(-1)
            if gt_area.size != g:
                raise ValueError(f"image {i}: ground truth {key!r} has {gt_area.size} entries "
                                 f"for {g} boxes")
        if key != "orig_area" and scale != 1.0:
            gt_area = gt_area / scale
        images.append(_Image(dt_boxes, dt_scores, dt_labels, gt_boxes, gt_labels,
                             _flags(tgt, "iscrowd", g), _flags(tgt, "difficult", g), gt_area,
                             scale))
    return images


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def _iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU ``[D, G]``; for crowd ground truth ``intersection / detection area`` (COCO). A zero
    denominator gives 0."""
    lt = np.maximum(dt[:, None, :2], gt[None, :, :2])
    rb = np.minimum(dt[:, None, 2:], gt[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_d = _areas(dt)[:, None]
    union = area_d + _areas(gt)[None, :] - inter
    if crowd is not None:
        union = np.where(crowd[None, :], np.broadcast_to(area_d, union.shape), union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


# -- VOC07 ------------------------------------------------------------------------------------
def average_precision_11pt(recall: Sequence[float] | np.ndarray,
                           precision: Sequence[float] | np.ndarray) -> float:
    """VOC07 11-point interpolated AP: the mean over ``t = i / 10``, ``i = 0..10``, of the
    maximum precision at recall ``>= t`` (0 where no recall reaches ``t``).

    The thresholds are exactly ``i / 10`` (the py-faster-rcnn ``np.arange(0, 1.1, 0.1)`` gives
    e.g. ``0.30000000000000004``, which a recall of exactly 0.3 does not reach).
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall {rec.shape} and precision {prec.shape} must match")
    total = 0.0
    for t in np.arange(11) / 10.0:
        reached = rec >= t
        total += float(prec[reached].max()) if reached.any() else 0.0
    return total / 11.0


def average_precision_all_points(recall: Sequence[float] | np.ndarray,
                                 precision: Sequence[float] | np.ndarray) -> float:
    """VOC2010+ all-point AP: the area under the precision envelope. With ``recall`` and
    ``precision`` padded as ``[0, *recall, 1]`` and ``[0, *precision, 0]``, the precision is
    made monotone from the right (each point takes the max precision at any higher recall) and
    ``sum((r[i] - r[i - 1]) * p[i])`` is taken over every index ``i`` where the recall changes
    (0 for an empty curve)."""
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall {rec.shape} and precision {prec.shape} must match")
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    changes = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mpre[changes]))


def _voc_curve(images: Sequence[_Image], cls: int, iou_threshold: float
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """VOC recall and precision of one class over its detections by descending score (None
    without a non-difficult ground-truth box)."""
    npos = 0
    gts = []
    det_img, det_scores, det_boxes = [], [], []
    for i, im in enumerate(images):
        mask = im.gt_labels == cls
        difficult = (im.gt_difficult | im.gt_crowd)[mask]
        npos += int((~difficult).sum())
        gts.append((im.gt_boxes[mask], difficult, np.zeros(int(mask.sum()), dtype=bool)))
        dmask = im.dt_labels == cls
        det_img.append(np.full(int(dmask.sum()), i, dtype=np.int64))
        det_scores.append(im.dt_scores[dmask])
        det_boxes.append(im.dt_boxes[dmask])
    if npos == 0:
        return None
    img = np.concatenate(det_img)
    scores = np.concatenate(det_scores)
    boxes = np.concatenate(det_boxes).reshape(-1, 4)
    order = np.argsort(-scores, kind="mergesort")
    tp = np.zeros(order.size)
    fp = np.zeros(order.size)
    for rank, d in enumerate(order):
        gt_boxes, difficult, matched = gts[img[d]]
        if gt_boxes.shape[0] == 0:
            fp[rank] = 1
            continue
        ious = _iou(boxes[d:d + 1], gt_boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] > iou_threshold:
            if difficult[j]:
                continue
            if not matched[j]:
                tp[rank] = 1
                matched[j] = True
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    ctp = np.cumsum(tp)
    cfp = np.cumsum(fp)
    recall = ctp / npos
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return recall, precision


def _voc_curves(images: Sequence[_Image], num_classes: int, iou_threshold: float
                ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    return [_voc_curve(images, c, iou_threshold) for c in range(num_classes)]


def _voc_map(curves: Sequence[tuple[np.ndarray, np.ndarray] | None],
             ap: Any) -> dict[str, Any]:
    """``{"map", "per_class_ap"}`` of the curves by the interpolation ``ap(recall,
    precision)`` (NaN for a class without a curve)."""
    per_class = [math.nan if c is None else ap(*c) for c in curves]
    return {"map": _nanmean(np.array(per_class, dtype=np.float64)), "per_class_ap": per_class}


def voc07_ap(predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
             num_classes: int, iou_threshold: float = 0.5) -> dict[str, Any]:
    """Pascal VOC07 11-point AP at ``IoU > iou_threshold`` (see the module docstring).

    Returns ``{"map": float, "per_class_ap": list[float]}``: the per-class APs (NaN for a
    class without a non-difficult ground-truth box) and their mean over the defined ones (NaN
    if none is). Continuous coordinates, no ``+ 1`` in widths; crowd boxes count as difficult.
    """
    _check_num_classes(num_classes)
    return _voc_map(_voc_curves(_to_images(predictions, targets, num_classes), num_classes,
                                iou_threshold), average_precision_11pt)


def voc_allpoint_ap(predictions: Sequence[Mapping[str, Any]],
                    targets: Sequence[Mapping[str, Any]], num_classes: int,
                    iou_threshold: float = 0.5) -> dict[str, Any]:
    """Pascal VOC2010+ all-point AP at ``IoU > iou_threshold``: the matching of
    :func:`voc07_ap`, the area under the monotone precision envelope
    (:func:`average_precision_all_points`) instead of the 11-point mean. Returns ``{"map",
    "per_class_ap"}`` as :func:`voc07_ap` does."""
    _check_num_classes(num_classes)
    return _voc_map(_voc_curves(_to_images(predictions, targets, num_classes), num_classes,
                                iou_threshold), average_precision_all_points)


# -- COCO -------------------------------------------------------------------------------------
@dataclass
class _CocoRecord:
    """pycocotools' ``evaluateImg`` result for one image and category, all area ranges."""

    scores: np.ndarray  # [D] by descending score, truncated to max_detections
    matched: list[np.ndarray]  # per area range: [T, D] bool
    ignored: list[np.ndarray]  # per area range: [T, D] bool
    num_gt: list[int]  # per area range: non-ignored ground-truth boxes


def _match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray,
           thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching of score-sorted detections to ground truth sorted with the
    non-ignored boxes first; returns ``matched`` and ``ignored`` ``[T, D]``."""
    num_d, num_g = ious.shape
    matched = np.zeros((thresholds.size, num_d), dtype=bool)
    ignored = np.zeros((thresholds.size, num_d), dtype=bool)
    if num_d == 0 or num_g == 0:
        return matched, ignored
    n_kept = int((~gt_ignore).sum())  # the non-ignored boxes are ious[:, :n_kept]
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    taken = np.zeros((thresholds.size, num_g), dtype=bool)
    blocks = [(lo, hi) for lo, hi in ((0, n_kept), (n_kept, num_g)) if hi > lo]
    for d in range(num_d):
        row = ious[d]
        candidate = (row[None, :] >= thr) & (~taken | gt_crowd[None, :])
        choice = np.full(thresholds.size, -1, dtype=np.int64)
        for lo, hi in blocks:  # a non-ignored box is preferred to any ignored one
            cand = candidate[:, lo:hi]
            values = np.where(cand, row[None, lo:hi], -np.inf)
            best = hi - 1 - np.argmax(values[:, ::-1], axis=1)  # ties: the later box
            choice = np.where((choice < 0) & cand.any(axis=1), best, choice)
        hit = np.nonzero(choice >= 0)[0]
        if hit.size:
            g = choice[hit]
            matched[hit, d] = True
            ignored[hit, d] = gt_ignore[g]
            taken[hit, g] = True
    return matched, ignored


def _coco_records(images: Sequence[_Image], num_classes: int,
                  max_detections: int) -> list[list[_CocoRecord]]:
    """Per category, the records of the images having a detection or a box of it."""
    ranges = list(AREA_RANGES.values())
    records: list[list[_CocoRecord]] = [[] for _ in range(num_classes)]
    for im in images:
        for cls in np.union1d(im.dt_labels, im.gt_labels).tolist():
            dmask = im.dt_labels == cls
            gmask = im.gt_labels == cls
            order = np.argsort(-im.dt_scores[dmask], kind="mergesort")[:max_detections]
            dt_boxes = im.dt_boxes[dmask][order]
            scores = im.dt_scores[dmask][order]
            gt_boxes = im.gt_boxes[gmask]
            crowd = im.gt_crowd[gmask]
            area = im.gt_area[gmask]
            ious = _iou(dt_boxes, gt_boxes, crowd)
            dt_area = _areas(dt_boxes)
            if im.area_scale != 1.0:
                dt_area = dt_area / im.area_scale  # in original pixels, as the ground truth
            rec = _CocoRecord(scores, [], [], [])
            for lo, hi in ranges:
                gt_ignore = crowd | (area < lo) | (area > hi)
                gorder = np.argsort(gt_ignore, kind="mergesort")
                matched, ignored = _match(ious[:, gorder], gt_ignore[gorder], crowd[gorder],
                                          IOU_THRESHOLDS)
                outside = (dt_area < lo) | (dt_area > hi)
                ignored |= ~matched & outside[None, :]
                rec.matched.append(matched)
                rec.ignored.append(ignored)
                rec.num_gt.append(int((~gt_ignore).sum()))
            records[cls].append(rec)
    return records


def _accumulate(records: Sequence[_CocoRecord], area: int,
                max_det: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Precision ``[T, R]`` and recall ``[T]`` of one category; None if it has no
    non-ignored ground truth in this area range."""
    num_gt = sum(r.num_gt[area] for r in records)
    if num_gt == 0:
        return None
    num_t = IOU_THRESHOLDS.size
    scores = np.concatenate([r.scores[:max_det] for r in records])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([r.matched[area][:, :max_det] for r in records], axis=1)[:, order]
    ignored = np.concatenate([r.ignored[area][:, :max_det] for r in records], axis=1)[:, order]
    tp = np.cumsum(matched & ~ignored, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched & ~ignored, axis=1, dtype=np.float64)
    nd = scores.size
    precision = np.zeros((num_t, RECALL_THRESHOLDS.size))
    recall = np.zeros(num_t)
    if nd == 0:
        return precision, recall
    rc = tp / num_gt
    pr = tp / (tp + fp + _EPS)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # monotone from the right
    recall = rc[:, -1].copy()
    for t in range(num_t):
        idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
        inside = idx < nd
        precision[t, inside] = pr[t, idx[inside]]
    return precision, recall


def _coco(images: Sequence[_Image], num_classes: int, max_detections: int) -> dict[str, Any]:
    records = _coco_records(images, num_classes, max_detections)
    area_names = list(AREA_RANGES)
    num_t, num_r = IOU_THRESHOLDS.size, RECALL_THRESHOLDS.size
    # -1 marks an undefined category, as in pycocotools
    precision = np.full((num_t, num_r, num_classes, len(area_names)), -1.0)
    recall = {k: np.full((num_t, num_classes, len(area_names)), -1.0)
              for k in (1, 10, max_detections)}
    for cls in range(num_classes):
        for a in range(len(area_names)):
            for k in recall:
                acc = _accumulate(records[cls], a, min(k, max_detections))
                if acc is None:
                    continue
                if k == max_detections:
                    precision[:, :, cls, a] = acc[0]
                recall[k][:, cls, a] = acc[1]

    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else math.nan

    t50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
    t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
    a_all = area_names.index("all")
    out: dict[str, Any] = {
        "ap": mean(precision[:, :, :, a_all]),
        "ap50": mean(precision[t50, :, :, a_all]),
        "ap75": mean(precision[t75, :, :, a_all]),
    }
    for name in ("small", "medium", "large"):
        out[f"ap_{name}"] = mean(precision[:, :, :, area_names.index(name)])
    out["ar1"] = mean(recall[1][:, :, a_all])
    out["ar10"] = mean(recall[10][:, :, a_all])
    out["ar100"] = mean(recall[max_detections][:, :, a_all])
    for name in ("small", "medium", "large"):
        out[f"ar_{name}"] = mean(recall[max_detections][:, :, area_names.index(name)])
    out["per_class_ap"] = [mean(precision[:, :, c, a_all]) for c in range(num_classes)]
    out["per_class_ap50"] = [mean(precision[t50, :, c, a_all]) for c in range(num_classes)]
    return out


def coco_ap(predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]],
            num_classes: int, max_detections: int = 100) -> dict[str, Any]:
    """COCO box AP over a split (see the module docstring for the protocol).

    Returns floats ``ap`` (AP@[.5:.95]), ``ap50``, ``ap75``, ``ap_small``, ``ap_medium``,
    ``ap_large``, ``ar1``, ``ar10``, ``ar100`` (AR with at most 1, 10 and ``max_detections``
    detections per image; ``ar100`` is AR@``max_detections``), ``ar_small``, ``ar_medium``,
    ``ar_large`` (at ``max_detections``), and lists ``per_class_ap`` and ``per_class_ap50``
    (one float per class). Undefined values are NaN.
    """
    _check_num_classes(num_classes)
    _check_max_detections(max_detections)
    return _coco(_to_images(predictions, targets, num_classes), num_classes, max_detections)


def _check_max_detections(max_detections: int) -> None:
    if (isinstance(max_detections, bool) or not isinstance(max_detections, int)
            or max_detections < 1):
        raise ValueError(f"max_detections must be a positive int, got {max_detections!r}")


# -- streaming --------------------------------------------------------------------------------
def _key(name: str) -> str:
    return "_".join(str(name).lower().split())


class DetectionEvaluator:
    """Streaming detection evaluation: :meth:`add` one batch of images at a time, then
    :meth:`compute` the COCO and VOC metrics over everything added (see the module
    docstring).

    :meth:`compute` returns ``ap``, ``ap50``, ``ap75``, ``ap_small``, ``ap_medium``,
    ``ap_large``, ``ar1``, ``ar10``, ``ar100`` (AR@``max_detections``), ``ar_small``,
    ``ar_medium``, ``ar_large`` (COCO), ``voc07_ap50`` (VOC07 11-point mAP),
    ``voc_allpoint_ap50`` (VOC2010+ all-point mAP, the same matching) and, for every class
    with at least one non-crowd ground-truth box, ``ap50_<name>`` (its COCO AP50; the name
    lowercased with whitespace runs replaced by ``_``; the class index without
    ``class_names``). Undefined metrics, e.g. all of them when no ground-truth box was added, are
    NaN.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 max_detections: int = 100) -> None:
        _check_num_classes(num_classes)
        _check_max_detections(max_detections)
        if class_names is None:
            class_names = [str(c) for c in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        keys = [_key(n) for n in class_names]
        if len(set(keys)) != len(keys):
            raise ValueError(f"class names {list(class_names)} are not distinct once "
                             f"lowercased with spaces replaced by '_'")
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.max_detections = max_detections
        self._keys = keys
        self._images: list[_Image] = []

    def __repr__(self) -> str:
        return (f"DetectionEvaluator(num_classes={self.num_classes}, "
                f"max_detections={self.max_detections}, images={len(self._images)})")

    def __len__(self) -> int:
        """Number of images added so far."""
        return len(self._images)

    def reset(self) -> None:
        """Forget every image added."""
        self._images = []

    def add(self, predictions: Sequence[Mapping[str, Any]],
            targets: Sequence[Mapping[str, Any]]) -> None:
        """Add one batch: ``predictions[i]`` and ``targets[i]`` belong to the same image (numpy
        copies are stored, so the inputs may be reused afterwards)."""
        self._images.extend(_to_images(predictions, targets, self.num_classes))

    def compute(self) -> dict[str, float]:
        """The metrics over all images added (see the class docstring)."""
        coco = _coco(self._images, self.num_classes, self.max_detections)
        curves = _voc_curves(self._images, self.num_classes, 0.5)
        out = {k: float(v) for k, v in coco.items() if not k.startswith("per_class")}
        out["voc07_ap50"] = float(_voc_map(curves, average_precision_11pt)["map"])
        out["voc_allpoint_ap50"] = float(_voc_map(curves, average_precision_all_points)["map"])
        for key, value in zip(self._keys, coco["per_class_ap50"], strict=True):
            if not math.isnan(value):
                out[f"ap50_{key}"] = float(value)
        return out
