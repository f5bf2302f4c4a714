"""The detection benchmarks' protocols: named splits (VOC07+12 trainval / VOC07 test, COCO
train2017 / val2017), COCO's size classes on the original image's pixels, and the VOC2010+
all-point AP beside the VOC07 11-point one."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Subset

from nastk.core import registry
from nastk.data.augment import Augmented
from nastk.data.folders import DatasetError
from nastk.data.loaders import make_loader
from nastk.data.sample_folders import write_coco, write_voc
from nastk.data.splits import holdout_indices
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.tasks.detection import DetectionTask
from nastk.tasks.detection.datasets import CocoDetection, VocDetection, load_dataset
from nastk.tasks.detection.metrics import (
    DetectionEvaluator,
    average_precision_11pt,
    average_precision_all_points,
    coco_ap,
    voc07_ap,
    voc_allpoint_ap,
)

VOC0712 = {"train_split": ["voc2007/trainval", "voc2012/trainval"],
           "test_split": "voc2007/test"}


def keys(ds) -> list[str]:
    """``VOC<year>/<id>`` (VOC) or ``<folder>/<file>`` (COCO) of every item of a split."""
    if isinstance(ds, Augmented):  # the training split of a real data set
        return keys(ds.dataset)
    if isinstance(ds, Subset):
        inner = keys(ds.dataset)
        return [inner[i] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [k for d in ds.datasets for k in keys(d)]
    if isinstance(ds, VocDetection):
        return [f"{ds.root.name}/{i}" for i in ds.ids]
    assert isinstance(ds, CocoDetection)
    return [f"{r.image.parent.name}/{r.image.name}" for r in ds.items]


def listed(root: Path, year: str, split: str) -> list[str]:
    text = (root / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt").read_text()
    return [f"VOC{year}/{line.split()[0]}" for line in text.splitlines() if line.strip()]


def small_model(task):
    space = registry.SEARCH_SPACES.get("small_cnn")(strides=[2, 2, 2])
    arch = space.validate({"depth": [1, 1, 1], "width": [8, 8, 8], "kernel": [3, 3, 3],
                           "expand": [1, 1, 1]})
    return space, arch


# -- options ----------------------------------------------------------------------------------
def test_defaults_keep_the_official_train_and_val(tmp_path):
    """Without named splits a VOC task is as before: val held out of ``train``, test ``val``."""
    root = write_voc(tmp_path / "VOCdevkit", size=(24, 32))
    task = DetectionTask(dataset="voc", root=root, size=16, holdout_fraction=0.25)
    assert task.options.train_split is None and task.options.test_split is None
    assert task.options.named_splits() is None
    splits = task.splits()
    train07 = listed(root, "2007", "train")
    kept, held = holdout_indices(len(train07), 0.25, 0)
    assert keys(splits["train"]) == [train07[i] for i in kept]
    assert keys(splits["val"]) == [train07[i] for i in held]
    assert keys(splits["test"]) == listed(root, "2007", "val")


def test_split_names_parse_with_their_year():
    voc = DetectionTask(dataset="voc", root="/data", **VOC0712).options.named_splits()
    assert [str(n) for n in voc[0]] == ["voc2007/trainval", "voc2012/trainval"]
    assert str(voc[1]) == "voc2007/test"
    # a bare name takes `year`; the folder's spelling VOC2012/ is accepted; one name alone
    o = DetectionTask(dataset="voc", root="/data", year="2012", train_split="trainval",
                      test_split="VOC2007/test").options
    assert o.train_split == ["trainval"]
    assert [str(n) for n in o.named_splits()[0]] == ["voc2012/trainval"]
    assert str(o.named_splits()[1]) == "voc2007/test"
    # test_split alone: training stays on the official train split
    only_test = DetectionTask(dataset="voc", root="/d", test_split="voc2007/test").options
    assert [str(n) for n in only_test.named_splits()[0]] == ["voc2007/train"]
    coco = DetectionTask(dataset="coco", root="/data", train_split="train2017",
                         test_split="val2017").options.named_splits()
    assert [str(n) for n in coco[0]] == ["train2017"] and str(coco[1]) == "val2017"
    assert (coco[0][0].split, coco[0][0].year) == ("train", "2017")


@pytest.mark.parametrize("options, field, words", [
    ({"dataset": "voc", "train_split": ["voc2007/trainvalx"]}, "train_split",
     ["'voc2007/trainvalx' is not a VOC split", "train, val, trainval, test",
      "voc2007/trainval"]),
    ({"dataset": "voc", "test_split": "2007/test"}, "test_split",
     ["'2007/test' is not a VOC split", "voc<year>/<split>"]),
    ({"dataset": "coco", "train_split": "voc2007/trainval"}, "train_split",
     ["not a COCO split", "train2017, val2017"]),
    ({"dataset": "synthetic", "train_split": "train"}, "train_split",
     ["dataset coco or voc"]),
    ({"dataset": "voc", "train_split": []}, "train_split", ["at least one split"]),
    ({"dataset": "voc", "train_split": ["trainval", "voc2007/trainval"],
      "test_split": "voc2007/test"}, "train_split", ["voc2007/trainval is named twice"]),
    # a test split inside the training data
    ({"dataset": "voc", "train_split": ["voc2007/trainval", "voc2012/trainval"],
      "test_split": "voc2012/val"}, "test_split",
     ["test_split voc2012/val shares images with the train_split voc2012/trainval"]),
    ({"dataset": "voc", "test_split": "voc2007/trainval"}, "test_split",
     ["default train split voc2007/train"]),
    ({"dataset": "voc", "train_split": ["voc2007/trainval"]}, "(top level)",
     ["the default test split voc2007/val", "set test_split"]),
    ({"dataset": "coco", "train_split": "train2017", "test_split": "train2017"},
     "test_split", ["shares images"]),
])
def test_bad_split_options_name_the_field_and_the_allowed_values(options, field, words):
    options = {"root": "/data", **options} if options["dataset"] != "synthetic" else options
    with pytest.raises(ValueError) as err:
        DetectionTask(**options)
    message = str(err.value)
    assert f"{field}: " in message, message
    for w in words:
        assert w in message, (w, message)


def test_disjoint_voc_splits_are_accepted():
    for train, test in [(["voc2007/train"], "voc2007/val"), (["voc2012/trainval"], "voc2007/val"),
                        (["voc2007/trainval"], "voc2007/test")]:
        DetectionTask(dataset="voc", root="/d", train_split=train, test_split=test)


# -- VOC07+12 end to end ----------------------------------------------------------------------
def test_voc0712_trains_on_both_trainvals_and_scores_voc2007_test(tmp_path):
    root = write_voc(tmp_path / "VOCdevkit", size=(48, 64), seed=1)
    task = DetectionTask(dataset="voc", root=root, size=32, holdout_fraction=0.25, seed=3,
                         **VOC0712)
    splits = task.splits()
    union = listed(root, "2007", "trainval") + listed(root, "2012", "trainval")
    assert len(union) == 16 and len(set(union)) == 16
    kept, held = holdout_indices(len(union), 0.25, 3)
    train, val = keys(splits["train"]), keys(splits["val"])
    assert train == [union[i] for i in kept] and val == [union[i] for i in held]
    assert set(train) | set(val) == set(union) and not set(train) & set(val)
    assert any(k.startswith("VOC2007/") for k in train)
    assert any(k.startswith("VOC2012/") for k in train)
    assert keys(splits["test"]) == listed(root, "2007", "test")
    assert not set(keys(splits["test"])) & set(union)

    # the task's evaluate on the test split reports both VOC numbers
    assert "voc_allpoint_ap50" in task.metric_names()
    space, arch = small_model(task)
    torch.manual_seed(0)
    model = task.build_model(space, arch)
    metrics = task.evaluate(model, make_loader(task, splits["test"], 4))
    for name in ("ap50", "voc07_ap50", "voc_allpoint_ap50", "loss"):
        assert name in metrics and math.isfinite(metrics[name]), (name, metrics)
    assert set(metrics) <= set(task.metric_names())

    # a run trains on the trainval images and scores VOC2007 test
    config = TrainConfig(epochs=1, batch_size=4, lr=0.01, latency=False, num_threads=1,
                         eval_split="test")
    result = TrainEvaluator(task, space, config, seed=0).evaluate(arch)
    assert result.ok, result.error
    assert math.isfinite(result.metrics["voc_allpoint_ap50"])
    assert math.isfinite(result.metrics["voc07_ap50"])


def test_voc_root_may_be_one_year_folder_beside_the_others(tmp_path):
    root = write_voc(tmp_path / "VOCdevkit", size=(24, 32))
    task = DetectionTask(dataset="voc", root=root / "VOC2007", size=16, **VOC0712)
    assert len(task.splits()["train"]) + len(task.splits()["val"]) == 16


def test_a_missing_year_folder_or_split_list_fails_when_the_splits_are_built(tmp_path):
    root = write_voc(tmp_path / "VOCdevkit", size=(24, 32))
    shutil.rmtree(root / "VOC2012")
    task = DetectionTask(dataset="voc", root=root, size=16, **VOC0712)
    with pytest.raises(DatasetError, match=r"missing year folder \(the root holds VOC2007\): "
                                           r".*VOCdevkit[/\\]VOC2012(.|\n)*expected layout"):
        task.splits()
    # VocDetection on a devkit without that year names the folder, not Annotations/
    with pytest.raises(DatasetError, match=r"missing year folder.*VOC2012"):
        VocDetection(root, "trainval", year=2012)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    task = DetectionTask(dataset="voc", root=root, size=16, train_split="voc2007/trainval",
                         test_split="voc2007/test")
    with pytest.raises(DatasetError, match=r"missing split list: .*test\.txt"):
        task.splits()
    with pytest.raises(DatasetError, match=r"root does not exist: .*nowhere"):
        DetectionTask(dataset="voc", root=tmp_path / "nowhere", **VOC0712).splits()


# -- COCO named splits ------------------------------------------------------------------------
def _extra_coco_split(root: Path, name: str, categories: list[dict] | None = None) -> None:
    """``name`` (e.g. extra2017): a copy of val2017's images and annotations."""
    shutil.copytree(root / "val2017", root / name)
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    if categories is not None:
        data["categories"] = categories
    (root / "annotations" / f"instances_{name}.json").write_text(json.dumps(data))


