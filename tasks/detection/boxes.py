"""Box operations for detection, in torch.

Conventions used throughout:

- a set of boxes is a float tensor ``[N, 4]`` in ``xyxy`` pixel coordinates
  ``(x1, y1, x2, y2)``; coordinates are *continuous*: ``width = x2 - x1`` and
  ``height = y2 - y1`` (no ``+ 1`` pixel convention);
- a degenerate box (``x2 < x1`` or ``y2 < y1``) has its negative side clamped to 0, hence area 0;
- the IoU of two boxes whose union is empty (two zero-area boxes) is defined as 0, and the
  GIoU of two boxes whose enclosing box is empty equals their IoU (0);
- every pairwise function accepts empty inputs: ``N = 0`` or ``M = 0`` gives an empty
  ``[N, M]`` result.

Other formats: ``cxcywh`` = ``(centre x, centre y, width, height)`` and ``xywh`` = COCO's
``(x1, y1, width, height)``.

Also here: greedy NMS (:func:`nms`, :func:`batched_nms`), SSD box encoding
(:func:`encode_boxes`, :func:`decode_boxes`) and SSD default boxes (:func:`make_anchors`,
:func:`anchors_per_cell`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_VARIANCES",
    "MAX_LOG_SCALE",
    "anchors_per_cell",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "cxcywh_to_xyxy",
    "decode_boxes",
    "encode_boxes",
    "generalized_box_iou",
    "make_anchors",
    "nms",
    "scale_boxes",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_xywh",
]

#: SSD's ``(centre variance, size variance)``.
DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)
#: upper bound of the (variance-scaled) log size ratio in :func:`decode_boxes`: a decoded box is
#: at most ``1000 / 16`` times as wide (high) as its anchor, so huge deltas cannot overflow.
MAX_LOG_SCALE: float = math.log(1000.0 / 16.0)
#: :func:`nms` builds the full IoU matrix up to this many boxes, else goes row by row.
_NMS_MATRIX_LIMIT = 2048


def _as_boxes(boxes: Tensor, name: str = "boxes") -> Tensor:
    """``boxes`` as a floating tensor of shape ``[N, 4]`` (an empty tensor becomes ``[0, 4]``)."""
    if not isinstance(boxes, Tensor):
        boxes = torch.as_tensor(boxes)
    if not boxes.is_floating_point():
        boxes = boxes.to(torch.get_default_dtype())
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {tuple(boxes.shape)}")
    return boxes


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``[N]`` of ``xyxy`` boxes ``[N, 4]``; a negative side counts as 0."""
    b = _as_boxes(boxes)
    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas ``[N, M]`` of ``xyxy`` boxes ``a`` and ``b``."""
    area_a = box_area(a)
    area_b = box_area(b)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter, union


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den <= 0``."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)),
                       torch.zeros_like(num))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``[N, M]`` of ``xyxy`` boxes ``a [N, 4]`` and ``b [M, 4]``.

    An empty union (two zero-area boxes) gives IoU 0.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    a, b = _common_dtype(a, b)
    inter, union = _inter_union(a, b)
    return _safe_div(inter, union)


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise generalized IoU ``[N, M]`` (Rezatofighi et al. 2019) of ``xyxy`` boxes.

    ``GIoU = IoU - (C - U) / C`` with ``U`` the union and ``C`` the area of the smallest box
    enclosing both; values lie in ``[-1, 1]``. An empty enclosing box gives ``GIoU = IoU = 0``.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    a, b = _common_dtype(a, b)
    inter, union = _inter_union(a, b)
    iou = _safe_div(inter, union)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - _safe_div(enclosing - union, enclosing)


def _common_dtype(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` promoted to one floating dtype."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


# -- format conversions -----------------------------------------------------------------------
def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``."""
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    b = _as_boxes(boxes)
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO's ``(x1, y1, w, h)`` -> ``(x1, y1, x2, y2)`` (continuous: ``x2 = x1 + w``)."""
    b = _as_boxes(boxes)
    x, y, w, h = b.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``(x1, y1, x2, y2)`` -> COCO's ``(x1, y1, w, h)``."""
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """``xyxy`` boxes clipped to the image ``[0, width] x [0, height]`` (a new tensor)."""
    b = _as_boxes(boxes)
    x = b[:, 0::2].clamp(min=0, max=width)
    y = b[:, 1::2].clamp(min=0, max=height)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=-1)


def scale_boxes(boxes: Tensor, sx: float, sy: float) -> Tensor:
    """``xyxy`` boxes with x coordinates multiplied by ``sx`` and y coordinates by ``sy`` (e.g.
    ``sx = new_width / old_width`` when resizing an image)."""
    b = _as_boxes(boxes)
    factors = torch.tensor([sx, sy, sx, sy], dtype=b.dtype, device=b.device)
    return b * factors


