"""Detection box operations against brute-force python / numpy versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nastk.tasks.detection.boxes as boxes_module
from nastk.tasks.detection.boxes import (
    MAX_LOG_SCALE,
    anchors_per_cell,
    batched_nms,
    box_area,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    make_anchors,
    nms,
    scale_boxes,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)

SEEDS = [0, 1, 2, 3, 4]


def random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    """``n`` random valid xyxy boxes (float64) inside ``[0, size]^2``, a few of them repeated."""
    xy = rng.uniform(0, size * 0.8, size=(n, 2))
    wh = rng.uniform(1, size * 0.4, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    if n >= 4:
        boxes[1] = boxes[0]  # identical boxes
        boxes[3] = boxes[2]
    return torch.tensor(boxes, dtype=torch.float64)


# -- brute force ------------------------------------------------------------------------------
def bf_area(b) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def bf_iou(a, b) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = bf_area(a) + bf_area(b) - inter
    return inter / union if union > 0 else 0.0


def bf_giou(a, b) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = bf_area(a) + bf_area(b) - inter
    c = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    iou = inter / union if union > 0 else 0.0
    return iou - (c - union) / c if c > 0 else iou


def bf_nms(boxes: list, scores: list, thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(bf_iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


# -- IoU, GIoU, area --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_iou_giou_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = random_boxes(rng, 7)
    b = torch.cat([random_boxes(rng, 5), a[:2]])  # shared boxes: IoU exactly 1
    iou = box_iou(a, b)
    giou = generalized_box_iou(a, b)
    assert iou.shape == giou.shape == (7, 7)
    al, bl = a.tolist(), b.tolist()
    want_iou = [[bf_iou(x, y) for y in bl] for x in al]
    want_giou = [[bf_giou(x, y) for y in bl] for x in al]
    np.testing.assert_allclose(iou.numpy(), want_iou, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(giou.numpy(), want_giou, rtol=1e-12, atol=1e-12)
    assert iou[0, 5] == 1.0 and iou[1, 5] == 1.0 and giou[0, 6] == 1.0
    assert (giou <= iou + 1e-12).all() and (giou >= -1).all()
    np.testing.assert_allclose(box_area(a).numpy(), [bf_area(x) for x in al])


def test_iou_empty_and_degenerate():
    a = torch.tensor([[0.0, 0, 10, 10], [5, 5, 5, 5]])
    empty = torch.zeros(0, 4)
    assert box_iou(a, empty).shape == (2, 0)
    assert box_iou(empty, a).shape == (0, 2)
    assert generalized_box_iou(empty, empty).shape == (0, 0)
    assert generalized_box_iou(a, empty).shape == (2, 0)
    assert box_area(empty).shape == (0,)
    # two identical zero-area boxes: empty union -> IoU 0, GIoU 0, no NaN
    pt = torch.tensor([[5.0, 5, 5, 5]])
    assert box_iou(pt, pt).item() == 0.0
    assert generalized_box_iou(pt, pt).item() == 0.0
    # disjoint boxes: GIoU negative, hand-computed
    b = torch.tensor([[20.0, 0, 30, 10]])
    # union 200, enclosing 30 x 10 = 300 -> GIoU = 0 - 100 / 300
    assert generalized_box_iou(a[:1], b).item() == pytest.approx(-1 / 3)
    # integer input works and gives floats
    assert box_iou(torch.tensor([[0, 0, 2, 2]]), torch.tensor([[1, 0, 3, 2]])).item() == \
        pytest.approx(2 / 6)


# -- conversions ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_conversions_round_trip(seed):
    rng = np.random.default_rng(seed)
    b = random_boxes(rng, 9)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)).numpy(), b.numpy(), atol=1e-10)
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)).numpy(), b.numpy(), atol=1e-10)
    c = xyxy_to_cxcywh(b).numpy()
    bn = b.numpy()
    np.testing.assert_allclose(c[:, 0], (bn[:, 0] + bn[:, 2]) / 2)
    np.testing.assert_allclose(c[:, 3], bn[:, 3] - bn[:, 1])
    w = xyxy_to_xywh(b).numpy()
    np.testing.assert_allclose(w[:, :2], bn[:, :2])
    np.testing.assert_allclose(w[:, 2], bn[:, 2] - bn[:, 0])


def test_conversions_hand_checked_and_empty():
    b = torch.tensor([[10.0, 20, 30, 60]])
    assert xyxy_to_cxcywh(b).tolist() == [[20.0, 40.0, 20.0, 40.0]]
    assert xyxy_to_xywh(b).tolist() == [[10.0, 20.0, 20.0, 40.0]]
    assert xywh_to_xyxy(torch.tensor([[1.0, 2, 3, 4]])).tolist() == [[1.0, 2.0, 4.0, 6.0]]
    assert cxcywh_to_xyxy(torch.tensor([[5.0, 5, 4, 2]])).tolist() == [[3.0, 4.0, 7.0, 6.0]]
    for f in (xyxy_to_cxcywh, cxcywh_to_xyxy, xywh_to_xyxy, xyxy_to_xywh):
        assert f(torch.zeros(0, 4)).shape == (0, 4)
    clipped = clip_boxes(torch.tensor([[-5.0, -1, 50, 70], [3, 4, 5, 6]]), height=60, width=40)
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 60.0], [3.0, 4.0, 5.0, 6.0]]
    assert clip_boxes(torch.zeros(0, 4), 10, 10).shape == (0, 4)
    assert scale_boxes(b, 0.5, 2.0).tolist() == [[5.0, 40.0, 15.0, 120.0]]


# -- NMS --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.7])
def test_nms_against_brute_force(seed, thr):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 40)
    scores = torch.tensor(rng.integers(0, 6, size=40) / 5.0)  # many ties
    got = nms(boxes, scores, thr)
    assert got.dtype == torch.int64
    assert got.tolist() == bf_nms(boxes.tolist(), scores.tolist(), thr)
    # float32 input as well
    assert nms(boxes.float(), scores.float(), thr).tolist() == got.tolist()


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_nms_row_by_row_path(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 40)
    scores = torch.tensor(rng.integers(0, 6, size=40) / 5.0)
    want = nms(boxes, scores, 0.5).tolist()
    monkeypatch.setattr(boxes_module, "_NMS_MATRIX_LIMIT", 0)
    assert nms(boxes, scores, 0.5).tolist() == want == bf_nms(boxes.tolist(), scores.tolist(),
                                                               0.5)


def test_nms_hand_checked_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.8, 0.8, 0.9, 0.1])
    # 2 first; 0 has IoU 90/110 with it -> suppressed at 0.5; 1 too; 3 kept
    assert nms(boxes, scores, 0.5).tolist() == [2, 3]
    # at 0.95 the identical pair still suppresses (IoU 1 > 0.95): the lower index survives
    assert nms(boxes, scores, 0.95).tolist() == [2, 0, 3]
    assert nms(boxes, scores, 1.0).tolist() == [2, 0, 1, 3]
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.numel() == 0
    with pytest.raises(ValueError):
        nms(boxes, scores[:2], 0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_batched_nms_equals_per_class_nms(seed):
    rng = np.random.default_rng(seed)
    n = 50
    boxes = random_boxes(rng, n)
    scores = torch.tensor(rng.integers(0, 8, size=n) / 7.0)
    labels = torch.tensor(rng.integers(0, 4, size=n))
    got = batched_nms(boxes, scores, labels, 0.4)
    want: list[int] = []
    for c in range(4):
        idx = [i for i in range(n) if labels[i] == c]
        kept = bf_nms([boxes[i].tolist() for i in idx], [scores[i].item() for i in idx], 0.4)
        want += [idx[k] for k in kept]
    want.sort(key=lambda i: (-scores[i].item(), i))
    assert got.tolist() == want
    # one label for all = plain nms
    same = torch.zeros(n, dtype=torch.int64)
    assert batched_nms(boxes, scores, same, 0.4).tolist() == nms(boxes, scores, 0.4).tolist()


def test_batched_nms_classes_do_not_suppress_each_other():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.5, 0.9, 0.7])
    labels = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2]
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
                       0.5).numel() == 0


# -- encoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_encode_decode_round_trip(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 30)
    anchors = random_boxes(rng, 30)
    for variances in [(0.1, 0.2), (1.0, 1.0)]:
        deltas = encode_boxes(boxes, anchors, variances)
        np.testing.assert_allclose(decode_boxes(deltas, anchors, variances).numpy(),
                                   boxes.numpy(), rtol=1e-10, atol=1e-9)
    # against the formula, box by box
    deltas = encode_boxes(boxes, anchors).numpy()
    for (x1, y1, x2, y2), (a1, b1, a2, b2), d in zip(boxes.tolist(), anchors.tolist(), deltas,
                                                      strict=True):
        aw, ah = a2 - a1, b2 - b1
        want = [((x1 + x2) / 2 - (a1 + a2) / 2) / (aw * 0.1),
                ((y1 + y2) / 2 - (b1 + b2) / 2) / (ah * 0.1),
                math.log((x2 - x1) / aw) / 0.2, math.log((y2 - y1) / ah) / 0.2]
        np.testing.assert_allclose(d, want, rtol=1e-10, atol=1e-10)


def test_encode_hand_checked_and_decode_clamp():
    anchor = torch.tensor([[0.0, 0, 10, 20]])
    box = torch.tensor([[1.0, 2, 21, 42]])  # centre (11, 22), size 20 x 40
    d = encode_boxes(box, anchor)
    want = [(11 - 5) / (10 * 0.1), (22 - 10) / (20 * 0.1), math.log(2) / 0.2,
            math.log(2) / 0.2]
    np.testing.assert_allclose(d.numpy()[0], want, rtol=1e-6)
    assert torch.equal(encode_boxes(anchor, anchor), torch.zeros(1, 4))
    huge = torch.tensor([[0.0, 0.0, 1e4, 1e4]])
    out = decode_boxes(huge, anchor)
    assert torch.isfinite(out).all()
    width = out[0, 2] - out[0, 0]
    assert width.item() == pytest.approx(10 * math.exp(MAX_LOG_SCALE), rel=1e-5)
    assert width.item() == pytest.approx(10 * 1000 / 16, rel=1e-5)
    # a batch of deltas shares the anchors
    batch = torch.zeros(3, 1, 4)
    assert torch.allclose(decode_boxes(batch, anchor), anchor.expand(3, 1, 4))
    assert decode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


# -- anchors ----------------------------------------------------------------------------------
def test_make_anchors_count_order_and_hand_checked():
    sizes = [(4, 5), (2, 3), (1, 1)]
    strides = [8, 16, 32]
    scales = [10.0, 20.0, 40.0]
    ratios = [[1.0, 2.0, 0.5], [1.0, 2.0], [1.0]]
    anchors = make_anchors(sizes, strides, scales, ratios, image_size=(32, 40))
    per_cell = [anchors_per_cell(r) for r in ratios]
    assert per_cell == [4, 3, 2]
    assert anchors.shape == (4 * 5 * 4 + 2 * 3 * 3 + 1 * 2, 4)
    assert anchors.dtype == torch.float32
    # level 0, cell (i=1, j=2): centre (2.5 * 8, 1.5 * 8) = (20, 12); its 4 boxes
    start = (1 * 5 + 2) * 4
    cell = anchors[start:start + 4].double()
    r2 = math.sqrt(2)
    want = [[20 - 5, 12 - 5, 20 + 5, 12 + 5],  # ratio 1: 10 x 10
            [20 - 5 * r2, 12 - 5 / r2, 20 + 5 * r2, 12 + 5 / r2],  # ratio 2: w = 10 sqrt 2
            [20 - 5 / r2, 12 - 5 * r2, 20 + 5 / r2, 12 + 5 * r2],  # ratio 0.5
            [20 - math.sqrt(200) / 2, 12 - math.sqrt(200) / 2,  # extra: sqrt(10 * 20)
             20 + math.sqrt(200) / 2, 12 + math.sqrt(200) / 2]]
    np.testing.assert_allclose(cell.numpy(), want, rtol=1e-6)
    # level 1, cell (1, 0): centre (8, 24)
    start = 4 * 5 * 4 + (1 * 3 + 0) * 3
    np.testing.assert_allclose(anchors[start].numpy(), [-2, 14, 18, 34], rtol=1e-6)
    # last level's extra box: sqrt(40 * 1.5 * 40) without an extra scale ...
    side = (anchors[-1, 2] - anchors[-1, 0]).item()
    assert side == pytest.approx(math.sqrt(40 * 60), rel=1e-6)
    # ... or sqrt(40 * 80) with scales[K] = 80
    with_next = make_anchors(sizes, strides, [*scales, 80.0], ratios, image_size=(32, 40))
    assert (with_next[-1, 2] - with_next[-1, 0]).item() == pytest.approx(math.sqrt(3200))
    assert torch.equal(with_next[:-1], anchors[:-1])
    # centres of the first box of every level-0 cell, row-major
    centres = xyxy_to_cxcywh(anchors[:80:4])[:, :2]
    want_c = [[(j + 0.5) * 8, (i + 0.5) * 8] for i in range(4) for j in range(5)]
    np.testing.assert_allclose(centres.numpy(), want_c)


def test_make_anchors_shared_ratios_clip_and_errors():
    a = make_anchors([(3, 3), (1, 1)], [10, 30], [12.0, 30.0], [1.0, 2.0], image_size=(30, 30))
    assert a.shape == (9 * 3 + 3, 4)
    assert anchors_per_cell([1.0, 2.0]) == 3
    clipped = make_anchors([(3, 3), (1, 1)], [10, 30], [12.0, 30.0], [1.0, 2.0],
                           image_size=(30, 30), clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 30
    assert (a.min() < 0).item()
    with pytest.raises(ValueError):
        make_anchors([(3, 3)], [10, 20], [12.0], [1.0], image_size=(30, 30))
    with pytest.raises(ValueError):
        make_anchors([(3, 3)], [10], [12.0, 20.0, 30.0], [1.0], image_size=(30, 30))
    with pytest.raises(ValueError):
        make_anchors([(3, 3), (1, 1)], [10, 30], [12.0, 30.0], [[1.0]], image_size=(30, 30))