def test_coco_train2017_and_val2017_and_concatenated_splits(tmp_path):
    root = write_coco(tmp_path / "coco", n=(6, 2), size=(48, 64))
    task = DetectionTask(dataset="coco", root=root, size=32, holdout_fraction=0.2,
                         train_split="train2017", test_split="val2017")
    splits = task.splits()
    train_files = [f"train2017/{p.name}" for p in sorted((root / "train2017").iterdir())]
    assert sorted(keys(splits["train"]) + keys(splits["val"])) == train_files
    assert keys(splits["test"]) == [f"val2017/{p.name}"
                                    for p in sorted((root / "val2017").iterdir())]
    assert task.class_names == ["person", "car", "dog"]

    _extra_coco_split(root, "extra2017")
    task = DetectionTask(dataset="coco", root=root, size=32, holdout_fraction=0.2,
                         train_split=["train2017", "extra2017"], test_split="val2017")
    both = keys(task.splits()["train"]) + keys(task.splits()["val"])
    assert len(both) == 8 and sum(k.startswith("extra2017/") for k in both) == 2
    assert task.class_names == ["person", "car", "dog"]  # through the concatenation


def test_coco_splits_with_other_categories_are_refused(tmp_path):
    root = write_coco(tmp_path / "coco", n=(4, 1), size=(48, 64))
    _extra_coco_split(root, "odd2017", [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                                        {"id": 18, "name": "dog"}, {"id": 90, "name": "bus"}])
    task = DetectionTask(dataset="coco", root=root, size=32, train_split="train2017",
                         test_split="odd2017")
    with pytest.raises(DatasetError, match=r"train2017 and odd2017 have different categories"):
        task.splits()
    task = DetectionTask(dataset="coco", root=root, size=32, train_split="train2017",
                         test_split="val2014")
    with pytest.raises(DatasetError, match=r"missing annotation file: .*instances_val2014\.json"):
        task.splits()


