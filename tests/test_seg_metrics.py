"""Segmentation metrics: hand-computed confusion matrices and the streaming ConfusionMatrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nastk.tasks.segmentation.metrics import ConfusionMatrix, scores_from_confusion

#: rows = ground truth, columns = prediction
M3 = np.array([[3, 1, 2],
               [0, 4, 1],
               [1, 0, 5]], dtype=np.int64)


def _labels_to_cm(target: list[int], pred: list[int], num_classes: int,
                  ignore_index: int | None = 255) -> ConfusionMatrix:
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    cm.update(torch.tensor(pred).reshape(1, 1, -1), torch.tensor(target).reshape(1, 1, -1))
    return cm


def test_hand_built_three_classes():
    s = scores_from_confusion(M3)
    # TP = diagonal; FP = column sum - TP; FN = row sum - TP
    iou0 = 3 / (3 + 1 + 3)  # FP0 = 0 + 1, FN0 = 1 + 2
    iou1 = 4 / (4 + 1 + 1)  # FP1 = 1 + 0, FN1 = 0 + 1
    iou2 = 5 / (5 + 3 + 1)  # FP2 = 2 + 1, FN2 = 1 + 0
    assert s["iou"] == pytest.approx([iou0, iou1, iou2])
    assert s["miou"] == pytest.approx((iou0 + iou1 + iou2) / 3)
    assert s["pixel_accuracy"] == pytest.approx((3 + 4 + 5) / 17)
    acc = [3 / 6, 4 / 5, 5 / 6]  # TP / ground-truth pixels of the class
    assert s["accuracy_per_class"] == pytest.approx(acc)
    assert s["mean_accuracy"] == pytest.approx(sum(acc) / 3)
    fw = 6 / 17 * iou0 + 5 / 17 * iou1 + 6 / 17 * iou2
    assert s["fw_iou"] == pytest.approx(fw)
    assert s["score"] == pytest.approx((s["miou"] * s["mean_accuracy"] * fw) ** (1 / 3))


def test_perfect_prediction_scores_one():
    s = scores_from_confusion(np.diag([5, 0, 7]))
    assert s["pixel_accuracy"] == s["miou"] == s["mean_accuracy"] == s["fw_iou"] == 1.0
    assert s["score"] == pytest.approx(1.0)
    assert math.isnan(s["iou"][1]) and math.isnan(s["accuracy_per_class"][1])


def test_absent_classes_predicted_gives_zero_unpredicted_gives_nan():
    m = np.array([[2, 0, 0, 1],
                  [1, 3, 0, 0],
                  [0, 0, 0, 0],   # class 2: neither in ground truth nor predicted
                  [0, 0, 0, 0]])  # class 3: not in ground truth but predicted once
    s = scores_from_confusion(m)
    iou0 = 2 / (2 + 1 + 1)
    iou1 = 3 / (3 + 0 + 1)
    assert s["iou"][:2] == pytest.approx([iou0, iou1])
    assert math.isnan(s["iou"][2])
    assert s["iou"][3] == 0.0
    assert s["miou"] == pytest.approx((iou0 + iou1 + 0.0) / 3)  # NaN class excluded, 0 kept
    acc = s["accuracy_per_class"]
    assert acc[:2] == pytest.approx([2 / 3, 3 / 4])
    assert math.isnan(acc[2]) and math.isnan(acc[3])
    assert s["mean_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert s["fw_iou"] == pytest.approx(3 / 7 * iou0 + 4 / 7 * iou1)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    assert not math.isnan(s["score"])


def test_omit_classes_changes_class_means_but_not_pixel_accuracy():
    s = scores_from_confusion(M3, omit_classes=[0])
    iou1, iou2 = 4 / (4 + 1 + 1), 5 / (5 + 3 + 1)
    assert s["miou"] == pytest.approx((iou1 + iou2) / 2)
    assert s["mean_accuracy"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    # frequencies renormalised over classes 1 and 2: 5 and 6 of 11 pixels
    assert s["fw_iou"] == pytest.approx(5 / 11 * iou1 + 6 / 11 * iou2)
    assert s["score"] == pytest.approx((s["miou"] * s["mean_accuracy"] * s["fw_iou"]) ** (1 / 3))
    assert s["pixel_accuracy"] == pytest.approx(12 / 17)  # unchanged
    assert len(s["iou"]) == 3  # per-class lists keep every class
    with pytest.raises(ValueError, match="omit_classes"):
        scores_from_confusion(M3, omit_classes=[3])


def test_scores_reject_bad_matrices():
    with pytest.raises(ValueError, match="no pixel was counted"):
        scores_from_confusion(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        scores_from_confusion(np.array([[1, -1], [0, 1]]))


def test_matrix_rows_are_ground_truth_and_matches_hand_built():
    # the pixels of M3 listed as (target, pred) pairs
    target = [0] * 6 + [1] * 5 + [2] * 6
    pred = [*(0, 0, 0, 1, 2, 2), *(1, 1, 1, 1, 2), *(0, 2, 2, 2, 2, 2)]
    cm = _labels_to_cm(target, pred, 3)
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, M3)
    assert cm.total == 17
    assert cm.compute() == scores_from_confusion(M3)


def test_ignore_index_pixels_change_nothing():
    target = [0, 1, 1, 2]
    pred = [0, 1, 2, 2]
    base = _labels_to_cm(target, pred, 3)
    # the same pixels plus ignored ones with arbitrary (also wrong) predictions
    noisy = _labels_to_cm([*target, 255, 255, 255], [*pred, 0, 1, 2], 3)
    np.testing.assert_array_equal(noisy.matrix, base.matrix)
    assert noisy.compute() == base.compute()
    # a custom ignore index
    custom = _labels_to_cm([*target, -1, -1], [*pred, 1, 0], 3, ignore_index=-1)
    np.testing.assert_array_equal(custom.matrix, base.matrix)
    # only ignored pixels: nothing counted, and compute() says so
    empty = _labels_to_cm([255, 255], [0, 1], 3)
    assert empty.total == 0
    with pytest.raises(ValueError, match="no pixel was counted"):
        empty.compute()


def test_streaming_equals_one_batch():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (6, 5, 7), generator=g)
    target[target == 3] = 255  # some ignored pixels
    pred = torch.randint(0, 3, (6, 5, 7), generator=g)
    whole = ConfusionMatrix(3)
    whole.update(pred, target)
    streamed = ConfusionMatrix(3)
    for i in range(0, 6, 2):
        streamed.update(pred[i:i + 2], target[i:i + 2])
    np.testing.assert_array_equal(streamed.matrix, whole.matrix)
    assert streamed.compute() == whole.compute()
    # merging two halves is the same again
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(pred[:3], target[:3])
    b.update(pred[3:], target[3:])
    a += b
    np.testing.assert_array_equal(a.matrix, whole.matrix)
    a.reset()
    assert a.total == 0


def test_logits_equal_argmax_labels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 5, generator=g)
    target = torch.randint(0, 4, (2, 3, 5), generator=g)
    from_logits, from_labels = ConfusionMatrix(4), ConfusionMatrix(4)
    from_logits.update(logits, target)
    from_labels.update(logits.argmax(dim=1), target)
    np.testing.assert_array_equal(from_logits.matrix, from_labels.matrix)
    assert from_logits.total == 2 * 3 * 5
    with pytest.raises(ValueError, match="3 channels"):
        ConfusionMatrix(4).update(logits[:, :3], target)


def test_out_of_range_target_raises_naming_the_value():
    cm = ConfusionMatrix(5)
    with pytest.raises(ValueError) as err:
        cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 7], [1, 255]]]))
    msg = str(err.value)
    assert "7" in msg and "num_classes=5" in msg and "255" in msg
    with pytest.raises(ValueError, match="-2"):
        cm.update(torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([[[-2]]]))
    # without an ignore index, 255 is just out of range
    with pytest.raises(ValueError, match="255"):
        _labels_to_cm([255], [0], 5, ignore_index=None)
    assert cm.total == 0  # a rejected batch adds nothing


def test_bad_inputs_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="predicted label 3"):
        cm.update(torch.tensor([[[3]]]), torch.tensor([[[0]]]))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(4))
