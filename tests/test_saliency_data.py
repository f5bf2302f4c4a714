"""Saliency data: the synthetic scenes and their attention model, the loaders of real data sets
(tiny fixtures in the real on-disk formats: PIL images, ``scipy.io.savemat`` files, JSON), and
the horizontal flip of saliency samples (the engine's target-aware flip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat, savemat

from nastk.core.errors import NastkError
from nastk.data.flips import RandomHFlip, hflip
from nastk.tasks.saliency.datasets import (
    CAT2000,
    DATASETS,
    MIT1003,
    SALICON,
    DatasetError,
    load_dataset,
    rescale_fixations,
)
from nastk.tasks.saliency.synthetic import (
    centre_bias_map,
    make_saliency_scenes,
    make_saliency_scenes_with_truth,
)

H, W = 10, 12  # fixture images are 12 pixels wide, 10 high


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# -- synthetic scenes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes():
    return make_saliency_scenes_with_truth(120, size=(48, 64), seed=0)


def test_synthetic_shapes_dtypes_ranges(scenes):
    x, d, fix = make_saliency_scenes(6, size=(40, 56), n_observers=5, fixations_per_observer=3,
                                     seed=2)
    assert x.shape == (6, 3, 40, 56) and x.dtype == np.float32
    assert d.shape == (6, 40, 56) and d.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert d.min() >= 0.0 and np.allclose(d.reshape(6, -1).max(axis=1), 1.0)
    assert len(fix) == 6
    for f in fix:
        assert f.shape == (15, 2) and f.dtype == np.int64
    p = scenes.probability
    assert p.shape == (120, 48, 64) and np.allclose(p.reshape(120, -1).sum(axis=1), 1.0)
    assert scenes.centre_bias.shape == (48, 64) and np.isclose(scenes.centre_bias.sum(), 1.0)
    assert all(1 <= len(objs) <= 4 for objs in scenes.objects)
    # a square size and no observers at all
    x, d, fix = make_saliency_scenes(2, size=32, n_observers=0, seed=0)
    assert x.shape == (2, 3, 32, 32) and (d == 0).all() and all(f.shape == (0, 2) for f in fix)


def test_synthetic_is_deterministic():
    a = make_saliency_scenes(5, seed=7)
    b = make_saliency_scenes(5, seed=7)
    c = make_saliency_scenes(5, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    for fa, fb in zip(a[2], b[2], strict=True):
        np.testing.assert_array_equal(fa, fb)
    assert not np.array_equal(a[0], c[0])


def test_synthetic_fixations_inside_the_image(scenes):
    for f in scenes.fixations:
        assert (f[:, 0] >= 0).all() and (f[:, 0] < 48).all()
        assert (f[:, 1] >= 0).all() and (f[:, 1] < 64).all()


def test_synthetic_fixations_concentrate_on_objects(scenes):
    # the mean true probability at the fixations against that of uniformly random pixels:
    # 1 / (H * W) in expectation (measured ratio ~ 11 at the defaults)
    rng = np.random.default_rng(0)
    at_fix, at_random = [], []
    for p, f in zip(scenes.probability, scenes.fixations, strict=True):
        at_fix.append(p[f[:, 0], f[:, 1]].mean())
        at_random.append(p[rng.integers(0, 48, 200), rng.integers(0, 64, 200)].mean())
    ratio = np.mean(at_fix) / np.mean(at_random)
    assert ratio > 6.0, ratio


def test_synthetic_objects_spread_and_centre_bias_is_a_minority(scenes):
    # objects are placed over the whole frame, not only near the centre
    centres = np.array([o.centre for objs in scenes.objects for o in objs])
    assert (centres[:, 0] < 12).any() and (centres[:, 0] > 36).any()
    assert (centres[:, 1] < 16).any() and (centres[:, 1] > 48).any()
    # object shares of a scene sum to 1, and contrast varies (some objects barely stand out)
    for objs in scenes.objects:
        assert np.isclose(sum(o.share for o in objs), 1.0)
    consp = np.array([o.conspicuity for objs in scenes.objects for o in objs if o.area])
    assert consp.min() < 0.2 < 0.4 < consp.max()
    # the centre-bias term is 25 % of every probability map
    rest = scenes.probability - 0.25 * scenes.centre_bias
    assert (rest > -1e-12).all()


def test_density_tracks_the_true_probability_and_beats_the_centre_bias(scenes):
    cc_true = np.array([_cc(p, d) for p, d in zip(scenes.probability, scenes.densities,
                                                   strict=True)])
    cc_centre = np.array([_cc(scenes.centre_bias, d) for d in scenes.densities])
    # measured at seed 0: CC(true, density) 0.86 on average (min 0.66), CC(centre, density)
    # 0.14 on average
    assert cc_true.mean() > 0.75 and np.quantile(cc_true, 0.05) > 0.5, cc_true
    assert cc_centre.mean() < 0.3, cc_centre.mean()
    assert cc_true.mean() - cc_centre.mean() > 0.45
    assert (cc_true > cc_centre).mean() > 0.9
    np.testing.assert_allclose(centre_bias_map((48, 64)), scenes.centre_bias)


def test_synthetic_is_learnable_from_the_image(scenes):
    # an image-only predictor with no learning (squared colour distance from the image's median
    # colour, blurred) already beats the centre bias by far: the objects are visible
    from nastk.tasks.saliency.synthetic import _blur, _gaussian_matrix

    g = (_gaussian_matrix(48, 2.0), _gaussian_matrix(64, 2.0))
    ccs = []
    for img, d in zip(scenes.images[:40], scenes.densities[:40], strict=True):
        median = np.median(img.reshape(3, -1), axis=1)
        pred = _blur(np.linalg.norm(img - median[:, None, None], axis=0) ** 2, *g)
        ccs.append(_cc(pred, d))
    cc_centre = np.mean([_cc(scenes.centre_bias, d) for d in scenes.densities[:40]])
    assert np.mean(ccs) > cc_centre + 0.4, (np.mean(ccs), cc_centre)


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="centre_weight"):
        make_saliency_scenes(1, centre_weight=0.8, uniform_weight=0.3)
    with pytest.raises(ValueError, match="size"):
        make_saliency_scenes(1, size=(8, 64))
    with pytest.raises(TypeError, match="n_observers"):
        make_saliency_scenes(1, n_observers=2.5)


# -- fixture writers --------------------------------------------------------------------------
def _rgb(path: Path, seed: int = 0, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return arr


def _grey(path: Path, value: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(value.astype(np.uint8)).save(path)


def _savemat(path: Path, variables: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, variables)


DENSITY = (np.arange(H * W).reshape(H, W) * 2).astype(np.uint8)  # 0..238, exact in PNG


def _gaze(*observers: np.ndarray, layout: str = "column") -> np.ndarray:
    """SALICON's ``gaze``: a struct array, one element per observer (n x 1, or 1 x n)."""
    dt = [("location", object), ("timestamp", object), ("fixations", object)]
    shape = (len(observers), 1) if layout == "column" else (1, len(observers))
    g = np.empty(shape, dtype=dt)
    for k, fix in enumerate(observers):
        points = np.asarray(fix, dtype=float)
        points = points.reshape(0, 2) if points.size == 0 else points
        g.flat[k] = (points + 0.25, np.zeros((len(points), 1)), points)
    return g