# -- COCO sizes on the original image's pixels ------------------------------------------------
S, M, L = [10, 10, 20, 20], [60, 60, 40, 40], [110, 110, 120, 120]  # COCO [x, y, w, h]
FP = [10, 150, 50, 190]  # xyxy, 40 x 40: a medium false positive on nothing


def _size_fixture(root: Path) -> Path:
    """One 240 x 240 image with a small (20²), a medium (40²) and a large (120²) box."""
    (root / "train2017").mkdir(parents=True)
    Image.fromarray(np.full((240, 240, 3), 90, np.uint8)).save(root / "train2017" / "a.jpg")
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": b,
             "area": float(b[2] * b[3]), "iscrowd": 0} for k, b in enumerate([S, M, L])]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 240, "height": 240}],
         "categories": [{"id": 1, "name": "thing"}], "annotations": anns}))
    return root


@pytest.mark.parametrize("size", [None, 120, (120, 80), (90, 200)])
def test_size_classes_use_the_original_pixels(tmp_path, size):
    """The three boxes found (score 0.5) and a 40 x 40 false positive (score 0.9): in original
    pixels AP_small = 1 (the FP is not small), AP_medium = 0.5 (the FP ranks first), AP_large
    = 1, whatever the size the image is resized to. (In resized pixels at (120, 80) the medium
    box and the FP would be small and the large box medium.)"""
    ds = load_dataset("coco", _size_fixture(tmp_path), "train", size=size)
    _, t = ds[0]
    sx, sy = t["scale"].tolist()
    assert t["orig_area"].tolist() == [400.0, 1600.0, 14400.0]
    assert t["area"].tolist() == pytest.approx([a * sx * sy for a in (400, 1600, 14400)])
    fp = torch.tensor([FP], dtype=torch.float32) * torch.tensor([sx, sy, sx, sy])
    pred = {"boxes": torch.cat([fp, t["boxes"]]), "scores": torch.tensor([0.9, 0.5, 0.5, 0.5]),
            "labels": torch.zeros(4, dtype=torch.int64)}
    m = coco_ap([pred], [t], 1)
    assert m["ap_small"] == pytest.approx(1.0)
    assert m["ap_medium"] == pytest.approx(0.5)
    assert m["ap_large"] == pytest.approx(1.0)
    assert m["ar_small"] == m["ar_medium"] == m["ar_large"] == pytest.approx(1.0)
    ev = DetectionEvaluator(1)
    ev.add([pred], [t])
    got = ev.compute()
    assert (got["ap_small"], got["ap_medium"], got["ap_large"]) == pytest.approx((1, 0.5, 1))


