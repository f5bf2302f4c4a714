"""Detection heads over a staged body's multi-scale features (through the engine's
:class:`~nastk.nn.neck.FeaturePyramidNeck`): an anchor-free CenterNet-style head and an
SSDLite-style anchor head.

Both return **one tensor**, so costs (fvcore), ``torch.export``, in-place distillation and
supernet extraction treat a detector like any other network:

- :class:`CenterNetHead`: ``[B, C + 4, H, W]`` at one output stride: ``C`` class heat-map logits,
  then the box width and height and the sub-pixel centre offset (x, y), all in output-stride
  units;
- :class:`SSDLiteHead`: ``[B, A, 1 + C + 4]`` over the ``A`` default boxes of every level: the
  background and ``C`` class logits, then the encoded box (variances 0.1, 0.2).

Each head also owns its training loss (named terms), its decoding into per-image
``{"boxes", "scores", "labels"}`` (with NMS for the anchor head) and its distillation loss.

The levels a head reads are the body's features from ``min_stride`` on, the last map of each
distinct stride (stages that keep the stride refine the same scale); a body whose features are
all finer than ``min_stride`` is read at its coarsest one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.body import feature_info
from nastk.nn.neck import FeaturePyramidNeck
from nastk.nn.normalization import Normalization, normalization_layer
from nastk.tasks.detection.boxes import (
    anchors_per_cell,
    batched_nms,
    box_iou,
    decode_boxes,
    encode_boxes,
    make_anchors,
)

__all__ = ["CenterNetHead", "DetectionModel", "SSDLiteHead", "select_levels"]

Targets = Sequence[dict[str, torch.Tensor]]


def select_levels(strides: Sequence[int], min_stride: int) -> list[int]:
    """Indices of the features a head reads: of each distinct stride ``>= min_stride``, the
    last feature map with it; a body whose features are all finer gives its coarsest one."""
    if not strides:
        raise ValueError("the body declares no features")
    last: dict[int, int] = {}
    for i, s in enumerate(strides):
        if s >= min_stride:
            last[int(s)] = i
    if not last:
        return [len(strides) - 1]
    return [last[s] for s in sorted(last)]


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _separable(cin: int, cout: int) -> nn.Sequential:
    """SSDLite's predictor: depthwise 3x3 conv-BN-ReLU6, then a 1x1 conv."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU6(inplace=True), nn.Conv2d(cin, cout, 1))


