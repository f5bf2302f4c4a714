"""Detection AP (COCO and VOC07): hand-built cases with hand-computed values, the streaming
evaluator, and a cross-check against a literal loop re-implementation of the COCO protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nastk.tasks.detection.metrics import (
    DetectionEvaluator,
    average_precision_11pt,
    coco_ap,
    voc07_ap,
)


def pred(boxes, scores, labels=None):
    labels = [0] * len(scores) if labels is None else labels
    return {"boxes": np.array(boxes, dtype=float).reshape(-1, 4),
            "scores": np.array(scores, dtype=float), "labels": np.array(labels, dtype=int)}


def gt(boxes, labels=None, **extra):
    labels = [0] * len(boxes) if labels is None else labels
    out = {"boxes": np.array(boxes, dtype=float).reshape(-1, 4),
           "labels": np.array(labels, dtype=int)}
    out.update({k: np.array(v) for k, v in extra.items()})
    return out


def evaluate(preds, targets, num_classes=1, **kw):
    ev = DetectionEvaluator(num_classes, **kw)
    ev.add(preds, targets)
    return ev.compute()


A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
C = [40, 0, 60, 20]
FAR = [200, 200, 210, 210]


# -- hand-built cases -------------------------------------------------------------------------
def test_perfect_detections():
    targets = [gt([A, B], [0, 1]), gt([C], [1]), gt([[0, 0, 50, 50]], [0])]
    preds = [pred([B, A], [0.3, 0.9], [1, 0]), pred([C], [0.5], [1]),
             pred([[0, 0, 50, 50]], [0.2], [0])]
    m = evaluate(preds, targets, num_classes=2, class_names=["Cat", "Traffic light"])
    for key in ("ap", "ap50", "ap75", "voc07_ap50", "ar1", "ar10", "ar100",
                "ap50_cat", "ap50_traffic_light"):
        assert m[key] == pytest.approx(1.0), key


def test_missed_box():
    # 1 of 2 found: precision 1 up to recall 0.5 -> 51 of the 101 recall points
    targets = [gt([A, B])]
    preds = [pred([A], [0.9])]
    m = evaluate(preds, targets)
    assert m["ap"] == pytest.approx(51 / 101)
    assert m["ap50"] == pytest.approx(51 / 101)
    assert m["ap75"] == pytest.approx(51 / 101)
    assert m["voc07_ap50"] == pytest.approx(6 / 11)  # t = 0, 0.1, ..., 0.5
    assert m["ar100"] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    # TP(0.9), duplicate FP(0.8), TP(0.7): recall .5 .5 1, precision 1 .5 2/3
    # -> monotone 1 2/3 2/3: 51 recall points at precision 1, 50 at 2/3
    targets = [gt([A, B])]
    preds = [pred([A, A, B], [0.9, 0.8, 0.7])]
    m = evaluate(preds, targets)
    assert m["ap"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert m["ap50"] == pytest.approx(253 / 303)
    assert m["voc07_ap50"] == pytest.approx((6 + 5 * 2 / 3) / 11)  # 28/33
    assert m["ar100"] == pytest.approx(1.0)
    # the duplicate scored below every TP costs nothing
    m = evaluate([pred([A, B, A], [0.9, 0.8, 0.7])], targets)
    assert m["ap"] == pytest.approx(1.0) and m["voc07_ap50"] == pytest.approx(1.0)


def test_wrong_class():
    targets = [gt([A], [0])]
    preds = [pred([A], [0.9], [1])]
    m = evaluate(preds, targets, num_classes=2, class_names=["a", "b"])
    assert m["ap"] == 0.0 and m["ap50"] == 0.0 and m["voc07_ap50"] == 0.0
    assert m["ap50_a"] == 0.0
    assert "ap50_b" not in m  # class b has no ground truth: left out, not averaged
    assert voc07_ap(preds, targets, 2)["per_class_ap"][1] != \
        voc07_ap(preds, targets, 2)["per_class_ap"][1]  # NaN


def test_low_iou_box():
    # IoU 0.62 passes the thresholds 0.50, 0.55, 0.60: 3 of 10
    targets = [gt([A])]
    preds = [pred([[0, 0, 10, 6.2]], [0.9])]
    m = evaluate(preds, targets)
    assert m["ap50"] == pytest.approx(1.0)
    assert m["ap75"] == 0.0
    assert m["ap"] == pytest.approx(0.3)
    assert m["ar100"] == pytest.approx(0.3)
    assert m["voc07_ap50"] == pytest.approx(1.0)


def test_iou_exactly_half_counts_for_coco_not_for_voc():
    targets = [gt([A])]
    preds = [pred([[0, 0, 10, 5]], [0.9])]  # IoU exactly 0.5
    m = evaluate(preds, targets)
    assert m["ap50"] == pytest.approx(1.0)  # COCO: IoU >= t
    assert m["ap"] == pytest.approx(0.1)
    assert m["voc07_ap50"] == 0.0  # VOC: IoU > 0.5


def test_no_detections():
    m = evaluate([pred([], [])], [gt([A, B])])
    for key in ("ap", "ap50", "ap75", "ap_small", "ar1", "ar100", "voc07_ap50"):
        assert m[key] == 0.0, key
    assert math.isnan(m["ap_large"])


def test_false_positive_on_an_image_without_boxes():
    # FP(0.9) on the empty image, then TP(0.5): recall 0 1, precision 0 .5 -> monotone .5 .5
    targets = [gt([A]), gt([])]
    preds = [pred([A], [0.5]), pred([B], [0.9])]
    m = evaluate(preds, targets)
    assert m["ap"] == pytest.approx(0.5)
    assert m["voc07_ap50"] == pytest.approx(0.5)
    assert m["ar100"] == pytest.approx(1.0)
    # below the TP it does not lower AP
    preds = [pred([A], [0.5]), pred([B], [0.1])]
    m = evaluate(preds, targets)
    assert m["ap"] == pytest.approx(1.0) and m["voc07_ap50"] == pytest.approx(1.0)


def test_difficult_box():
    targets = [gt([A, B], difficult=[False, True])]
    # a detection on the difficult box (scored first) is neither TP nor FP
    m = evaluate([pred([B, A], [0.9, 0.8])], targets)
    assert m["voc07_ap50"] == pytest.approx(1.0)
    # ... and the difficult box does not count in recall
    m = evaluate([pred([A], [0.8])], targets)
    assert m["voc07_ap50"] == pytest.approx(1.0)
    # not difficult: 1 of 2 found
    m = evaluate([pred([A], [0.8])], [gt([A, B])])
    assert m["voc07_ap50"] == pytest.approx(6 / 11)
    # COCO does not read the flag: the box counts as a normal one
    m = evaluate([pred([A], [0.8])], targets)
    assert m["ap"] == pytest.approx(51 / 101)


def test_crowd_region():
    crowd = [50, 50, 100, 100]
    inside = [60, 60, 70, 70]  # crowd IoU = 100 / 100 = 1; standard IoU = 100 / 2500
    targets = [gt([A, crowd], iscrowd=[False, True])]
    preds = [pred([crowd, inside, A], [0.9, 0.85, 0.8])]
    m = evaluate(preds, targets)
    # COCO: both detections on the crowd box are ignored (a crowd box matches many)
    assert m["ap"] == pytest.approx(1.0)
    assert m["ar100"] == pytest.approx(1.0)
    # VOC07: the crowd box is difficult; `inside` has standard IoU 0.04 with it -> FP
    # ignored, FP, TP: recall 0 0 1, precision 0 0 .5
    assert m["voc07_ap50"] == pytest.approx(0.5)
    # the crowd box does not count in recall
    m = evaluate([pred([A], [0.8])], targets)
    assert m["ap"] == pytest.approx(1.0) and m["voc07_ap50"] == pytest.approx(1.0)
    # a split whose only box of a class is a crowd box: the class is undefined
    m = evaluate([pred([crowd], [0.9])], [gt([crowd], iscrowd=[True])])
    assert math.isnan(m["ap"]) and math.isnan(m["voc07_ap50"]) and "ap50_0" not in m


def test_crowd_box_not_preferred_over_a_normal_box():
    # the detection overlaps the crowd box more, but a normal box with IoU >= t comes first
    normal = [0, 0, 10, 10]
    crowd = [0, 0, 12, 10]  # crowd IoU of the detection: 1
    det = [0, 0, 10.5, 10]  # IoU with normal: 100 / 105
    m = evaluate([pred([det], [0.9])], [gt([normal, crowd], iscrowd=[False, True])])
    assert m["ap50"] == pytest.approx(1.0)


def test_iou_tie_goes_to_the_later_box():
    # det1 has IoU 90/110 with both boxes; as in pycocotools it takes the later one (g2), so
    # det2 (= g1) still finds g1 with IoU 1
    g1, g2 = [0, 0, 10, 10], [2, 0, 12, 10]
    det1, det2 = [1, 0, 11, 10], g1
    m = evaluate([pred([det1, det2], [0.9, 0.8])], [gt([g1, g2])])
    # t <= 0.80 (7 thresholds): both TP -> AP 1; t >= 0.85: det1 FP, det2 TP -> 51 recall
    # points at precision 0.5
    assert m["ap"] == pytest.approx((7 + 3 * 0.5 * 51 / 101) / 10)
    # VOC takes the first best box: det1 -> g1, det2 -> g1 again: FP
    assert m["voc07_ap50"] == pytest.approx(6 / 11)


def test_max_detections_per_image():
    # 100 higher-scored FPs push the TP out of the 100 kept detections
    fps = [[200 + 3 * i, 200, 202 + 3 * i, 202] for i in range(100)]
    boxes = [*fps, A]
    scores = [0.9 - 0.001 * i for i in range(100)] + [0.05]
    targets = [gt([A])]
    preds = [pred(boxes, scores)]
    m = evaluate(preds, targets)
    assert m["ap"] == 0.0 and m["ar100"] == 0.0
    assert m["voc07_ap50"] == pytest.approx(1 / 101)  # VOC keeps every detection
    # with 101 allowed: the TP comes last, precision 1/101 everywhere
    m = evaluate(preds, targets, max_detections=101)
    assert m["ap"] == pytest.approx(1 / 101)
    assert m["ar100"] == pytest.approx(1.0)  # AR@max_detections
    assert m["ar1"] == 0.0 and m["ar10"] == 0.0
    # the cap is per image *and category*: FPs of another class do not push the TP out
    preds = [pred(boxes, scores, [1] * 100 + [0])]
    m = evaluate(preds, [gt([A], [0])], num_classes=2)
    assert m["ap"] == pytest.approx(1.0)


def test_ar_at_1_and_10():
    # 2 boxes in one image, both found: AR@1 = 0.5, AR@10 = 1
    m = evaluate([pred([A, B], [0.9, 0.8])], [gt([A, B])])
    assert m["ar1"] == pytest.approx(0.5)
    assert m["ar10"] == pytest.approx(1.0)


def test_area_ranges():
    # small box only: the medium and large metrics are undefined
    m = evaluate([pred([A], [0.9])], [gt([A])])
    assert m["ap_small"] == pytest.approx(1.0)
    assert math.isnan(m["ap_medium"]) and math.isnan(m["ap_large"])
    assert math.isnan(m["ar_large"])
    # the annotation's area decides, not the box
    m = evaluate([pred([A], [0.9])], [gt([A], area=[100.0**2])])
    assert m["ap_large"] == pytest.approx(1.0) and math.isnan(m["ap_small"])
    # an unmatched large detection is ignored for ap_small, but an FP for ap
    big = [100, 100, 300, 300]
    m = evaluate([pred([big, A], [0.9, 0.5])], [gt([A])])
    assert m["ap"] == pytest.approx(0.5)
    assert m["ap_small"] == pytest.approx(1.0)
    # a detection matched to a box outside the range is ignored: medium box + small box
    medium = [0, 0, 50, 50]
    m = evaluate([pred([medium, B], [0.9, 0.8])], [gt([medium, B])])
    assert m["ap_small"] == pytest.approx(1.0) and m["ap_medium"] == pytest.approx(1.0)


def test_no_ground_truth_at_all_is_nan():
    m = evaluate([pred([A], [0.9])], [gt([])])
    for key in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar100",
                "voc07_ap50"):
        assert math.isnan(m[key]), key
    assert not any(k.startswith("ap50_") for k in m)
    assert math.isnan(DetectionEvaluator(3).compute()["ap"])


def test_average_precision_11pt():
    assert average_precision_11pt([], []) == 0.0
    assert average_precision_11pt([0.3], [1.0]) == pytest.approx(4 / 11)  # t = 0 .. 0.3
    assert average_precision_11pt([0.5, 1.0], [1.0, 0.5]) == pytest.approx((6 + 2.5) / 11)
    with pytest.raises(ValueError):
        average_precision_11pt([0.1], [0.1, 0.2])


def test_input_validation():
    with pytest.raises(ValueError):
        coco_ap([pred([A], [0.9], [2])], [gt([A])], num_classes=2)
    with pytest.raises(ValueError):
        coco_ap([pred([A], [0.9])], [gt([A]), gt([B])], num_classes=1)
    with pytest.raises(ValueError):
        coco_ap([pred([A], [0.9, 0.1])], [gt([A])], num_classes=1)
    with pytest.raises(ValueError):
        DetectionEvaluator(2, ["a cat", "A  cat"])
    with pytest.raises(ValueError):
        DetectionEvaluator(2, ["a"])
    with pytest.raises(ValueError):
        DetectionEvaluator(0)


# -- random scenes: streaming == pure functions == literal reference --------------------------
def random_split(seed: int, n_images: int = 20, num_classes: int = 3, max_det: int = 10):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 150, size=(g, 2))
        wh = rng.choice([8.0, 20.0, 40.0, 120.0], size=(g, 1)) * rng.uniform(0.7, 1.3, (g, 2))
        gboxes = np.concatenate([xy, xy + wh], axis=1)
        glabels = rng.integers(0, num_classes, size=g)
        crowd = rng.random(g) < 0.15
        difficult = rng.random(g) < 0.15
        # detections: jittered copies of some boxes, plus random ones; coarse scores -> ties
        d_from = rng.integers(0, max(g, 1), size=int(rng.integers(0, max_det))) if g else []
        dboxes = [gboxes[i] + rng.normal(0, 0.05, 4) * np.tile(wh[i], 2) for i in d_from]
        dlabels = [glabels[i] if rng.random() < 0.85 else rng.integers(0, num_classes)
                   for i in d_from]
        for _ in range(int(rng.integers(0, 4))):
            p = rng.uniform(0, 150, 2)
            dboxes.append(np.concatenate([p, p + rng.uniform(5, 80, 2)]))
            dlabels.append(rng.integers(0, num_classes))
        dboxes = np.array(dboxes, dtype=float).reshape(-1, 4)
        dboxes[:, 2:] = np.maximum(dboxes[:, 2:], dboxes[:, :2] + 0.5)
        scores = rng.integers(1, 10, size=len(dboxes)) / 10.0
        preds.append({"boxes": torch.tensor(dboxes), "scores": torch.tensor(scores),
                      "labels": torch.tensor(np.array(dlabels, dtype=np.int64))})
        tgt = {"boxes": gboxes, "labels": glabels, "iscrowd": crowd, "difficult": difficult}
        if rng.random() < 0.5:
            tgt["area"] = (gboxes[:, 2] - gboxes[:, 0]) * (gboxes[:, 3] - gboxes[:, 1]) \
                * rng.uniform(0.5, 1.0, g)
        targets.append(tgt)
    return preds, targets


def ref_iou(d, g, crowd):
    iw = max(min(d[2], g[2]) - max(d[0], g[0]), 0.0)
    ih = max(min(d[3], g[3]) - max(d[1], g[1]), 0.0)
    inter = iw * ih
    ad = (d[2] - d[0]) * (d[3] - d[1])
    ag = (g[2] - g[0]) * (g[3] - g[1])
    u = ad if crowd else ad + ag - inter
    return inter / u if u > 0 else 0.0


def ref_coco(preds, targets, num_classes, max_det):
    """A literal, loop-by-loop reading of the COCO protocol (evaluateImg + accumulate)."""
    iou_thrs = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)
    ranges = [(0, 1e10), (0, 32**2), (32**2, 96**2), (96**2, 1e10)]
    max_dets = [1, 10, max_det]
    evals = {}
    for p, t in zip(preds, targets, strict=True):
        pb, ps, pl = (np.asarray(p[k]) for k in ("boxes", "scores", "labels"))
        tb, tl = np.asarray(t["boxes"]), np.asarray(t["labels"])
        tc = np.asarray(t["iscrowd"], dtype=bool)
        ta = np.asarray(t["area"]) if "area" in t else (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])
        for c in range(num_classes):
            gts = [(tb[i], bool(tc[i]), float(ta[i])) for i in range(len(tl)) if tl[i] == c]
            dts = [(pb[i], float(ps[i])) for i in range(len(pl)) if pl[i] == c]
            if not gts and not dts:
                continue
            dts = [dts[i] for i in np.argsort([-s for _, s in dts], kind="mergesort")][:max_det]
            for a, (lo, hi) in enumerate(ranges):
                g_ig = [1 if (cr or ar < lo or ar > hi) else 0 for _, cr, ar in gts]
                gind = np.argsort(g_ig, kind="mergesort")
                g_sorted = [gts[i] for i in gind]
                g_ig = [g_ig[i] for i in gind]
                ious = [[ref_iou(d, g, cr) for g, cr, _ in g_sorted] for d, _ in dts]
                nt, nd, ng = len(iou_thrs), len(dts), len(g_sorted)
                gtm = np.zeros((nt, ng))
                dtm = np.zeros((nt, nd))
                dt_ig = np.zeros((nt, nd))
                for ti, thr in enumerate(iou_thrs):
                    for di in range(nd):
                        best = min(thr, 1 - 1e-10)
                        m = -1
                        for gi in range(ng):
                            if gtm[ti, gi] > 0 and not g_sorted[gi][1]:
                                continue
                            if m > -1 and g_ig[m] == 0 and g_ig[gi] == 1:
                                break
                            if ious[di][gi] < best:
                                continue
                            best = ious[di][gi]
                            m = gi
                        if m == -1:
                            continue
                        dt_ig[ti, di] = g_ig[m]
                        dtm[ti, di] = 1
                        gtm[ti, m] = 1
                for di, (d, _) in enumerate(dts):
                    ad = (d[2] - d[0]) * (d[3] - d[1])
                    if ad < lo or ad > hi:
                        for ti in range(nt):
                            if dtm[ti, di] == 0:
                                dt_ig[ti, di] = 1
                evals.setdefault((c, a), []).append(
                    ([s for _, s in dts], dtm, dt_ig, sum(1 for v in g_ig if v == 0)))
    precision = -np.ones((10, 101, num_classes, 4, 3))
    recall = -np.ones((10, num_classes, 4, 3))
    for (c, a), es in evals.items():
        for mi, md in enumerate(max_dets):
            npig = sum(e[3] for e in es)
            if npig == 0:
                continue
            sc = np.concatenate([np.array(e[0][:md], dtype=float) for e in es])
            inds = np.argsort(-sc, kind="mergesort")
            dtm = np.concatenate([e[1][:, :md] for e in es], axis=1)[:, inds]
            dig = np.concatenate([e[2][:, :md] for e in es], axis=1)[:, inds]
            tps = np.logical_and(dtm, np.logical_not(dig))
            fps = np.logical_and(np.logical_not(dtm), np.logical_not(dig))
            tp_sum = np.cumsum(tps, axis=1).astype(float)
            fp_sum = np.cumsum(fps, axis=1).astype(float)
            for ti in range(10):
                tp, fp = tp_sum[ti], fp_sum[ti]
                nd = len(tp)
                rc = tp / npig
                pr = list(tp / (fp + tp + np.spacing(1)))
                recall[ti, c, a, mi] = rc[-1] if nd else 0
                for i in range(nd - 1, 0, -1):
                    if pr[i] > pr[i - 1]:
                        pr[i - 1] = pr[i]
                q = np.zeros(101)
                for ri, pi in enumerate(np.searchsorted(rc, rec_thrs, side="left")):
                    if pi < nd:
                        q[ri] = pr[pi]
                precision[ti, :, c, a, mi] = q

    def mean(x):
        x = x[x > -1]
        return float(x.mean()) if x.size else math.nan

    return {
        "ap": mean(precision[:, :, :, 0, 2]), "ap50": mean(precision[0, :, :, 0, 2]),
        "ap75": mean(precision[5, :, :, 0, 2]), "ap_small": mean(precision[:, :, :, 1, 2]),
        "ap_medium": mean(precision[:, :, :, 2, 2]), "ap_large": mean(precision[:, :, :, 3, 2]),
        "ar1": mean(recall[:, :, 0, 0]), "ar10": mean(recall[:, :, 0, 1]),
        "ar100": mean(recall[:, :, 0, 2]), "ar_small": mean(recall[:, :, 1, 2]),
        "ar_medium": mean(recall[:, :, 2, 2]), "ar_large": mean(recall[:, :, 3, 2]),
    }


def ref_voc07(preds, targets, num_classes):
    """A literal reading of the VOC07 protocol, class by class."""
    aps = []
    for c in range(num_classes):
        recs, npos = {}, 0
        for i, t in enumerate(targets):
            m = np.asarray(t["labels"]) == c
            diff = (np.asarray(t["difficult"]) | np.asarray(t["iscrowd"]))[m]
            recs[i] = [np.asarray(t["boxes"])[m], diff, [False] * int(m.sum())]
            npos += int((~diff).sum())
        dets = [(float(p["scores"][k]), i, np.asarray(p["boxes"][k]))
                for i, p in enumerate(preds) for k in range(len(p["scores"]))
                if int(p["labels"][k]) == c]
        order = np.argsort([-s for s, _, _ in dets], kind="mergesort")
        tp, fp = [], []
        for k in order:
            _, i, d = dets[k]
            boxes, diff, seen = recs[i]
            ovs = [ref_iou(d, g, False) for g in boxes]
            if ovs and max(ovs) > 0.5:
                j = int(np.argmax(ovs))
                if diff[j]:
                    tp.append(0)
                    fp.append(0)
                elif not seen[j]:
                    seen[j] = True
                    tp.append(1)
                    fp.append(0)
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        if npos == 0:
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / npos
        prec = ctp / np.maximum(ctp + cfp, np.finfo(float).eps)
        ap = 0.0
        for th in [i / 10 for i in range(11)]:
            ap += (prec[rec >= th].max() if (rec >= th).any() else 0.0) / 11
        aps.append(ap)
    return float(np.mean(aps)) if aps else math.nan


@pytest.mark.parametrize("seed", range(8))
def test_random_scenes_match_reference_and_streaming(seed):
    max_det = 2 if seed % 2 else 100  # exercise the truncation too
    preds, targets = random_split(seed)
    want = ref_coco(preds, targets, 3, max_det)
    got = coco_ap(preds, targets, 3, max_detections=max_det)
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key
    voc = voc07_ap(preds, targets, 3)
    assert voc["map"] == pytest.approx(ref_voc07(preds, targets, 3), abs=1e-12, nan_ok=True)

    # streaming in uneven batches == one call of the pure functions
    ev = DetectionEvaluator(3, ["person", "Traffic Light", "dog"], max_detections=max_det)
    for lo, hi in [(0, 3), (3, 4), (4, 20)]:
        ev.add(preds[lo:hi], targets[lo:hi])
    assert len(ev) == 20
    m = ev.compute()
    for key in want:
        assert m[key] == pytest.approx(got[key], nan_ok=True), key
    assert m["voc07_ap50"] == pytest.approx(voc["map"], nan_ok=True)
    for name, value in zip(["person", "traffic_light", "dog"], got["per_class_ap50"],
                           strict=True):
        if math.isnan(value):
            assert f"ap50_{name}" not in m
        else:
            assert m[f"ap50_{name}"] == pytest.approx(value)
    ev.reset()
    assert len(ev) == 0 and math.isnan(ev.compute()["ap"])


def test_evaluator_stores_copies():
    boxes = torch.tensor([A], dtype=torch.float32)
    p = {"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    t = {"boxes": boxes.clone(), "labels": torch.tensor([0])}
    ev = DetectionEvaluator(1)
    ev.add([p], [t])
    boxes += 100.0  # the caller reuses its buffers
    assert ev.compute()["ap"] == pytest.approx(1.0)