def test_a_40px_box_resized_by_half_is_still_medium():
    """Hand-computed: 40 x 40 original pixels, resized by 0.5 to 20 x 20 (400 px², below 32²)."""
    box = [[0.0, 0.0, 20.0, 20.0]]
    pred = {"boxes": box, "scores": [0.9], "labels": [0]}
    resized = {"boxes": box, "labels": [0], "area": [400.0], "scale": [0.5, 0.5]}
    m = coco_ap([pred], [resized], 1)
    assert m["ap_medium"] == pytest.approx(1.0) and math.isnan(m["ap_small"])
    # without the scale the same numbers are a small box
    m = coco_ap([pred], [{"boxes": box, "labels": [0], "area": [400.0]}], 1)
    assert m["ap_small"] == pytest.approx(1.0) and math.isnan(m["ap_medium"])
    # orig_area wins over area / scale; an unmatched 20 x 20 detection at scale 0.5 is medium
    exact = {**resized, "orig_area": [32.0 * 32.0]}  # on the small/medium bound: both
    m = coco_ap([pred], [exact], 1)
    assert m["ap_small"] == pytest.approx(1.0) and m["ap_medium"] == pytest.approx(1.0)
    lone = {"boxes": [[0, 0, 20, 20], [50, 50, 70, 70]], "scores": [0.9, 0.95], "labels": [0, 0]}
    m = coco_ap([lone], [resized], 1)
    assert m["ap_medium"] == pytest.approx(0.5)  # the FP counts in the medium range
    with pytest.raises(ValueError, match="'scale' must be 2 positive numbers"):
        coco_ap([pred], [{**resized, "scale": [0.5]}], 1)
    with pytest.raises(ValueError, match="'orig_area' has 2 entries for 1 boxes"):
        coco_ap([pred], [{**resized, "orig_area": [1.0, 2.0]}], 1)


def _jittered_predictions(targets, seed):
    """Per image: every box jittered by up to 10% of its side, and a random box; at the
    targets' own pixels (the caller scales them)."""
    rng = np.random.default_rng(seed)
    preds = []
    for t in targets:
        boxes = t["boxes"].double().numpy()
        wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        jittered = boxes + rng.uniform(-0.1, 0.1, boxes.shape) * wh
        xy = rng.uniform(0, 200, 2)
        extra = np.concatenate([xy, xy + rng.uniform(20, 90, 2)])[None]
        all_boxes = np.concatenate([jittered, extra])
        preds.append({"boxes": all_boxes, "scores": rng.uniform(0.05, 1, len(all_boxes)),
                      "labels": np.concatenate([t["labels"].numpy(),
                                                rng.integers(0, 3, 1)])})
    return preds