def _ignore_boxes(target: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boolean mask of boxes that are ignore regions in training (crowd or difficult)."""
    n = target["boxes"].shape[0]
    ignore = torch.zeros(n, dtype=torch.bool, device=target["boxes"].device)
    for key in ("iscrowd", "difficult"):
        if key in target:
            ignore |= target[key].to(torch.bool)
    return ignore


# -- CenterNet ---------------------------------------------------------------------------------
def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre displacement for which a box of this size still
    overlaps the true box with IoU >= ``min_overlap`` (the smallest root of its three cases)."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


class CenterNetHead(nn.Module):
    """Objects as points on the finest level read (stride ``out_stride`` or the next above):
    the neck merges every level from there up, a 3x3 conv-BN-ReLU, then 1x1 branches for the
    class heat map, the box size and the centre offset.

    Loss (``heatmap``, ``size``, ``offset``): penalty-reduced focal loss (alpha 2, beta 4) on
    Gaussian targets at box centres (radius from the box size, IoU 0.7), L1 on the size (x 0.1)
    and the offset (x 1) at each centre, all normalised by the number of objects; crowd and
    difficult boxes are ignore regions (no heat-map loss inside them, no targets). Decoding:
    3x3 max-pool peaks, the top ``max_detections`` over all classes, no NMS.
    """

    kind = "centernet"

    def __init__(self, body: nn.Module, num_classes: int, image_size: tuple[int, int], *,
                 channels: int = 32, out_stride: int = 4, max_detections: int = 100,
                 size_weight: float = 0.1, offset_weight: float = 1.0) -> None:
        super().__init__()
        info = feature_info(body)
        self.levels = select_levels([f.stride for f in info], out_stride)
        self.stride = info[self.levels[0]].stride
        self.num_classes = int(num_classes)
        self.image_size = tuple(int(s) for s in image_size)
        self.max_detections = int(max_detections)
        self.size_weight, self.offset_weight = float(size_weight), float(offset_weight)
        self.neck = FeaturePyramidNeck([info[i].channels for i in self.levels], channels)
        self.fuse = _conv_bn_relu(channels, channels)
        self.heatmap = nn.Conv2d(channels, num_classes, 1)
        self.regression = nn.Conv2d(channels, 4, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.1) / 0.1))  # prior 0.1

    @property
    def signature(self) -> tuple[str, int]:
        """What identifies this head's output geometry (see :meth:`output_signature`)."""
        return ("centernet", self.stride)

    @staticmethod
    def output_signature(outputs: torch.Tensor, image_size: tuple[int, int]
                         ) -> tuple[str, int]:
        """The signature of the head that produced ``outputs`` for images of ``image_size``."""
        return ("centernet", round(image_size[0] / outputs.shape[-2]))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        y = self.fuse(self.neck([features[i] for i in self.levels])[0])
        return torch.cat([self.heatmap(y), self.regression(y)], dim=1)

    # -- training -----------------------------------------------------------------------------
    def targets(self, targets: Targets, shape: tuple[int, int], device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, Any]]]:
        """Heat maps ``[B, C, H, W]``, an ignore mask ``[B, 1, H, W]`` and the centres
        ``(image, row, col, [w, h, dx, dy])`` of every box of the batch."""
        h, w = shape
        heat = torch.zeros(len(targets), self.num_classes, h, w, device=device)
        ignore = torch.zeros(len(targets), 1, h, w, dtype=torch.bool, device=device)
        ys = torch.arange(h, device=device, dtype=torch.float32)[:, None]
        xs = torch.arange(w, device=device, dtype=torch.float32)[None, :]
        centres: list[tuple[int, int, int, Any]] = []
        s = float(self.stride)
        for b, t in enumerate(targets):
            boxes = t["boxes"].to(device=device, dtype=torch.float32) / s
            skip = _ignore_boxes(t)
            for box, label, ign in zip(boxes, t["labels"], skip, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                if ign:
                    ignore[b, 0, max(int(y1), 0):min(math.ceil(y2), h),
                           max(int(x1), 0):min(math.ceil(x2), w)] = True
                    continue
                bw, bh = x2 - x1, y2 - y1
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                col, row = min(max(int(cx), 0), w - 1), min(max(int(cy), 0), h - 1)
                radius = max(0, int(gaussian_radius(bh, bw)))
                sigma = (2 * radius + 1) / 6
                g = torch.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma ** 2))
                g = torch.where(((xs - col).abs() <= radius) & ((ys - row).abs() <= radius), g,
                                torch.zeros_like(g))
                c = int(label)
                heat[b, c] = torch.maximum(heat[b, c], g)
                centres.append((b, row, col, (bw, bh, cx - col, cy - row)))
        return heat, ignore, centres

    def loss(self, outputs: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
        c = self.num_classes
        logits, reg = outputs[:, :c], outputs[:, c:]
        heat, ignore, centres = self.targets(targets, tuple(outputs.shape[-2:]), outputs.device)
        p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
        pos = heat.eq(1.0)
        pos_loss = torch.log(p) * (1 - p) ** 2 * pos
        neg_loss = torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (~pos)
        keep = (~ignore).float()
        n = max(len(centres), 1)
        heat_loss = -((pos_loss + neg_loss) * keep).sum() / n
        if centres:
            b = torch.tensor([k[0] for k in centres], device=outputs.device)
            r = torch.tensor([k[1] for k in centres], device=outputs.device)
            col = torch.tensor([k[2] for k in centres], device=outputs.device)
            want = torch.tensor([k[3] for k in centres], device=outputs.device,
                                dtype=reg.dtype)
            got = reg[b, :, r, col]
            size = F.l1_loss(got[:, :2], want[:, :2], reduction="sum") / n
            offset = F.l1_loss(got[:, 2:], want[:, 2:], reduction="sum") / n
        else:
            size = offset = reg.sum() * 0.0
        return {"heatmap": heat_loss, "size": self.size_weight * size,
                "offset": self.offset_weight * offset}

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy toward the teacher's heat-map probabilities, plus L1 toward its
        size and offset weighted by its peak class probability at each location (ours)."""
        c = self.num_classes
        teacher = teacher.detach()
        t_prob = torch.sigmoid(teacher[:, :c])
        heat = F.binary_cross_entropy_with_logits(student[:, :c], t_prob)
        weight = t_prob.amax(dim=1, keepdim=True)
        reg = ((student[:, c:] - teacher[:, c:]).abs() * weight).sum() / weight.sum().clamp(min=1)
        return heat + self.size_weight * reg

    # -- decoding -----------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, outputs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        c = self.num_classes
        heat = torch.sigmoid(outputs[:, :c].float())
        reg = outputs[:, c:].float()
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        bsz, _, h, w = heat.shape
        k = min(self.max_detections, c * h * w)
        scores, index = peaks.flatten(1).topk(k, dim=1)
        labels = index // (h * w)
        cell = index % (h * w)
        rows, cols = (cell // w).float(), (cell % w).float()
        out = []
        ih, iw = self.image_size
        s = float(self.stride)
        for b in range(bsz):
            r = reg[b].flatten(1)[:, cell[b]]
            cx, cy = cols[b] + r[2], rows[b] + r[3]
            bw, bh = r[0].clamp(min=0), r[1].clamp(min=0)
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * s
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, iw)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ih)
            keep = scores[b] > 0.0
            out.append({"boxes": boxes[keep], "scores": scores[b][keep],
                        "labels": labels[b][keep]})
        return out


# -- SSDLite -----------------------------------------------------------------------------------
class SSDLiteHead(nn.Module):
    """SSDLite-style anchor head: on every level read (FPN-merged, ``channels`` wide), a
    depthwise-separable predictor for the class logits (background + ``C``) and one for the
    encoded boxes of each default box.

    Default boxes: per level ``k`` of ``K``, square side ``s_k`` linear from ``min_scale`` to
    ``max_scale`` of the shorter image side, one box per aspect ratio plus the extra square of
    side ``sqrt(s_k s_{k+1})`` (see :func:`~nastk.tasks.detection.boxes.make_anchors`). Matching:
    each ground-truth box takes its best default box, and every default box whose best IoU is
    ``>= iou_threshold`` takes that box; a default box matched to a crowd or difficult box is
    ignored. Loss (``cls``, ``box``): softmax cross-entropy over the positives and the hardest
    negatives (``neg_pos_ratio`` per positive), smooth L1 on the positives' encoded boxes, both
    divided by the number of positives. Decoding: softmax, scores above ``score_threshold``,
    class-wise NMS at ``nms_threshold``, the best ``max_detections``.
    """

    kind = "ssdlite"

    def __init__(self, body: nn.Module, num_classes: int, image_size: tuple[int, int], *,
                 channels: int = 32, min_stride: int = 8, min_scale: float = 0.15,
                 max_scale: float = 0.9, aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
                 iou_threshold: float = 0.5, neg_pos_ratio: float = 3.0,
                 score_threshold: float = 0.01, nms_threshold: float = 0.45,
                 max_detections: int = 100) -> None:
        super().__init__()
        info = feature_info(body)
        self.levels = select_levels([f.stride for f in info], min_stride)
        self.strides = [info[i].stride for i in self.levels]
        self.num_classes = int(num_classes)
        self.image_size = tuple(int(s) for s in image_size)
        self.iou_threshold, self.neg_pos_ratio = float(iou_threshold), float(neg_pos_ratio)
        self.score_threshold, self.nms_threshold = float(score_threshold), float(nms_threshold)
        self.max_detections = int(max_detections)
        n = len(self.levels)
        side = min(self.image_size)
        self.scales = [side * (min_scale + (max_scale - min_scale) * k / max(n - 1, 1))
                       for k in range(n)]
        self.aspect_ratios = [list(aspect_ratios)] * n
        self.per_cell = [anchors_per_cell(r) for r in self.aspect_ratios]
        self.neck = FeaturePyramidNeck([info[i].channels for i in self.levels], channels,
                                       smooth=True)
        self.cls = nn.ModuleList(_separable(channels, a * (1 + num_classes))
                                 for a in self.per_cell)
        self.box = nn.ModuleList(_separable(channels, a * 4) for a in self.per_cell)
        sizes = [(math.ceil(self.image_size[0] / s), math.ceil(self.image_size[1] / s))
                 for s in self.strides]
        self.register_buffer("anchors", self._anchors(sizes), persistent=False)

    @property
    def signature(self) -> tuple[str, int]:
        """What identifies this head's output geometry: its number of default boxes."""
        return ("ssdlite", int(self.anchors.shape[0]))

    @staticmethod
    def output_signature(outputs: torch.Tensor) -> tuple[str, int]:
        return ("ssdlite", int(outputs.shape[1]))

    def _anchors(self, sizes: list[tuple[int, int]]) -> torch.Tensor:
        return make_anchors(sizes, self.strides, self.scales, self.aspect_ratios,
                            self.image_size)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        maps = self.neck([features[i] for i in self.levels])
        out = []
        for m, cls, box in zip(maps, self.cls, self.box, strict=True):
            b = m.shape[0]
            logits = cls(m).permute(0, 2, 3, 1).reshape(b, -1, 1 + self.num_classes)
            deltas = box(m).permute(0, 2, 3, 1).reshape(b, -1, 4)
            out.append(torch.cat([logits, deltas], dim=2))
        return torch.cat(out, dim=1)

    def _anchors_for(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.shape[1] != self.anchors.shape[0]:
            raise ValueError(f"SSDLite head: {outputs.shape[1]} predictions for "
                             f"{self.anchors.shape[0]} default boxes; images must be "
                             f"{self.image_size} (the task's input size)")
        return self.anchors.to(outputs.device)

    def match(self, target: dict[str, torch.Tensor], anchors: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per default box: its class (0 background, -1 ignored, else label + 1) and its
        encoded target box."""
        n = anchors.shape[0]
        boxes = target["boxes"].to(anchors.device, torch.float32)
        cls = torch.zeros(n, dtype=torch.long, device=anchors.device)
        encoded = torch.zeros(n, 4, device=anchors.device)
        if boxes.shape[0] == 0:
            return cls, encoded
        iou = box_iou(anchors, boxes)  # [A, G]
        best, which = iou.max(dim=1)
        forced = iou.argmax(dim=0)  # each box's best default box
        best[forced] = 2.0
        which[forced] = torch.arange(boxes.shape[0], device=anchors.device)
        positive = best >= self.iou_threshold
        ignore = _ignore_boxes(target).to(anchors.device)
        labels = target["labels"].to(anchors.device).long() + 1
        cls[positive] = labels[which[positive]]
        cls[positive & ignore[which]] = -1
        encoded[positive] = encode_boxes(boxes[which[positive]], anchors[positive])
        return cls, encoded

    def loss(self, outputs: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
        anchors = self._anchors_for(outputs)
        matched = [self.match(t, anchors) for t in targets]
        cls = torch.stack([m[0] for m in matched])  # [B, A]
        enc = torch.stack([m[1] for m in matched])  # [B, A, 4]
        logits = outputs[..., : 1 + self.num_classes].float()
        deltas = outputs[..., 1 + self.num_classes:].float()
        positive = cls > 0
        n_pos = int(positive.sum())
        ce = F.cross_entropy(logits.transpose(1, 2), cls.clamp(min=0), reduction="none")
        with torch.no_grad():  # hard-negative mining, per image
            neg_ce = ce.clone()
            neg_ce[cls != 0] = -math.inf
            order = neg_ce.argsort(dim=1, descending=True).argsort(dim=1)
            n_neg = (positive.sum(1, keepdim=True) * self.neg_pos_ratio).clamp(min=1).long()
            n_neg = torch.minimum(n_neg, (cls == 0).sum(1, keepdim=True))
            negative = (order < n_neg) & (cls == 0)
        denom = max(n_pos, 1)
        cls_loss = ce[positive | negative].sum() / denom
        if n_pos:
            box_loss = F.smooth_l1_loss(deltas[positive], enc[positive], reduction="sum",
                                        beta=1.0) / denom
        else:
            box_loss = deltas.sum() * 0.0
        return {"cls": cls_loss, "box": box_loss}

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL divergence toward the teacher's class distribution of every default box, plus
        smooth L1 toward its boxes weighted by its foreground probability (ours)."""
        k = 1 + self.num_classes
        teacher = teacher.detach()
        t_prob = teacher[..., :k].softmax(-1)
        kl = F.kl_div(student[..., :k].log_softmax(-1), t_prob, reduction="batchmean")
        weight = 1 - t_prob[..., :1]
        box = (F.smooth_l1_loss(student[..., k:], teacher[..., k:], reduction="none")
               * weight).sum() / weight.sum().clamp(min=1)
        return kl / student.shape[1] + box

    @torch.no_grad()
    def decode(self, outputs: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        anchors = self._anchors_for(outputs)
        k = 1 + self.num_classes
        probs = outputs[..., :k].float().softmax(-1)[..., 1:]
        ih, iw = self.image_size
        out = []
        for b in range(outputs.shape[0]):
            boxes = decode_boxes(outputs[b, :, k:].float(), anchors)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, iw)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ih)
            scores = probs[b]
            anchor_ix, labels = torch.nonzero(scores > self.score_threshold, as_tuple=True)
            s = scores[anchor_ix, labels]
            if s.numel() > 1000:
                s, top = s.topk(1000)
                anchor_ix, labels = anchor_ix[top], labels[top]
            chosen = boxes[anchor_ix]
            keep = batched_nms(chosen, s, labels, self.nms_threshold)[: self.max_detections]
            out.append({"boxes": chosen[keep], "scores": s[keep], "labels": labels[keep]})
        return out


# -- the model ---------------------------------------------------------------------------------
class DetectionModel(nn.Module):
    """A staged body and a detection head; ``forward`` returns the head's one tensor."""

    def __init__(self, body: nn.Module, head: CenterNetHead | SSDLiteHead,
                 normalization: Normalization | None = None) -> None:
        super().__init__()
        #: the inputs' normalisation (:mod:`nastk.nn.normalization`), ``None`` for none
        self.normalize = normalization_layer(normalization)
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            x = self.normalize(x)
        return self.head(self.body.forward_features(x))