# 1-based [x, y] -> 0-based (row, col): (1, 1) -> (0, 0), (12, 10) -> (9, 11) (the last
# row and column are kept), (3, 5) -> (4, 2); (13, 1) and (0, 5) lie off the image
OBS1 = [[1, 1], [12, 10], [13, 1]]
OBS2 = [[3, 5], [0, 5]]
EXPECTED = [[0, 0], [9, 11], [4, 2]]


def _salicon(root: Path, split: str = "train", n: int = 3) -> list[str]:
    names = [f"COCO_{split}2014_{i:012d}" for i in range(1, n + 1)]
    for i, name in enumerate(names):
        _rgb(root / "images" / split / f"{name}.jpg", seed=i)
        _grey(root / "maps" / split / f"{name}.png", DENSITY)
        _savemat(root / "fixations" / split / f"{name}.mat",
                {"image": name, "resolution": np.array([[H, W]]),
                 "gaze": _gaze(OBS1, OBS2, np.zeros((0, 2)))})
    return names


def test_savemat_struct_array_round_trip(tmp_path):
    # how scipy stores SALICON's gaze: a record array whose fields are object cells
    savemat(tmp_path / "g.mat", {"gaze": _gaze(OBS1, OBS2)})
    gaze = loadmat(tmp_path / "g.mat")["gaze"]
    assert gaze.shape == (2, 1) and "fixations" in gaze.dtype.names
    np.testing.assert_array_equal(gaze[1, 0]["fixations"], np.array(OBS2, dtype=float))