def test_write_coco_resized_scores_as_at_original_size(tmp_path):
    """A write_coco folder read at its own size and at a quarter of it: the same detections
    (scaled with the image) give the same COCO metrics, size classes included, although at the
    quarter size every box is below 32² resized pixels."""
    root = write_coco(tmp_path / "coco", n=(6, 2), size=(240, 320), seed=4)
    full = load_dataset("coco", root, "train")
    small = load_dataset("coco", root, "train", size=(60, 80))
    t_full = [full[i][1] for i in range(len(full))]
    t_small = [small[i][1] for i in range(len(small))]
    assert all(t["scale"].tolist() == [0.25, 0.25] for t in t_small)
    assert all(t["scale"].tolist() == [1.0, 1.0] for t in t_full)
    assert max(float(t["area"].max()) for t in t_small) < 32**2
    assert any(float(t["orig_area"].max()) > 32**2 for t in t_small)
    preds = _jittered_predictions(t_full, 0)
    scaled = [{**p, "boxes": p["boxes"] * 0.25} for p in preds]
    want = coco_ap(preds, t_full, 3)
    got = coco_ap(scaled, t_small, 3)
    assert math.isfinite(want["ap_medium"]) and math.isfinite(want["ap_small"])
    for key in ("ap", "ap50", "ap_small", "ap_medium", "ap_large", "ar_small", "ar_medium",
                "ar_large", "ar100"):
        assert got[key] == pytest.approx(want[key], nan_ok=True), key


# -- VOC all-point AP -------------------------------------------------------------------------
def _devkit_allpoint(rec, prec):
    """A literal reading of the VOC2010+ devkit's VOCap (loops, 1-based indices made 0-based)."""
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
               if mrec[i] != mrec[i - 1])


def test_average_precision_all_points_by_hand():
    assert average_precision_all_points([], []) == 0.0
    # precision 1 up to recall 0.3: the area is 0.3; the 11-point mean is 4 / 11
    assert average_precision_all_points([0.3], [1.0]) == pytest.approx(0.3)
    assert average_precision_11pt([0.3], [1.0]) == pytest.approx(4 / 11)
    # TP, FP, TP of 2 boxes: recall .5 .5 1, precision 1 .5 2/3; the envelope is 1 up to
    # recall .5 and 2/3 after: .5 * 1 + .5 * 2/3 = 5/6; 11-point: (6 * 1 + 5 * 2/3) / 11
    rec, prec = [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]
    assert average_precision_all_points(rec, prec) == pytest.approx(5 / 6)
    assert average_precision_11pt(rec, prec) == pytest.approx(28 / 33)
    with pytest.raises(ValueError):
        average_precision_all_points([0.1], [0.1, 0.2])
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 30))
        tp = rng.random(n) < 0.6
        npos = int(tp.sum()) + int(rng.integers(0, 4)) or 1
        rec = np.cumsum(tp) / npos
        prec = np.cumsum(tp) / np.arange(1, n + 1)
        assert average_precision_all_points(rec, prec) == pytest.approx(
            _devkit_allpoint(rec.tolist(), prec.tolist()), abs=1e-12)


def test_voc_allpoint_ap50_beside_the_11_point_value():
    A, B, FAR = [0, 0, 10, 10], [20, 20, 30, 30], [200, 200, 210, 210]
    pred = {"boxes": [A, FAR, B], "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}
    target = {"boxes": [A, B], "labels": [0, 0]}
    assert voc_allpoint_ap([pred], [target], 1)["map"] == pytest.approx(5 / 6)
    assert voc07_ap([pred], [target], 1)["map"] == pytest.approx(28 / 33)
    ev = DetectionEvaluator(1)
    ev.add([pred], [target])
    m = ev.compute()
    assert m["voc_allpoint_ap50"] == pytest.approx(5 / 6)
    assert m["voc07_ap50"] == pytest.approx(28 / 33)
    # perfect detections: both 1; no ground truth: both undefined
    ev.reset()
    ev.add([{"boxes": [A], "scores": [0.9], "labels": [0]}], [{"boxes": [A], "labels": [0]}])
    assert ev.compute()["voc_allpoint_ap50"] == pytest.approx(1.0)
    ev.reset()
    ev.add([{"boxes": [A], "scores": [0.9], "labels": [0]}], [{"boxes": [], "labels": []}])
    assert math.isnan(ev.compute()["voc_allpoint_ap50"])
    # a difficult box: the detection on it is neither TP nor FP, the box is not counted
    target = {"boxes": [A, B], "labels": [0, 0], "difficult": [False, True]}
    pred = {"boxes": [B, FAR, A], "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}
    # ranks: ignored, FP, TP: recall 0 0 1, precision 0 0 .5 -> all-point 0.5
    assert voc_allpoint_ap([pred], [target], 1)["map"] == pytest.approx(0.5)
    assert voc07_ap([pred], [target], 1)["map"] == pytest.approx(0.5)