# -- non-maximum suppression ------------------------------------------------------------------
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression.

    Boxes are visited by descending score (a stable sort: equal scores keep the lower index
    first); a box is kept unless its IoU with an already kept box is ``> iou_threshold``.
    Returns the ``int64`` indices of the kept boxes in that visiting order, i.e. by descending
    score. Empty input gives an empty index tensor.
    """
    b = _as_boxes(boxes)
    s = torch.as_tensor(scores).reshape(-1)
    if s.numel() != b.shape[0]:
        raise ValueError(f"scores has {s.numel()} entries for {b.shape[0]} boxes")
    if b.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=b.device)
    order = torch.sort(s, descending=True, stable=True).indices
    sorted_boxes = b[order]
    n = sorted_boxes.shape[0]
    keep: list[int] = []
    if n <= _NMS_MATRIX_LIMIT:  # one IoU matrix, then a cheap greedy pass on the CPU
        over = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()
        suppressed = np.zeros(n, dtype=bool)
        for i in range(n):
            if not suppressed[i]:
                keep.append(i)
                suppressed |= over[i]
    else:  # one IoU row per kept box: memory O(n)
        suppressed_t = torch.zeros(n, dtype=torch.bool, device=b.device)
        for i in range(n):
            if suppressed_t[i]:
                continue
            keep.append(i)
            if i + 1 < n:
                iou = box_iou(sorted_boxes[i:i + 1], sorted_boxes[i + 1:])[0]
                suppressed_t[i + 1:] |= iou > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64, device=b.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-wise NMS: :func:`nms` run separately on the boxes of each label, so boxes of
    different labels never suppress each other.

    Returns the ``int64`` indices of the kept boxes sorted by descending score, ties broken by
    the lower index (exactly the union of the per-class :func:`nms` results in that order).
    """
    b = _as_boxes(boxes)
    s = torch.as_tensor(scores).reshape(-1)
    lab = torch.as_tensor(labels).reshape(-1)
    if not s.numel() == lab.numel() == b.shape[0]:
        raise ValueError(f"boxes ({b.shape[0]}), scores ({s.numel()}) and labels "
                         f"({lab.numel()}) must have the same length")
    if b.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=b.device)
    kept = []
    for label in torch.unique(lab):
        idx = torch.nonzero(lab == label).reshape(-1)
        kept.append(idx[nms(b[idx], s[idx], iou_threshold)])
    keep = torch.sort(torch.cat(kept)).values  # ascending index, then a stable score sort
    return keep[torch.sort(s[keep], descending=True, stable=True).indices]