# -- SALICON ----------------------------------------------------------------------------------
def test_salicon_2017_reads_images_maps_and_1_based_xy(tmp_path):
    names = _salicon(tmp_path)
    ds = SALICON(tmp_path, split="train")
    assert len(ds) == 3 and ds.fixation_source == "mat"
    assert [it.image.stem for it in ds.items] == names
    x, target = ds[0]
    assert x.shape == (3, H, W) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert set(target) == {"density", "fixations"}
    d, f = target["density"], target["fixations"]
    assert d.dtype == torch.float32 and d.shape == (H, W)
    np.testing.assert_allclose(d.numpy(), DENSITY / 255.0, atol=1e-6)
    assert f.dtype == torch.int64
    assert f.tolist() == EXPECTED


def test_salicon_resize_keeps_target_unless_target_size(tmp_path):
    _salicon(tmp_path)
    x, t = SALICON(tmp_path, size=(8, 16))[0]
    assert x.shape == (3, 8, 16) and t["density"].shape == (H, W)
    assert t["fixations"].tolist() == EXPECTED
    x, t = SALICON(tmp_path, size=8, target_size=(5, 6))[0]
    assert x.shape == (3, 8, 8) and t["density"].shape == (5, 6)
    # (r + 0.5) * new / old, floored: (9, 11) -> (4, 5), (4, 2) -> (2, 1)
    assert t["fixations"].tolist() == [[0, 0], [4, 5], [2, 1]]


def test_salicon_old_row_layout_and_resolution_field(tmp_path):
    _salicon(tmp_path, n=1)
    # a 1 x n gaze array, points given on a 20 x 24 grid (resolution) for a 10 x 12 map
    savemat(tmp_path / "fixations/train/COCO_train2014_000000000001.mat",
            {"resolution": np.array([[20, 24]]),
             "gaze": _gaze([[24, 20], [1, 1]], [[6, 10]], layout="row")})
    _, t = SALICON(tmp_path)[0]
    # 0-based on 20x24: (19, 23), (0, 0), (9, 5) -> on 10x12: (9, 11), (0, 0), (4, 2)
    assert t["fixations"].tolist() == [[9, 11], [0, 0], [4, 2]]


def test_salicon_2015_json_is_1_based_yx(tmp_path):
    _salicon(tmp_path, split="val", n=2)
    import shutil

    shutil.rmtree(tmp_path / "fixations")
    names = ["COCO_val2014_000000000001", "COCO_val2014_000000000002"]
    data = {
        "images": [{"id": 7, "file_name": f"{names[0]}.jpg", "width": W, "height": H},
                   {"id": 9, "file_name": f"{names[1]}.jpg", "width": W, "height": H}],
        # [y, x] 1-based: the axis order of the .mat reversed; two workers on image 7
        "annotations": [{"id": 1, "image_id": 7, "worker_id": 3,
                         "fixations": [[1, 1], [10, 12], [1, 13]]},
                        {"id": 2, "image_id": 7, "worker_id": 4, "fixations": [[5, 3]]}],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "fixations_val2014.json").write_text(json.dumps(data))
    ds = SALICON(tmp_path, split="val")
    assert ds.fixation_source == "json" and len(ds) == 2
    _, t = ds[0]
    assert t["fixations"].tolist() == EXPECTED
    _, t = ds[1]  # an image no worker looked at
    assert t["fixations"].shape == (0, 2) and t["fixations"].dtype == torch.int64
    # the 2015 file name and an explicit file work as well
    path = tmp_path / "annotations" / "fixations_val2014.json"
    path.rename(tmp_path / "fixations_val2015.json")
    assert SALICON(tmp_path, split="val")[0][1]["fixations"].tolist() == EXPECTED
    moved = tmp_path / "elsewhere.json"
    (tmp_path / "fixations_val2015.json").rename(moved)
    ds = SALICON(tmp_path, split="val", fixations="json", json_file=moved)
    assert ds[0][1]["fixations"].tolist() == EXPECTED
    # malformed JSON files name the file
    moved.write_text(json.dumps({"images": data["images"]}))
    with pytest.raises(DatasetError, match="annotations") as err:
        SALICON(tmp_path, split="val", fixations="json", json_file=moved)
    assert str(moved) in str(err.value)
    moved.write_text(json.dumps({**data, "images": data["images"][:1]}))
    with pytest.raises(DatasetError, match="no entry") as err:
        SALICON(tmp_path, split="val", json_file=moved)
    assert str(moved) in str(err.value)
    bad = {**data, "annotations": [{"image_id": 7, "fixations": [[1, 2, 3]]}]}
    moved.write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=r"\[y, x\] pairs"):
        SALICON(tmp_path, split="val", json_file=moved)


