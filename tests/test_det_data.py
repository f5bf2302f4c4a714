"""Detection data: the synthetic scenes and the COCO / VOC loaders (tiny fixtures in the real
on-disk formats, written with PIL inside the tests)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nastk.tasks.detection.datasets import (
    CLASS_NAMES,
    DETECTION_DATASETS,
    VOC_CLASSES,
    CocoDetection,
    DatasetError,
    DatasetWarning,
    VocDetection,
    collate_detection,
    load_dataset,
)
from nastk.tasks.detection.synthetic import SHAPE_CLASSES, make_scenes, make_scenes_with_instances

W, H = 20, 16  # fixture images are 20 pixels wide, 16 high
KEYS = {"boxes", "labels", "iscrowd", "difficult", "area", "orig_area", "scale", "image_id"}


# -- synthetic scenes -------------------------------------------------------------------------
def test_scenes_shapes_dtypes_and_boxes():
    x, targets = make_scenes(60, 32, 6, seed=1)
    assert x.shape == (60, 3, 32, 32) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert len(targets) == 60 and len(SHAPE_CLASSES) >= 6
    for t in targets:
        assert set(t) == {"boxes", "labels", "area"}
        k = len(t["labels"])
        assert t["boxes"].shape == (k, 4) and t["boxes"].dtype == np.float32
        assert t["labels"].dtype == np.int64 and t["area"].dtype == np.float32
        b = t["boxes"]
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 32).all()
        assert (b[:, 2] - b[:, 0] >= 2).all() and (b[:, 3] - b[:, 1] >= 2).all()
        assert ((t["labels"] >= 0) & (t["labels"] < 6)).all()
        np.testing.assert_allclose(t["area"], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))


def test_scenes_are_deterministic():
    a = make_scenes(10, 32, 8, seed=5)
    b = make_scenes(10, 32, 8, seed=5)
    c = make_scenes(10, 32, 8, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    for ta, tb in zip(a[1], b[1], strict=True):
        for key in ta:
            np.testing.assert_array_equal(ta[key], tb[key])
    assert not np.array_equal(a[0], c[0])
    # the instance variant draws the very same scenes
    xi, ti, _ = make_scenes_with_instances(10, 32, 8, seed=5)
    np.testing.assert_array_equal(xi, a[0])
    np.testing.assert_array_equal(ti[3]["boxes"], a[1][3]["boxes"])


def test_object_counts():
    _, targets = make_scenes(200, 32, 4, seed=0, max_objects=3, min_objects=0)
    counts = np.array([len(t["labels"]) for t in targets])
    assert (counts == 0).any() and (counts == 3).any() and counts.max() <= 3
    _, targets = make_scenes(100, 32, 4, seed=0, max_objects=3, min_objects=1)
    assert all(len(t["labels"]) >= 1 for t in targets)  # the first object always fits


@pytest.mark.parametrize("min_visible", [0.4, 0.8])
def test_visible_fraction_rule(min_visible):
    size = 48
    _, targets, inst = make_scenes_with_instances(150, size, 8, seed=3, max_objects=6,
                                                  min_objects=2, min_visible=min_visible)
    assert inst.shape == (150, size, size)
    occluded = 0
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for t, m in zip(targets, inst, strict=True):
        k = len(t["labels"])
        visible = np.bincount(m.ravel(), minlength=k + 1)[1:]
        assert m.max() <= k
        np.testing.assert_array_equal(visible, t["visible_area"])
        assert (t["visible_area"] >= min_visible * t["drawn_area"]).all()
        assert (t["drawn_area"] <= t["area"]).all()
        occluded += int((t["visible_area"] < t["drawn_area"]).sum())
        for i, (x1, y1, x2, y2) in enumerate(t["boxes"]):
            on = m == i + 1
            inside = (xx > x1) & (xx < x2) & (yy > y1) & (yy < y2)
            assert not (on & ~inside).any()  # visible pixels lie inside the box
        if k:  # the object painted last is whole: its box is the tight box of its pixels
            rows, cols = np.flatnonzero((m == k).any(1)), np.flatnonzero((m == k).any(0))
            np.testing.assert_array_equal(t["boxes"][-1],
                                          [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            assert t["visible_area"][-1] == t["drawn_area"][-1]
    assert occluded > 0, "no object was ever partly covered"


def test_class_balance_and_colour_does_not_give_the_class_away():
    x, targets, inst = make_scenes_with_instances(300, 32, 8, seed=4, max_objects=4)
    labels = np.concatenate([t["labels"] for t in targets])
    counts = np.bincount(labels, minlength=8)
    assert counts.min() > 0.75 * counts.mean() and counts.max() < 1.25 * counts.mean(), counts
    # mean colour of each class's visible pixels: all alike (colour is random per object)
    means = []
    for c in range(8):
        px = [x[i][:, inst[i] == j + 1] for i, t in enumerate(targets)
              for j in np.flatnonzero(t["labels"] == c)]
        means.append(np.concatenate(px, axis=1).mean(axis=1))
    means = np.array(means)
    assert np.abs(means - means.mean(0)).max() < 0.1, means


def test_invalid_scene_arguments_raise():
    for bad in (0, len(SHAPE_CLASSES) + 1):
        with pytest.raises(ValueError, match=f"num_classes must be in 1..{len(SHAPE_CLASSES)}"):
            make_scenes(2, 32, bad, seed=0)
    with pytest.raises(ValueError, match="size"):
        make_scenes(2, 8, 3, seed=0)
    with pytest.raises(ValueError, match="min_objects"):
        make_scenes(2, 32, 3, seed=0, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="min_visible"):
        make_scenes(2, 32, 3, seed=0, min_visible=1.5)


# -- fixtures in the real formats -------------------------------------------------------------
def _image(path: Path, box: tuple[int, int, int, int] | None = None, w: int = W,
           h: int = H) -> None:
    """A dark image with the pixels ``[x1, x2) x [y1, y2)`` of ``box`` white."""
    a = np.full((h, w, 3), 20, dtype=np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        a[y1:y2, x1:x2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, quality=95) if path.suffix == ".jpg" else \
        Image.fromarray(a).save(path)


def _coco(root: Path, annotations: list[dict[str, Any]] | None = None,
          images_subdir: bool = False) -> Path:
    """images 1 (a white box at xyxy [4, 3, 16, 12]), 2 (a crowd box), 5 (no annotation);
    categories 7 "dog" and 3 "cat" (listed in that order)."""
    folder = root / ("images" if images_subdir else "") / "train2017"
    _image(folder / "a.png", (4, 3, 16, 12))
    _image(folder / "b.png")
    _image(folder / "c.png")
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [4, 3, 12, 9], "area": 100.0,
             "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 6], "area": 25.0,
             "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [8, 2, 10, 10], "area": 80.0,
             "iscrowd": 1},
        ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 5, "file_name": "c.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": annotations,
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / "instances_train2017.json"
    path.write_text(json.dumps(data))
    return path


def _ann(aid: int, bbox: list[float], image_id: int = 1, cat: int = 3) -> dict[str, Any]:
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": 1.0,
            "iscrowd": 0}


def _xml(path: Path, objects: list[tuple[str, int, tuple[int, int, int, int]]],
         w: int = W, h: int = H) -> None:
    objs = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, difficult, b in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>VOC2007</folder><filename>{path.stem}.jpg</filename>"
                    f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
                    f"{objs}</annotation>")


def _voc(root: Path) -> Path:
    """VOCdevkit/VOC2007 with 000001 (dog; difficult person), 000002 (car), 000003 (empty)."""
    voc = root / "VOCdevkit" / "VOC2007"
    # dog: 1-based inclusive xmin=5..xmax=12, ymin=4..ymax=9 -> 0-based pixels [4, 12) x [3, 9)
    _xml(voc / "Annotations" / "000001.xml", [("dog", 0, (5, 4, 12, 9)),
                                                ("person", 1, (1, 1, 3, 5))])
    _xml(voc / "Annotations" / "000002.xml", [("car", 0, (2, 2, 20, 16))])
    _xml(voc / "Annotations" / "000003.xml", [])
    _image(voc / "JPEGImages" / "000001.jpg", (4, 3, 12, 9))
    _image(voc / "JPEGImages" / "000002.jpg")
    _image(voc / "JPEGImages" / "000003.jpg")
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n000003\n")
    return voc


def _check_format(image: torch.Tensor, target: dict[str, torch.Tensor]) -> None:
    assert image.dtype == torch.float32 and image.shape[0] == 3
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert set(target) == KEYS
    k = target["labels"].shape[0]
    assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64
    assert target["iscrowd"].shape == (k,) and target["iscrowd"].dtype == torch.bool
    assert target["difficult"].shape == (k,) and target["difficult"].dtype == torch.bool
    assert target["area"].shape == (k,) and target["area"].dtype == torch.float32
    assert target["image_id"].shape == () and target["image_id"].dtype == torch.int64


def _assert_box_on_bright_pixels(image: torch.Tensor, box: torch.Tensor,
                                 bright: float = 0.8, dark: float = 0.3) -> None:
    """Pixel centres more than 1 px inside ``box`` are bright, those more than 1 px outside
    dark: the box still sits on the filled rectangle drawn into the image."""
    h, w = image.shape[1:]
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    x1, y1, x2, y2 = box.tolist()
    inside = (xx > x1 + 1) & (xx < x2 - 1) & (yy > y1 + 1) & (yy < y2 - 1)
    outside = (xx < x1 - 1) | (xx > x2 + 1) | (yy < y1 - 1) | (yy > y2 + 1)
    grey = image.mean(0)
    assert inside.any() and outside.any()
    assert float(grey[inside].min()) > bright and float(grey[outside].max()) < dark


# -- COCO -------------------------------------------------------------------------------------
def test_coco_labels_crowd_and_empty_images(tmp_path):
    _coco(tmp_path)
    ds = CocoDetection(tmp_path, "train")
    assert ds.class_names == ("cat", "dog") and ds.category_ids == (3, 7)
    assert ds.num_classes == 2 and len(ds) == 3 and ds.year == "2017"
    items = [ds[i] for i in range(3)]
    for image, target in items:
        _check_format(image, target)
        assert image.shape == (3, H, W)
    (_, t1), (_, t2), (_, t5) = items  # ascending image id: 1, 2, 5
    assert [int(t["image_id"]) for _, t in items] == [1, 2, 5]
    assert t1["labels"].tolist() == [1]  # category 7 -> label 1
    assert t1["boxes"].tolist() == [[4, 3, 16, 12]]  # [x, y, w, h] -> xyxy
    assert t1["area"].tolist() == [100.0]  # the annotation's area, not the box's
    assert t2["labels"].tolist() == [0, 1] and t2["iscrowd"].tolist() == [False, True]
    assert not t2["difficult"].any()
    assert t5["boxes"].shape == (0, 4) and t5["labels"].shape == (0,)  # kept, empty
    images, targets = collate_detection(items)
    assert images.shape == (3, 3, H, W) and len(targets) == 3


def test_coco_images_folder_and_load_dataset(tmp_path):
    _coco(tmp_path, images_subdir=True)
    ds = load_dataset("coco", tmp_path, "train", size=8)
    assert isinstance(ds, CocoDetection) and ds.image_dir == tmp_path / "images" / "train2017"
    image, _ = ds[0]
    assert image.shape == (3, 8, 8)
    assert set(DETECTION_DATASETS) == {"coco", "voc"} and CLASS_NAMES["voc"] == VOC_CLASSES
    with pytest.raises(ValueError, match="unknown detection data set"):
        load_dataset("kitti", tmp_path)


@pytest.mark.parametrize("size", [(24, 10), (9, 37), 40])
def test_coco_resize_keeps_boxes_on_the_object(tmp_path, size):
    _coco(tmp_path)
    ds = CocoDetection(tmp_path, size=size)
    image, target = ds[0]
    hh, ww = (size, size) if isinstance(size, int) else size
    assert image.shape == (3, hh, ww)
    sx, sy = ww / W, hh / H
    torch.testing.assert_close(target["boxes"][0],
                               torch.tensor([4 * sx, 3 * sy, 16 * sx, 12 * sy]))
    assert float(target["area"][0]) == pytest.approx(100.0 * sx * sy)
    _assert_box_on_bright_pixels(image, target["boxes"][0])


def test_coco_bad_boxes_clipped_or_dropped_with_one_warning(tmp_path):
    anns = [
        _ann(1, [4, 3, 12, 9]),
        _ann(2, [-0.5, 2, 5, 14.8]),  # overshoots by 0.5 px (left and bottom): clipped
        _ann(3, [5, 5, 0, 4]),  # zero width: dropped
        _ann(4, [3, 3, 4, -2]),  # negative height: dropped
        _ann(5, [10, 8, 15, 4]),  # 5 px outside on the right: dropped
    ]
    _coco(tmp_path, anns)
    with pytest.warns(DatasetWarning) as record:
        ds = CocoDetection(tmp_path)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "dropped 3 of 5 boxes" in msg and "instances_train2017.json" in msg
    assert "annotation id 3 of image a.png" in msg and "zero or negative" in msg
    _, target = ds[0]
    assert target["boxes"].tolist() == [[4, 3, 16, 12], [0, 2, 4.5, 16]]


def test_coco_good_file_warns_nothing(tmp_path):
    _coco(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CocoDetection(tmp_path)


def test_coco_box_entirely_outside_is_an_error(tmp_path):
    _coco(tmp_path, [_ann(1, [4, 3, 12, 9]), _ann(9, [30, 2, 5, 5])])
    with pytest.raises(DatasetError, match=r"annotation id 9 of image a\.png.*entirely outside"
                                           r"(.|\n)*instances_train2017\.json"):
        CocoDetection(tmp_path)


def test_coco_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match=r"root does not exist.*nowhere(.|\n)*expected layout"):
        CocoDetection(tmp_path / "nowhere")
    tmp_path.joinpath("x").mkdir()
    with pytest.raises(DatasetError, match=r"missing folder: .*annotations"):
        CocoDetection(tmp_path / "x")
    _coco(tmp_path)
    with pytest.raises(DatasetError, match=r"no annotation file instances_val<year>\.json"):
        CocoDetection(tmp_path, "val")
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"missing image folder.*val2017"):
        CocoDetection(tmp_path, "val")


def test_coco_missing_image_file(tmp_path):
    _coco(tmp_path)
    (tmp_path / "train2017" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"instances_train2017\.json lists image id 5, whose "
                                           r"file is missing: .*c\.png"):
        CocoDetection(tmp_path)


def test_coco_malformed_json(tmp_path):
    path = _coco(tmp_path)
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"malformed annotation file.*instances_train2017"):
        CocoDetection(tmp_path)
    path.write_text('{"images": [], "categories": []}')
    with pytest.raises(DatasetError, match=r"no 'annotations' list.*instances_train2017"):
        CocoDetection(tmp_path)
    _coco(tmp_path, [_ann(4, [1, 1, 2, 2], cat=99)])
    with pytest.raises(DatasetError, match=r"annotation id 4 names category id 99(.|\n)*"
                                           r"instances_train2017\.json"):
        CocoDetection(tmp_path)
    _coco(tmp_path, [_ann(4, [1, 1, 2], cat=3)])
    with pytest.raises(DatasetError, match=r"annotation id 4 has bbox"):
        CocoDetection(tmp_path)


def test_coco_several_annotation_files_need_a_year(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "annotations" / "instances_train2014.json").write_text(path.read_text())
    (tmp_path / "annotations" / "instances_trainval35k.json").write_text("{}")  # not a year
    with pytest.raises(DatasetError, match=r"instances_train2014\.json, instances_train2017"
                                           r"\.json\); pass year="):
        CocoDetection(tmp_path)
    assert len(CocoDetection(tmp_path, year=2017)) == 3


def test_coco_broken_and_mismatched_image_files(tmp_path):
    _coco(tmp_path)
    (tmp_path / "train2017" / "a.png").write_bytes(b"not a png")
    ds = CocoDetection(tmp_path)
    with pytest.raises(DatasetError, match=r"cannot read image .*a\.png"):
        ds[0]
    _image(tmp_path / "train2017" / "b.png", w=W + 2)
    with pytest.raises(DatasetError, match=r"b\.png is 22x16 but its annotation gives 20x16"):
        ds[1]


# -- VOC --------------------------------------------------------------------------------------
def test_voc_labels_difficult_and_coordinates(tmp_path):
    voc = _voc(tmp_path)
    for root in (tmp_path / "VOCdevkit", voc):  # the devkit folder or VOC2007 itself
        ds = VocDetection(root, "train")
        assert ds.root == voc and len(ds) == 3 and ds.class_names == VOC_CLASSES
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[14] == "person"
    items = [ds[i] for i in range(3)]
    for image, target in items:
        _check_format(image, target)
    (_, t1), (_, t2), (_, t3) = items
    assert [int(t["image_id"]) for _, t in items] == [1, 2, 3] and ds.ids[0] == "000001"
    assert t1["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert t1["difficult"].tolist() == [False, True] and not t1["iscrowd"].any()
    # 1-based inclusive (5, 4, 12, 9) -> continuous 0-based (4, 3, 12, 9)
    assert t1["boxes"].tolist() == [[4, 3, 12, 9], [0, 0, 3, 5]]
    assert t1["area"].tolist() == [48.0, 15.0]
    assert t2["boxes"].tolist() == [[1, 1, 20, 16]]  # xmax = width is inside the image
    assert t3["boxes"].shape == (0, 4) and t3["difficult"].dtype == torch.bool


def test_voc_resize_keeps_boxes_on_the_object(tmp_path):
    _voc(tmp_path)
    ds = load_dataset("voc", tmp_path / "VOCdevkit", "train", size=(40, 15))
    image, target = ds[0]
    assert image.shape == (3, 40, 15)
    torch.testing.assert_close(target["boxes"][0],
                               torch.tensor([4 * 0.75, 3 * 2.5, 12 * 0.75, 9 * 2.5]))
    assert float(target["area"][0]) == pytest.approx(48 * 0.75 * 2.5)
    # the area in original pixels and the resize factors (sx, sy), for COCO's size classes
    assert target["orig_area"].tolist() == [48.0, 15.0]
    assert target["scale"].tolist() == pytest.approx([0.75, 2.5])
    _assert_box_on_bright_pixels(image, target["boxes"][0])


def test_voc_degenerate_and_outside_boxes_dropped(tmp_path):
    voc = _voc(tmp_path)
    _xml(voc / "Annotations" / "000002.xml", [("car", 0, (8, 2, 7, 9)),  # xmax < xmin
                                                ("cat", 0, (0, 1, 21, 16)),  # 1 px over: clip
                                                ("bus", 0, (10, 2, 25, 9))])  # 5 px out
    with pytest.warns(DatasetWarning, match=r"dropped 2 of 5 boxes(.|\n)*object #0 of .*"
                                            r"000002\.xml"):
        ds = VocDetection(voc)
    _, target = ds[1]
    assert target["boxes"].tolist() == [[0, 0, 20, 16]]
    assert target["labels"].tolist() == [VOC_CLASSES.index("cat")]


def test_voc_box_entirely_outside_is_an_error(tmp_path):
    voc = _voc(tmp_path)
    _xml(voc / "Annotations" / "000003.xml", [("cat", 0, (30, 1, 40, 5))])
    with pytest.raises(DatasetError, match=r"object #0 of .*000003\.xml.*entirely outside"):
        VocDetection(voc)


def test_voc_malformed_and_unknown_class(tmp_path):
    voc = _voc(tmp_path)
    xml = voc / "Annotations" / "000002.xml"
    xml.write_text("<annotation><object><name>car</name>")
    with pytest.raises(DatasetError, match=r"malformed annotation file .*000002\.xml"):
        VocDetection(voc)
    _xml(xml, [("unicorn", 0, (1, 1, 4, 4))])
    with pytest.raises(DatasetError, match=r"unknown class name 'unicorn'(.|\n)*000002\.xml"):
        VocDetection(voc)
    xml.write_text("<annotation><object><name>car</name><bndbox><xmin>1</xmin><ymin>x</ymin>"
                   "</bndbox></object></annotation>")
    with pytest.raises(DatasetError, match=r"bndbox/ymin is 'x', not a number.*000002\.xml"):
        VocDetection(voc)


def test_voc_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="root does not exist"):
        VocDetection(tmp_path / "nowhere")
    voc = _voc(tmp_path)
    with pytest.raises(DatasetError, match=r"missing split list: .*val\.txt"):
        VocDetection(voc, "val")
    (voc / "JPEGImages" / "000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"id '000002' of .*train\.txt \(annotation .*"
                                           r"000002\.xml\) has no image: missing .*000002\.jpg"):
        VocDetection(voc)
    (voc / "Annotations" / "000001.xml").unlink()
    with pytest.raises(DatasetError, match=r"has no annotation file: missing .*000001\.xml"):
        VocDetection(voc)
    (voc / "ImageSets" / "Main" / "train.txt").unlink()
    (voc / "Annotations").rename(voc / "Annots")
    with pytest.raises(DatasetError, match=r"missing folder: .*Annotations(.|\n)*expected"):
        VocDetection(voc)