# -- SSD box encoding -------------------------------------------------------------------------
def encode_boxes(boxes: Tensor, anchors: Tensor,
                 variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """SSD regression targets ``[N, 4]`` of ``xyxy`` ``boxes`` relative to ``xyxy`` ``anchors``
    (one anchor per box, both ``[N, 4]``)::

        ((cx - acx) / (aw * v0), (cy - acy) / (ah * v0), log(w / aw) / v1, log(h / ah) / v1)

    Boxes must have positive width and height (a zero side gives ``-inf``).
    """
    b, a = _common_dtype(_as_boxes(boxes), _as_boxes(anchors, "anchors"))
    if b.shape != a.shape:
        raise ValueError(f"boxes {tuple(b.shape)} and anchors {tuple(a.shape)} must match")
    v0, v1 = variances
    bc = xyxy_to_cxcywh(b)
    ac = xyxy_to_cxcywh(a)
    return torch.stack((
        (bc[:, 0] - ac[:, 0]) / (ac[:, 2] * v0),
        (bc[:, 1] - ac[:, 1]) / (ac[:, 3] * v0),
        torch.log(bc[:, 2] / ac[:, 2]) / v1,
        torch.log(bc[:, 3] / ac[:, 3]) / v1,
    ), dim=-1)


def decode_boxes(deltas: Tensor, anchors: Tensor,
                 variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """Inverse of :func:`encode_boxes`: ``xyxy`` boxes ``[N, 4]`` from ``deltas [N, 4]`` and
    ``xyxy`` ``anchors [N, 4]``. The log size ratios ``v1 * d`` are clamped at
    :data:`MAX_LOG_SCALE` before the exponential so that large deltas cannot overflow.

    ``deltas`` may also have shape ``[B, N, 4]`` (a batch sharing one set of anchors).
    """
    if not isinstance(deltas, Tensor):
        deltas = torch.as_tensor(deltas)
    a = _as_boxes(anchors, "anchors")
    if deltas.shape[-1] != 4 or deltas.shape[-2:] != a.shape:
        raise ValueError(f"deltas {tuple(deltas.shape)} must end with the anchors' shape "
                         f"{tuple(a.shape)}")
    if not deltas.is_floating_point():
        deltas = deltas.to(a.dtype)
    a = a.to(torch.promote_types(a.dtype, deltas.dtype))
    v0, v1 = variances
    ac = xyxy_to_cxcywh(a)
    cx = ac[:, 0] + deltas[..., 0] * v0 * ac[:, 2]
    cy = ac[:, 1] + deltas[..., 1] * v0 * ac[:, 3]
    w = ac[:, 2] * torch.exp((deltas[..., 2] * v1).clamp(max=MAX_LOG_SCALE))
    h = ac[:, 3] * torch.exp((deltas[..., 3] * v1).clamp(max=MAX_LOG_SCALE))
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


# -- SSD default boxes ------------------------------------------------------------------------
def anchors_per_cell(aspect_ratios: Sequence[float]) -> int:
    """Number of default boxes per feature-map cell of a level with these ``aspect_ratios``:
    one box per ratio plus the extra square box of :func:`make_anchors`."""
    return len(aspect_ratios) + 1


def _ratios_per_level(aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
                      num_levels: int) -> list[list[float]]:
    """``aspect_ratios`` as one list per level (a flat list is shared by all levels)."""
    if len(aspect_ratios) > 0 and not any(isinstance(r, Sequence) for r in aspect_ratios):
        return [[float(r) for r in aspect_ratios]] * num_levels  # type: ignore[arg-type]
    nested = [[float(r) for r in level] for level in aspect_ratios]  # type: ignore[union-attr]
    if len(nested) != num_levels:
        raise ValueError(f"aspect_ratios has {len(nested)} levels for {num_levels} feature maps")
    return nested


def make_anchors(feature_sizes: Sequence[tuple[int, int]], strides: Sequence[int],
                 scales: Sequence[float],
                 aspect_ratios: Sequence[float] | Sequence[Sequence[float]],
                 image_size: tuple[int, int], clip: bool = False) -> Tensor:
    """SSD-style default boxes ``[A, 4]`` (``xyxy`` pixels, ``float32``).

    Args:
        feature_sizes: ``(rows, cols)`` of each level's feature map.
        strides: each level's stride in pixels; the cell ``(i, j)`` (row ``i``, column ``j``)
            is centred at ``((j + 0.5) * stride, (i + 0.5) * stride)``.
        scales: the side ``s_k`` in pixels of each level's square box; either one per level or
            one more than the levels, the last entry then being ``s_{K+1}`` for the last level's
            extra box (SSD's extrapolated scale).
        aspect_ratios: each level's ratios ``r = w / h`` (a list of lists), or one list shared by
            all levels. Ratio ``1`` is not added implicitly: list it if wanted.
        image_size: ``(height, width)`` of the input image; used only when ``clip`` is true.
        clip: clip the boxes to the image.

    Order: level by level; within a level the cells row-major (``i`` then ``j``); within a cell
    first one box per aspect ratio in the given order, ``w = s_k * sqrt(r)``,
    ``h = s_k / sqrt(r)``, then one extra square box of side ``sqrt(s_k * s_{k+1})``. For the
    last level ``s_{K+1}`` is ``scales[K]`` when given, else ``1.5 * s_K``. So a head whose output
    for level ``k`` is ``[B, anchors_per_cell(ratios_k) * D, H, W]``, permuted to
    ``[B, H, W, anchors, D]`` and flattened, lines up with these anchors level by level.
    """
    num_levels = len(feature_sizes)
    if len(strides) != num_levels:
        raise ValueError(f"{len(strides)} strides for {num_levels} feature maps")
    if len(scales) not in (num_levels, num_levels + 1):
        raise ValueError(f"{len(scales)} scales for {num_levels} feature maps (need "
                         f"{num_levels} or {num_levels + 1})")
    ratios = _ratios_per_level(aspect_ratios, num_levels)
    next_scales = [*scales[1:num_levels],
                   scales[num_levels] if len(scales) > num_levels else 1.5 * scales[-1]]
    levels = []
    for (rows, cols), stride, s_k, s_next, level_ratios in zip(
            feature_sizes, strides, scales[:num_levels], next_scales, ratios, strict=True):
        if any(r <= 0 for r in level_ratios):
            raise ValueError(f"aspect ratios must be positive, got {level_ratios}")
        sizes = [(s_k * math.sqrt(r), s_k / math.sqrt(r)) for r in level_ratios]
        extra = math.sqrt(s_k * s_next)
        sizes.append((extra, extra))
        wh = torch.tensor(sizes, dtype=torch.float64)  # [P, 2]
        ys = (torch.arange(rows, dtype=torch.float64) + 0.5) * stride
        xs = (torch.arange(cols, dtype=torch.float64) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack((cx.reshape(-1), cy.reshape(-1)), dim=-1)  # [H*W, 2], row-major
        c = centres[:, None, :]
        half = wh[None, :, :] / 2
        levels.append(torch.cat((c - half, c + half), dim=-1).reshape(-1, 4))
    anchors = torch.cat(levels) if levels else torch.zeros(0, 4, dtype=torch.float64)
    if clip:
        anchors = clip_boxes(anchors, image_size[0], image_size[1])
    return anchors.to(torch.float32)