def test_salicon_missing_folder_names_path_and_layout(tmp_path):
    _salicon(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "maps" / "train")
    with pytest.raises(DatasetError) as err:
        SALICON(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "maps" / "train") in msg and "expected layout" in msg
    assert "fixations/{train,val}" in msg
    with pytest.raises(DatasetError, match="root does not exist"):
        SALICON(tmp_path / "nowhere")
    shutil.rmtree(tmp_path / "fixations")
    _grey(tmp_path / "maps/train/COCO_train2014_000000000001.png", DENSITY)
    with pytest.raises(DatasetError) as err:
        SALICON(tmp_path, fixations="mat")
    assert str(tmp_path / "fixations" / "train") in str(err.value)
    assert isinstance(err.value, NastkError) and isinstance(err.value, ValueError)


def test_salicon_image_without_map_or_mat(tmp_path):
    _salicon(tmp_path)
    missing = tmp_path / "maps/train/COCO_train2014_000000000002.png"
    missing.unlink()
    with pytest.raises(DatasetError, match="no density map") as err:
        SALICON(tmp_path)
    assert str(missing) in str(err.value)
    _grey(missing, DENSITY)
    gone = tmp_path / "fixations/train/COCO_train2014_000000000003.mat"
    gone.unlink()
    with pytest.raises(DatasetError, match="no fixation file") as err:
        SALICON(tmp_path)
    assert str(gone) in str(err.value)


def test_salicon_mat_without_expected_fields(tmp_path):
    _salicon(tmp_path)
    path = tmp_path / "fixations/train/COCO_train2014_000000000001.mat"
    savemat(path, {"image": "x", "resolution": np.array([[H, W]])})
    ds = SALICON(tmp_path)
    with pytest.raises(DatasetError, match="no variable 'gaze'") as err:
        ds[0]
    assert str(path) in str(err.value) and "expected layout" in str(err.value)
    g = np.empty((1, 1), dtype=[("location", object)])
    g[0, 0] = (np.zeros((1, 2)),)
    savemat(path, {"gaze": g})
    with pytest.raises(DatasetError, match="field 'fixations'") as err:
        ds[0]
    assert str(path) in str(err.value)
    savemat(path, {"gaze": _gaze(np.zeros((2, 3)))})
    with pytest.raises(DatasetError, match="M x 2") as err:
        ds[0]
    path.write_bytes(b"not a MATLAB file at all")
    with pytest.raises(DatasetError, match="cannot read MATLAB file") as err:
        ds[0]
    assert str(path) in str(err.value)


