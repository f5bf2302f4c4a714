"""Segmentation data: the synthetic scenes and the loaders of real data sets (tiny fixtures in
the real on-disk formats, written with PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nastk.tasks.segmentation.datasets import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CLASS_NAMES,
    VOC_CLASSES,
    CamVid,
    Cityscapes,
    DatasetError,
    PascalVOC,
    load_dataset,
    num_classes_of,
)
from nastk.tasks.segmentation.synthetic import SCENE_CLASSES, make_scenes, make_scenes_with_objects

H, W = 10, 12  # fixture images are 12 pixels wide, 10 high


# -- synthetic scenes -------------------------------------------------------------------------
def test_scenes_shapes_dtypes_ranges():
    x, y = make_scenes(20, size=24, num_classes=6, seed=1)
    assert x.shape == (20, 3, 24, 24) and x.dtype == np.float32
    assert y.shape == (20, 24, 24) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.min() >= 0 and y.max() < 6
    assert (y == 0).any() and (y > 0).any()
    assert x.std() > 0.05  # not a flat image
    assert SCENE_CLASSES[0] == "background" and len(SCENE_CLASSES) >= 9


def test_scenes_are_deterministic():
    a = make_scenes(8, seed=5)
    b = make_scenes(8, seed=5)
    c = make_scenes(8, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_every_class_appears():
    num_classes = len(SCENE_CLASSES)
    _, y = make_scenes(300, size=24, num_classes=num_classes, seed=0)
    counts = np.bincount(y.ravel(), minlength=num_classes)
    assert len(counts) == num_classes and (counts > 0).all(), counts


def test_occlusion_happens_and_mask_follows_it():
    _, y, objects = make_scenes_with_objects(100, size=32, num_classes=5, seed=2, max_objects=4)
    assert all(1 <= len(objs) <= 4 for objs in objects)
    occluded = [o for objs in objects for o in objs if o.visible_area < o.drawn_area]
    assert occluded, "no object was ever (partly) covered by a later one"
    assert all(o.drawn_area > 0 for objs in objects for o in objs)
    for mask, objs in zip(y, objects, strict=True):
        # each class's mask pixels are exactly the visible pixels of its objects
        for cls in range(1, 5):
            visible = sum(o.visible_area for o in objs if o.class_id == cls)
            assert int((mask == cls).sum()) == visible
        # the object painted last is never covered
        assert objs[-1].visible_area == objs[-1].drawn_area


def test_invalid_scene_arguments_raise():
    for bad in (1, len(SCENE_CLASSES) + 1):
        with pytest.raises(ValueError, match=f"num_classes must be in 2..{len(SCENE_CLASSES)}"):
            make_scenes(2, num_classes=bad)
    with pytest.raises(ValueError, match="max_objects"):
        make_scenes(2, max_objects=0)
    with pytest.raises(ValueError, match="size"):
        make_scenes(2, size=4)


# -- fixtures in the real on-disk formats -----------------------------------------------------
def _rgb(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), mode="RGB")


def _label(values: list[int]) -> np.ndarray:
    """An H x W uint8 label whose rows cycle through ``values``."""
    return np.array([values[i % len(values)] for i in range(H)], dtype=np.uint8)[:, None] \
        .repeat(W, axis=1)


CAMVID_RAW = [0, 3, 10, 11, 5]
CITY_RAW = [0, 7, 26, 33, 255, 5, 24]
VOC_RAW = [0, 15, 20, 255, 1]


@pytest.fixture
def camvid_root(tmp_path: Path) -> Path:
    root = tmp_path / "CamVid"
    for split, names in (("train", ["0001TP_006690", "0001TP_006720"]), ("val", ["Seq05VD_f0"]),
                         ("test", ["0001TP_008550"])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for k, name in enumerate(names):
            _rgb(k).save(root / split / f"{name}.png")
            label = Image.fromarray(_label(CAMVID_RAW), mode="L")
            label.save(root / f"{split}annot" / f"{name}.png")
    return root


@pytest.fixture
def city_root(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    for split, names in (("train", [("aachen", "aachen_000000_000019"),
                                    ("bremen", "bremen_000001_000019")]),
                         ("val", [("frankfurt", "frankfurt_000000_000294")])):
        for city, name in names:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            _rgb(1).save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png")
            gt = root / "gtFine" / split / city
            Image.fromarray(_label(CITY_RAW), mode="L").save(gt / f"{name}_gtFine_labelIds.png")
            # the other gtFine files next to it must not confuse the loader
            Image.fromarray(_label([0]), mode="L").save(gt / f"{name}_gtFine_instanceIds.png")
    return root


def _voc_palette() -> list[int]:
    pal = np.random.default_rng(0).integers(0, 256, (256, 3)).astype(int)
    pal[0] = 0
    pal[255] = (224, 224, 192)
    return pal.ravel().tolist()


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    devkit = tmp_path / "VOCdevkit"
    root = devkit / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    ids = ["2007_000032", "2007_000039", "2007_000063"]
    for k, i in enumerate(ids):
        _rgb(k).save(root / "JPEGImages" / f"{i}.jpg", quality=90)
        label = Image.fromarray(_label(VOC_RAW), mode="L").convert("P")
        label.putpalette(_voc_palette())
        label.save(root / "SegmentationClass" / f"{i}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[2] + "\n")
    return root


def _expected(raw: list[int], table: dict[int, int]) -> torch.Tensor:
    return torch.from_numpy(_label(raw).astype(np.int64)).apply_(lambda v: table[v])


def _check_item(ds, index: int, expected_mask: torch.Tensor) -> None:
    x, y = ds[index]
    assert x.shape == (3, H, W) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert y.shape == (H, W) and y.dtype == torch.int64
    assert torch.equal(y, expected_mask)


def _check_resized(ds, valid: set[int]) -> None:
    x, y = ds[0]
    assert x.shape == (3, *ds.size) and y.shape == ds.size
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert set(y.unique().tolist()) <= valid


# -- CamVid -----------------------------------------------------------------------------------
def test_camvid_reads_and_maps(camvid_root: Path):
    ds = CamVid(camvid_root, split="train")
    assert len(ds) == 2 and ds.num_classes == 11 == len(CAMVID_CLASSES)
    _check_item(ds, 1, _expected(CAMVID_RAW, {0: 0, 3: 3, 10: 10, 11: 255, 5: 5}))
    assert len(CamVid(camvid_root, split="val")) == 1
    small = CamVid(camvid_root, split="test", size=(5, 7))
    assert small.size == (5, 7)
    _check_resized(small, {0, 3, 10, 255, 5})
    assert CamVid(camvid_root, size=16)[0][0].shape == (3, 16, 16)


def test_camvid_rejects_broken_folders(camvid_root: Path, tmp_path: Path):
    with pytest.raises(DatasetError) as err:
        CamVid(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "expected layout" in str(err.value)
    assert "trainannot/" in str(err.value)

    (camvid_root / "valannot" / "Seq05VD_f0.png").unlink()
    with pytest.raises(DatasetError, match="has no label file") as err:
        CamVid(camvid_root, split="val")
    assert str(camvid_root / "valannot" / "Seq05VD_f0.png") in str(err.value)

    for p in (camvid_root / "testannot").iterdir():
        p.unlink()
    (camvid_root / "testannot").rmdir()
    with pytest.raises(DatasetError, match="missing folder") as err:
        CamVid(camvid_root, split="test")
    assert str(camvid_root / "testannot") in str(err.value)

    with pytest.raises(ValueError, match="split must be one of"):
        CamVid(camvid_root, split="training")


def test_camvid_out_of_range_label_raises_on_read(camvid_root: Path):
    bad = camvid_root / "trainannot" / "0001TP_006720.png"
    Image.fromarray(_label([1, 40]), mode="L").save(bad)
    ds = CamVid(camvid_root)  # structure is fine: the value is found when the item is read
    ds[0]
    with pytest.raises(DatasetError) as err:
        ds[1]
    assert str(bad) in str(err.value) and "value 40" in str(err.value)
    assert "0..11, 255" in str(err.value)


# -- Cityscapes -------------------------------------------------------------------------------
CITY_TABLE = {0: 255, 7: 0, 26: 13, 33: 18, 255: 255, 5: 255, 24: 11}


def test_cityscapes_reads_and_maps(city_root: Path):
    ds = Cityscapes(city_root, split="train")
    assert len(ds) == 2 and ds.num_classes == 19 == len(CITYSCAPES_CLASSES)
    assert [p.parent.name for p, _ in ds.items] == ["aachen", "bremen"]
    _check_item(ds, 0, _expected(CITY_RAW, CITY_TABLE))
    _check_resized(Cityscapes(city_root, split="val", size=(20, 24)), {255, 0, 13, 18, 11})


def test_cityscapes_rejects_broken_folders(city_root: Path):
    with pytest.raises(DatasetError) as err:
        Cityscapes(city_root, split="test")
    assert str(city_root / "leftImg8bit" / "test") in str(err.value)
    assert "_gtFine_labelIds.png" in str(err.value)  # the layout is shown

    label = city_root / "gtFine/train/bremen/bremen_000001_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DatasetError, match=r"bremen_000001_000019_leftImg8bit\.png has no label"):
        Cityscapes(city_root)

    val_label = city_root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    Image.fromarray(_label([7, 34]), mode="L").save(val_label)
    with pytest.raises(DatasetError) as err:
        Cityscapes(city_root, split="val")[0]
    assert str(val_label) in str(err.value) and "value 34" in str(err.value)


# -- PASCAL VOC -------------------------------------------------------------------------------
def test_voc_reads_palette_labels(voc_root: Path):
    ds = PascalVOC(voc_root, split="train")
    assert len(ds) == 2 and ds.num_classes == 21 == len(VOC_CLASSES)
    _check_item(ds, 0, _expected(VOC_RAW, {v: v for v in VOC_RAW}))
    # a VOCdevkit folder works as the root too
    devkit = PascalVOC(voc_root.parent, split="val", size=8)
    assert devkit.root == voc_root and len(devkit) == 1
    _check_resized(devkit, set(VOC_RAW))


def test_voc_rejects_rgb_masks(voc_root: Path):
    label = voc_root / "SegmentationClass" / "2007_000039.png"
    with Image.open(label) as img:
        img.convert("RGB").save(label)  # a colour-rendered mask
    ds = PascalVOC(voc_root)
    with pytest.raises(DatasetError) as err:
        ds[1]
    msg = str(err.value)
    assert str(label) in msg and "'RGB'" in msg and "palette" in msg


def test_voc_rejects_broken_folders(voc_root: Path):
    listing = voc_root / "ImageSets/Segmentation/train.txt"
    listing.write_text("2007_000032\n2099_999999\n")
    with pytest.raises(DatasetError) as err:
        PascalVOC(voc_root)
    msg = str(err.value)
    assert "2099_999999" in msg and str(voc_root / "JPEGImages" / "2099_999999.jpg") in msg

    with pytest.raises(DatasetError, match="missing split list") as err:
        PascalVOC(voc_root, split="trainval")
    assert str(voc_root / "ImageSets/Segmentation/trainval.txt") in str(err.value)

    (voc_root / "SegmentationClass" / "2007_000063.png").unlink()
    with pytest.raises(DatasetError, match=r"2007_000063\.jpg has no label file"):
        PascalVOC(voc_root, split="val")


def test_voc_out_of_range_index_raises(voc_root: Path):
    label = voc_root / "SegmentationClass" / "2007_000032.png"
    img = Image.fromarray(_label([0, 21]), mode="L").convert("P")
    img.putpalette(_voc_palette())
    img.save(label)
    with pytest.raises(DatasetError, match="value 21") as err:
        PascalVOC(voc_root)[0]
    assert str(label) in str(err.value)


# -- registry ---------------------------------------------------------------------------------
def test_load_dataset_by_name(camvid_root: Path, city_root: Path, voc_root: Path):
    assert isinstance(load_dataset("camvid", camvid_root, "val", None), CamVid)
    assert isinstance(load_dataset("Cityscapes", city_root, "train", 8), Cityscapes)
    assert load_dataset("voc", voc_root, "val", (4, 6))[0][1].shape == (4, 6)
    assert [num_classes_of(n) for n in ("camvid", "cityscapes", "voc")] == [11, 19, 21]
    assert CLASS_NAMES["voc"] == VOC_CLASSES and CLASS_NAMES["camvid"][0] == "Sky"
    with pytest.raises(ValueError, match="known: camvid, cityscapes, voc"):
        load_dataset("ade20k", camvid_root, "train", None)
    with pytest.raises(ValueError, match="'kitti'"):
        num_classes_of("kitti")
    with pytest.raises(ValueError, match="size"):
        CamVid(camvid_root, size=(0, 4))