def test_truncated_image_names_the_file(tmp_path):
    _salicon(tmp_path)
    path = tmp_path / "images/train/COCO_train2014_000000000002.jpg"
    whole = path.read_bytes()
    ds = SALICON(tmp_path)
    ds[0]
    for cut in (60, len(whole) * 2 // 3):  # inside the header, inside the scan data
        path.write_bytes(whole[:cut])
        with pytest.raises(DatasetError, match="cannot read image") as err:
            ds[1]
        assert str(path) in str(err.value)
    density = tmp_path / "maps/train/COCO_train2014_000000000003.png"
    density.write_bytes(density.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="cannot read density map") as err:
        ds[2]
    assert str(density) in str(err.value)


# -- MIT1003 ----------------------------------------------------------------------------------
def _mit(root: Path, n: int = 5) -> list[str]:
    names = [f"i{i:03d}" for i in range(n)]
    for i, name in enumerate(names):
        _rgb(root / "ALLSTIMULI" / f"{name}.jpeg", seed=i)
        _grey(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg", np.full((H, W), 40 + i))
        pts = np.zeros((H, W), dtype=np.uint8)
        pts[2, 3] = 255
        pts[9, 11] = 255  # the bottom-right corner: kept
        pts[5, 5] = 100  # below the threshold 127
        _grey(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", pts)
    return names


def test_mit1003_reads_maps_and_thresholded_points(tmp_path):
    _mit(tmp_path)
    ds = MIT1003(tmp_path, split="all")
    assert len(ds) == 5
    x, t = ds[1]
    assert x.shape == (3, H, W)
    assert t["density"].shape == (H, W)
    assert abs(float(t["density"].mean()) - 41 / 255) < 3 / 255
    assert t["fixations"].tolist() == [[2, 3], [9, 11]]
    _, t = MIT1003(tmp_path, split="all", target_size=(5, 6))[0]
    assert t["density"].shape == (5, 6) and t["fixations"].tolist() == [[1, 1], [4, 5]]


def test_mit1003_seeded_holdout(tmp_path):
    _mit(tmp_path, n=10)
    train = MIT1003(tmp_path, split="train", val_fraction=0.3)
    val = MIT1003(tmp_path, split="val", val_fraction=0.3)
    a = {it.image.name for it in train.items}
    b = {it.image.name for it in val.items}
    assert len(a) == 7 and len(b) == 3 and not a & b and len(a | b) == 10
    again = MIT1003(tmp_path, split="val", val_fraction=0.3)
    assert [it.image for it in again.items] == [it.image for it in val.items]
    other = [{it.image.name for it in MIT1003(tmp_path, split="val", val_fraction=0.3,
                                                split_seed=s).items} for s in range(6)]
    assert any(o != b for o in other)
    with pytest.raises(ValueError, match="split"):
        MIT1003(tmp_path, split="test")


def test_mit1003_broken(tmp_path):
    _mit(tmp_path)
    missing = tmp_path / "ALLFIXATIONMAPS" / "i003_fixPts.jpg"
    missing.unlink()
    with pytest.raises(DatasetError, match="no fixation-points image") as err:
        MIT1003(tmp_path)
    assert str(missing) in str(err.value) and "expected layout" in str(err.value)
    _grey(missing, np.zeros((H + 1, W)))  # the wrong size
    ds = MIT1003(tmp_path, split="all")
    with pytest.raises(DatasetError, match="height x width") as err:
        ds[3]
    assert str(missing) in str(err.value)
    import shutil

    shutil.rmtree(tmp_path / "ALLFIXATIONMAPS")
    with pytest.raises(DatasetError) as err:
        MIT1003(tmp_path)
    assert str(tmp_path / "ALLFIXATIONMAPS") in str(err.value)


# -- CAT2000 ----------------------------------------------------------------------------------
def _cat(root: Path, categories: tuple[str, ...] = ("Action", "Art"), n: int = 5) -> None:
    base = root / "trainSet"
    for c, cat in enumerate(categories):
        for i in range(1, n + 1):
            name = f"{i:03d}"
            _rgb(base / "Stimuli" / cat / f"{name}.jpg", seed=10 * c + i)
            _grey(base / "FIXATIONMAPS" / cat / f"{name}.jpg", np.full((H, W), 60))
            locs = np.zeros((H, W), dtype=np.uint8)
            locs[0, 11] = 1
            locs[9, 0] = 1
            locs[4, 7] = 1
            _savemat(base / "FIXATIONLOCS" / cat / f"{name}.mat", {"fixLocs": locs})


def test_cat2000_reads_fixlocs_and_splits_per_category(tmp_path):
    _cat(tmp_path)
    ds = CAT2000(tmp_path, split="all")
    assert len(ds) == 10
    x, t = ds[0]
    assert x.shape == (3, H, W) and t["density"].shape == (H, W)
    assert t["fixations"].tolist() == [[0, 11], [4, 7], [9, 0]]
    train, val = CAT2000(tmp_path, split="train"), CAT2000(tmp_path, split="val")
    assert len(train) == 8 and len(val) == 2
    assert sorted(it.image.parent.name for it in val.items) == ["Action", "Art"]
    # root may be the trainSet folder itself
    assert len(CAT2000(tmp_path / "trainSet", split="all")) == 10


def test_cat2000_broken(tmp_path):
    _cat(tmp_path)
    path = tmp_path / "trainSet/FIXATIONLOCS/Art/002.mat"
    savemat(path, {"fixations": np.zeros((H, W))})
    ds = CAT2000(tmp_path, split="all")
    with pytest.raises(DatasetError, match="no variable 'fixLocs'") as err:
        ds[6]
    assert str(path) in str(err.value)
    savemat(path, {"fixLocs": np.zeros((H, W + 2))})
    with pytest.raises(DatasetError, match="height x width") as err:
        ds[6]
    assert str(path) in str(err.value)
    missing = tmp_path / "trainSet/FIXATIONMAPS/Action/004.jpg"
    missing.unlink()
    with pytest.raises(DatasetError, match="no fixation map") as err:
        CAT2000(tmp_path)
    assert str(missing) in str(err.value)
    _grey(missing, np.full((H, W), 60))
    import shutil

    shutil.rmtree(tmp_path / "trainSet/FIXATIONLOCS/Art")
    with pytest.raises(DatasetError, match="missing folder") as err:
        CAT2000(tmp_path)
    assert str(tmp_path / "trainSet/FIXATIONLOCS/Art") in str(err.value)
    assert "fixLocs" in str(err.value)  # the layout is shown


def test_load_dataset_by_name(tmp_path):
    _mit(tmp_path)
    assert set(DATASETS) == {"salicon", "mit1003", "cat2000"}
    ds = load_dataset("MIT1003", tmp_path, split="all", size=(4, 4), target_size=(5, 6))
    x, t = ds[0]
    assert isinstance(ds, MIT1003) and x.shape == (3, 4, 4) and t["density"].shape == (5, 6)
    with pytest.raises(ValueError, match="unknown saliency data set"):
        load_dataset("osie", tmp_path)


# -- flips ------------------------------------------------------------------------------------
def test_hflip_mirrors_columns_only():
    image = torch.zeros(3, 4, 6)
    image[0, 1, 0] = 1.0  # a red dot on the left
    density = torch.zeros(4, 6)
    density[1, 0] = 1.0
    density[3, 2] = 0.5
    fix = torch.tensor([[1, 0], [3, 2], [0, 5]])
    target = {"density": density, "fixations": fix, "name": "kept"}
    x, t = hflip(image, target)
    assert x[0, 1, 5] == 1.0 and x.sum() == 1.0
    assert t["density"][1, 5] == 1.0 and t["density"][3, 3] == 0.5
    assert t["fixations"].tolist() == [[1, 5], [3, 3], [0, 0]]  # rows unchanged
    assert t["name"] == "kept"
    assert fix.tolist() == [[1, 0], [3, 2], [0, 5]]  # the input is left alone
    # fixations are mirrored on the density map's width, not the image's
    _, t = hflip(torch.zeros(3, 8, 16), target)
    assert t["fixations"][:, 1].tolist() == [5, 3, 0]
    x2, t2 = hflip(x, t)
    assert torch.equal(x2, image) and t2["fixations"].tolist() == fix.tolist()
    _, t = hflip(image, {"density": density, "fixations": torch.zeros(0, 2, dtype=torch.long)})
    assert t["fixations"].shape == (0, 2)


def test_random_hflip_as_transform(tmp_path):
    _salicon(tmp_path)
    plain = SALICON(tmp_path, target_size=(5, 6))[0]
    flipped = SALICON(tmp_path, target_size=(5, 6), transform=RandomHFlip(p=1.0))[0]
    assert torch.equal(flipped[0], plain[0].flip(-1))
    assert torch.equal(flipped[1]["density"], plain[1]["density"].flip(-1))
    cols = plain[1]["fixations"][:, 1]
    assert flipped[1]["fixations"][:, 1].tolist() == (6 - 1 - cols).tolist()
    assert torch.equal(flipped[1]["fixations"][:, 0], plain[1]["fixations"][:, 0])
    kept = SALICON(tmp_path, transform=RandomHFlip(p=0.0))[0]
    assert kept[1]["fixations"].tolist() == EXPECTED
    # seeded: the same draws for the same seed, about p of them flipped
    x = torch.arange(6.0).reshape(1, 1, 6)
    t = {"density": torch.zeros(1, 6), "fixations": torch.tensor([[0, 1]])}

    def draws(seed: int) -> list[bool]:
        flip = RandomHFlip(p=0.3, seed=seed)
        return [bool(flip(x, t)[1]["fixations"][0, 1] == 4) for _ in range(400)]

    a = draws(1)
    assert a == draws(1) and a != draws(2)
    assert 0.2 < np.mean(a) < 0.4
    with pytest.raises(ValueError, match="p must be"):
        RandomHFlip(p=1.5)


def test_rescale_fixations_tensor_and_array():
    f = torch.tensor([[0, 0], [479, 639]])
    out = rescale_fixations(f, (480, 640), (240, 320))
    assert isinstance(out, torch.Tensor) and out.tolist() == [[0, 0], [239, 319]]
    assert rescale_fixations(np.array([[1, 1]]), (2, 2), (4, 4)).tolist() == [[3, 3]]
